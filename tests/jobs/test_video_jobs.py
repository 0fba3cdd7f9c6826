"""Videos: poster upright per the display matrix, limits, location stripped, the web rendition."""

from __future__ import annotations

import struct
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from mediahub.db.models import MediaVariant
from mediahub.errors import MediaHubError
from mediahub.pipeline.transcode import transcode_web
from tests.media.conftest import make_runtime
from tests.media.helpers import upload
from tests.support import isobmff
from tests.support.corpus import CORPUS_DIR, corpus_videos
from tests.support.videos import make_clip

TARGET = "post:P-1:media"
PLACE = "+37.7749-122.4194/"


def top_level_boxes(path: Path) -> list[str]:
    """The ISO BMFF top-level box types in file order."""
    boxes, data, offset = [], path.read_bytes(), 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8:offset + 16])[0]
        boxes.append(kind.decode("latin-1"))
        if size < 8:
            break
        offset += size
    return boxes


def tkhd_matrix(path: Path) -> tuple[int, int, int, int]:
    """The video track header's a, b, c, d (16.16 fixed point, signed) as written in the file."""
    data = path.read_bytes()
    at = data.index(b"tkhd") + 4
    version = data[at]
    # version/flags, times + track id + reserved + duration, then reserved, layer, group, volume, reserved.
    matrix_at = at + 4 + (32 if version == 1 else 20) + 16
    a, b, _u, c, d, _v, _x, _y, _w = struct.unpack(">9i", data[matrix_at:matrix_at + 36])
    return a, b, c, d


def variant(runtime, item, name: str, fmt: str) -> MediaVariant:
    (found,) = [v for v in item.variants if (v.name, v.format) == (name, fmt)]
    return found


def stored_file(runtime, key: str, tmp_path: Path) -> Path:
    path = tmp_path / key.rsplit("/", 1)[-1]
    path.write_bytes(runtime.storage.get(key))
    return path


@pytest.mark.parametrize("entry", corpus_videos(), ids=lambda e: e.name)
def test_each_corpus_video_gets_an_upright_poster_and_a_web_rendition(runtime, entry, tmp_path):
    if not entry.accepted:
        with pytest.raises(MediaHubError) as caught:
            upload(runtime, entry.path, TARGET)
        assert caught.value.code and caught.value.message
        return
    item = upload(runtime, entry.path, TARGET)
    assert item.processing_status == "ready"
    assert (item.width, item.height) == (entry.entry["width"], entry.entry["height"])
    large = variant(runtime, item, "large", "jpeg")
    poster = Image.open(stored_file(runtime, large.storage_key, tmp_path))
    assert poster.size == (large.width, large.height)
    assert abs(poster.size[0] / poster.size[1] - item.width / item.height) < 0.02
    assert ("large", "webp") in {(v.name, v.format) for v in item.variants}

    web = variant(runtime, item, "web", "mp4")
    assert web.storage_key == item.original_key.rsplit(".", 1)[0] + "_web.mp4" and web.content_type == "video/mp4"
    path = stored_file(runtime, web.storage_key, tmp_path)
    assert web.byte_size == path.stat().st_size
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        width, height = stream.codec_context.width, stream.codec_context.height
        assert max(width, height) <= 1280 and width % 2 == 0 and height % 2 == 0
        assert (width, height) == (web.width, web.height)
        assert all(a.codec_context.name == "aac" for a in container.streams.audio)
        assert sum(1 for _ in container.decode(stream)) > 0
    boxes = top_level_boxes(path)
    assert boxes.index("moov") < boxes.index("mdat"), f"not faststart: {boxes}"


def test_the_display_matrix_turns_the_poster_as_ffmpeg_defines_it(runtime, tmp_path):
    clip = tmp_path / "portrait.mp4"
    # FFmpeg's -90 ("rotation of -90.00 degrees" in ffprobe) is what a phone's portrait recording carries.
    make_clip(clip, rotation=-90)
    # ...and in the file it is QuickTime's matrix a=0 b=1 c=-1 d=0: turn 90 degrees clockwise to show.
    assert tkhd_matrix(clip) == (0, 0x10000, -0x10000, 0)
    item = upload(runtime, clip, TARGET)
    assert (item.width, item.height) == (32, 64) and item.meta["rotation"] == 270
    poster = Image.open(stored_file(runtime, variant(runtime, item, "large", "jpeg").storage_key, tmp_path))
    pixels = np.asarray(poster.convert("RGB")).astype(int)
    # Turned clockwise, the red top-left quarter lands top-right.
    assert pixels[8, 24][0] > 200 and pixels[8, 24][1] < 60, "top-right is red"
    assert pixels[8, 8][0] < 60 and pixels[56, 24][0] < 60, "top-left and bottom-right are dark"
    web = variant(runtime, item, "web", "mp4")
    assert (web.width, web.height) == (32, 64)
    with av.open(str(stored_file(runtime, web.storage_key, tmp_path))) as container:
        assert next(container.decode(video=0)).rotation == -90, "the rendition keeps the matrix"


