"""Videos: poster upright per the display matrix, limits, location stripped, the web rendition."""

from __future__ import annotations

import struct
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from mediahub.errors import MediaHubError
from tests.services.conftest import make_runtime
from tests.services.helpers import upload
from tests.support.corpus import corpus_videos

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


def make_clip(path: Path, *, rotation: int = 0, metadata: dict[str, str] | None = None, frames: int = 10) -> None:
    """64x32 H.264 MP4 whose top-left quarter is red, with an optional display rotation and tags."""
    options = {"movflags": "use_metadata_tags"} if metadata else {}
    with av.open(str(path), "w", format="mp4", options=options) as out:
        out.metadata.update(metadata or {})
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        picture = np.zeros((32, 64, 3), np.uint8)
        picture[:16, :32] = (255, 0, 0)
        for _ in range(frames):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        out.mux(stream.encode(None))


def variant(runtime, item, name: str, fmt: str) -> dict:
    (found,) = [v for v in item.variants if (v["name"], v["format"]) == (name, fmt)]
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
    poster = Image.open(stored_file(runtime, large["key"], tmp_path))
    assert poster.size == (large["width"], large["height"])
    assert abs(poster.size[0] / poster.size[1] - item.width / item.height) < 0.02
    assert ("large", "webp") in {(v["name"], v["format"]) for v in item.variants}

    web = variant(runtime, item, "web", "mp4")
    assert web["key"] == item.original_key.rsplit(".", 1)[0] + "_web.mp4" and web["content_type"] == "video/mp4"
    path = stored_file(runtime, web["key"], tmp_path)
    assert web["size"] == path.stat().st_size
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        width, height = stream.codec_context.width, stream.codec_context.height
        assert max(width, height) <= 1280 and width % 2 == 0 and height % 2 == 0
        assert (width, height) == (web["width"], web["height"])
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
    poster = Image.open(stored_file(runtime, variant(runtime, item, "large", "jpeg")["key"], tmp_path))
    pixels = np.asarray(poster.convert("RGB")).astype(int)
    # Turned clockwise, the red top-left quarter lands top-right.
    assert pixels[8, 24][0] > 200 and pixels[8, 24][1] < 60, "top-right is red"
    assert pixels[8, 8][0] < 60 and pixels[56, 24][0] < 60, "top-left and bottom-right are dark"
    web = variant(runtime, item, "web", "mp4")
    assert (web["width"], web["height"]) == (32, 64)
    with av.open(str(stored_file(runtime, web["key"], tmp_path))) as container:
        assert next(container.decode(video=0)).rotation == -90, "the rendition keeps the matrix"


def test_a_location_in_the_container_never_reaches_what_is_served(runtime, tmp_path):
    clip = tmp_path / "phone.mp4"
    make_clip(clip, metadata={"location": PLACE, "com.apple.quicktime.location.ISO6709": PLACE})
    with av.open(str(clip)) as container:
        assert "location" in container.metadata, "the test clip carries a location"
    item = upload(runtime, clip, TARGET)
    assert item.meta["location_stripped"] is True
    for key in (item.original_key, variant(runtime, item, "web", "mp4")["key"]):
        data = runtime.storage.get(key)
        assert PLACE.encode() not in data
        with av.open(str(stored_file(runtime, key, tmp_path))) as container:
            assert not [k for k in container.metadata if "location" in k.lower()]
            assert sum(1 for _ in container.decode(video=0)) == 10, "a stream copy: every frame is kept"
    assert item.byte_size == runtime.storage.stat(item.original_key).size


def test_frame_count_limit(sqlite_db, local_storage, tmp_path):
    runtime = make_runtime(sqlite_db, local_storage, tmp_path, max_video_frames=20)
    clip = tmp_path / "long.mp4"
    make_clip(clip, frames=30)
    with pytest.raises(MediaHubError) as caught:
        upload(runtime, clip, TARGET)
    assert caught.value.code == "too_many_frames"
    runtime.jobs.close()