def _fixed(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


JPEG_WITH_GPS = CORPUS_DIR / "images/good/gps_kodak_cx7530_small.jpg"
XMP = isobmff.xmp_uuid(isobmff.gps_xmp("40,42.768N", "74,0.36W"))
# name -> (where in the MP4 the box goes, the box, bytes that must not be served)
MP4_CARRIERS = {
    "udta_xyz": ((b"moov",), isobmff.box(b"udta", isobmff.quicktime_text(b"\xa9xyz", PLACE)), [PLACE.encode()]),
    "udta_loci": ((b"moov", b"udta"), isobmff.loci(37.7749, -122.4194), [_fixed(37.7749), _fixed(-122.4194)]),
    "mdta_iso6709": ((b"moov",), isobmff.mdta_meta({"com.apple.quicktime.location.ISO6709": PLACE}),
                     [PLACE.encode(), b"location.ISO6709"]),
    "mdta_gps_coordinates": ((b"moov",), isobmff.mdta_meta({"com.apple.quicktime.GPSCoordinates": PLACE}),
                             [PLACE.encode(), b"GPSCoordinates"]),
    "xmp_top_level": ((), XMP, [b"GPSLatitude", b"42.768N"]),
    "xmp_in_udta": ((b"moov", b"udta"), XMP, [b"GPSLatitude", b"42.768N"]),
    "trak_udta_xyz": ((b"moov", b"trak"), isobmff.box(b"udta", isobmff.quicktime_text(b"\xa9xyz", PLACE)),
                      [PLACE.encode()]),
    "trak_meta_mdta": ((b"moov", b"trak"), isobmff.mdta_meta({"com.apple.quicktime.location.ISO6709": PLACE}),
                       [PLACE.encode()]),
    "trak_uuid_xmp": ((b"moov", b"trak"), XMP, [b"GPSLatitude", b"42.768N"]),
    # A cover picture is an image file inside the video: its own EXIF holds the camera's GPS.
    "cover_art_exif": ((b"moov", b"udta"), isobmff.cover_meta(JPEG_WITH_GPS.read_bytes()),
                       [JPEG_WITH_GPS.read_bytes()[:64], b"Exif\x00\x00"]),
}
# Boxes that carry nothing a player needs and may carry a place: none may be served.
METADATA_BOXES = {"\xa9xyz", "loci", "uuid", "keys", "covr", "XMP_", "\xa9nam"}


def assert_without_location(path: Path, markers: list[bytes], frames: int = 10) -> None:
    """No marker in the bytes, no location tag, no metadata box, one track, every frame decodes."""
    data = path.read_bytes()
    for marker in markers:
        assert marker not in data, f"{marker!r} is in {path.name}"
    if path.suffix in (".mp4", ".mov"):
        found = {box_path.rsplit("/", 1)[-1] for box_path in isobmff.box_paths(data)} & METADATA_BOXES
        assert not found, f"{path.name} keeps {found}"
    with av.open(str(path)) as container:
        tags = [*container.metadata, *(k for s in container.streams for k in s.metadata)]
        assert not [k for k in tags if "location" in k.lower() or "gps" in k.lower()], tags
        assert [s.type for s in container.streams] == ["video"], "only the clip's own track is kept"
        assert sum(1 for _ in container.decode(video=0)) == frames, "every frame is kept and decodes"


def assert_served_without_location(runtime, item, markers: list[bytes], tmp_path: Path, frames: int = 10) -> None:
    """The stored original and the web MP4, as the store serves them."""
    for key in (item.original_key, variant(runtime, item, "web", "mp4").storage_key):
        assert_without_location(stored_file(runtime, key, tmp_path), markers, frames)
    assert item.byte_size == runtime.storage.stat(item.original_key).size


def dirty_clip(path: Path, carrier: str) -> list[bytes]:
    """A clip at `path` with one MP4 carrier; the bytes that must not be served."""
    parent, carried, markers = MP4_CARRIERS[carrier]
    make_clip(path, fmt=path.suffix[1:])
    path.write_bytes(isobmff.insert(path.read_bytes(), parent, carried))
    data = path.read_bytes()
    assert all(marker in data for marker in markers), "the test clip carries the location"
    with av.open(str(path)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 10, "the test clip is a valid video"
    return markers


@pytest.mark.parametrize("container", ["mp4", "mov"])
@pytest.mark.parametrize("carrier", MP4_CARRIERS)
def test_no_location_carrier_of_an_mp4_reaches_what_is_served(runtime, tmp_path, carrier, container):
    clip = tmp_path / f"phone.{container}"
    markers = dirty_clip(clip, carrier)
    item = upload(runtime, clip, TARGET)
    assert_served_without_location(runtime, item, markers, tmp_path)


def test_a_cover_picture_before_the_track_is_neither_the_poster_nor_served(runtime, tmp_path):
    """FFmpeg lists a cover read before the track as stream 0: a video stream of one JPEG frame."""
    clip = tmp_path / "phone.mp4"
    make_clip(clip)
    cover = JPEG_WITH_GPS.read_bytes()
    clip.write_bytes(isobmff.insert(clip.read_bytes(), (b"moov",), isobmff.box(b"udta", isobmff.cover_meta(cover)),
                                    first=True))
    with av.open(str(clip)) as container:
        assert container.streams.video[0].disposition & av.stream.Disposition.attached_pic, "the cover comes first"
    item = upload(runtime, clip, TARGET)
    assert (item.width, item.height) == (64, 32) and item.meta["frames"] == 10
    assert_served_without_location(runtime, item, [cover[:64], b"Exif\x00\x00"], tmp_path)


@pytest.mark.parametrize("carrier", MP4_CARRIERS)
def test_the_web_rendition_carries_nothing_of_its_source(tmp_path, carrier):
    """The transcode on its own, from a source that still has its carriers (not the stripped original)."""
    clip = tmp_path / "phone.mp4"
    markers = dirty_clip(clip, carrier)
    transcode_web(clip, tmp_path / "web.mp4")
    assert_without_location(tmp_path / "web.mp4", markers)


def test_a_gps_data_track_never_reaches_what_is_served(runtime, tmp_path):
    """A camera's GPS log (GoPro GPMF, camm) is a track of its own: its samples must go, not just its tags."""
    clip = tmp_path / "action-cam.mp4"
    make_clip(clip)
    fixes = [b"GPS5" + PLACE.encode() + b" fix %d" % n for n in range(10)]
    clip.write_bytes(isobmff.append_data_track(clip.read_bytes(), fixes))
    with av.open(str(clip)) as container:
        assert [s.type for s in container.streams] == ["video", "data"], "the test clip has a GPS track"
    item = upload(runtime, clip, TARGET)
    assert_served_without_location(runtime, item, [PLACE.encode(), b"GPS5"], tmp_path)


@pytest.mark.parametrize("fmt", ["mp4", "mov", "webm"])
def test_a_chapter_title_never_reaches_what_is_served(runtime, tmp_path, fmt):
    clip = tmp_path / f"trip.{fmt}"
    make_clip(clip, fmt=fmt, chapter=f"Home {PLACE}")
    assert PLACE.encode() in clip.read_bytes(), "the test clip carries the location"
    item = upload(runtime, clip, TARGET)
    assert_served_without_location(runtime, item, [PLACE.encode()], tmp_path)
    with av.open(str(stored_file(runtime, item.original_key, tmp_path))) as container:
        assert not container.chapters()


@pytest.mark.parametrize("tags", [{"location": PLACE}, {"RECORDING_LOCATION": PLACE}], ids=["location", "recording"])
@pytest.mark.parametrize("level", ["container", "track"])
def test_no_matroska_tag_of_a_webm_reaches_what_is_served(runtime, tmp_path, tags, level):
    clip = tmp_path / "phone.webm"
    make_clip(clip, fmt="webm", metadata=tags if level == "container" else None,
              stream_metadata=tags if level == "track" else None)
    assert PLACE.encode() in clip.read_bytes(), "the test clip carries the location"
    item = upload(runtime, clip, TARGET)
    assert_served_without_location(runtime, item, [PLACE.encode()], tmp_path)


def test_the_container_tags_an_mp4_muxer_writes_are_stripped_too(runtime, tmp_path):
    clip = tmp_path / "phone.mp4"
    make_clip(clip, metadata={"location": PLACE, "com.apple.quicktime.location.ISO6709": PLACE,
                              "com.apple.quicktime.make": "Apple"})
    with av.open(str(clip)) as container:
        assert "location" in container.metadata, "the test clip carries a location"
    item = upload(runtime, clip, TARGET)
    assert "location_stripped" not in item.meta, "every video is stripped: no flag says which"
    assert_served_without_location(runtime, item, [PLACE.encode(), b"com.apple.quicktime"], tmp_path)


def test_stripping_keeps_the_display_matrix_and_a_webm_alpha_channel(runtime, tmp_path):
    portrait = tmp_path / "portrait.mp4"
    make_clip(portrait, rotation=-90)
    item = upload(runtime, portrait, TARGET)
    assert tkhd_matrix(stored_file(runtime, item.original_key, tmp_path)) == (0, 0x10000, -0x10000, 0)
    alpha = upload(runtime, CORPUS_DIR / "video/webm_vp9_alpha_200x200.webm", TARGET)
    with av.open(str(stored_file(runtime, alpha.original_key, tmp_path))) as container:
        assert {k.lower(): v for k, v in container.streams.video[0].metadata.items()}.get("alpha_mode") == "1"


def test_frame_count_limit(sqlite_db, local_storage, tmp_path):
    runtime = make_runtime(sqlite_db, local_storage, tmp_path, max_video_frames=20)
    clip = tmp_path / "long.mp4"
    make_clip(clip, frames=30)
    with pytest.raises(MediaHubError) as caught:
        upload(runtime, clip, TARGET)
    assert caught.value.code == "too_many_frames"
    runtime.jobs.close()
