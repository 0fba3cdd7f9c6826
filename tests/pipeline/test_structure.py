"""Files whose structure costs more than their pixels, and files cut short, are refused before decoding."""

from __future__ import annotations

import io
import struct
import time
from pathlib import Path

import pytest
from PIL import Image

from mediahub.errors import MediaHubError
from mediahub.pipeline.image import process_image
from mediahub.pipeline.sniff import sniff
from mediahub.pipeline.structure import MAX_SEGMENTS
from tests.support.corpus import CORPUS_DIR
from tests.support.hostile_images import cut, many_scan_jpeg

GOOD = CORPUS_DIR / "images/good"
EOI = b"\xff\xd9"


def _process(tmp_path: Path, data: bytes, options, name: str = "upload"):
    path = tmp_path / name
    path.write_bytes(data)
    return process_image(path, sniff(data[:4096]), options)


def _refused(tmp_path: Path, data: bytes, options) -> MediaHubError:
    with pytest.raises(MediaHubError) as caught:
        _process(tmp_path, data, options)
    return caught.value


def test_a_progressive_jpeg_with_a_normal_number_of_scans_is_accepted(tmp_path, options):
    result = _process(tmp_path, many_scan_jpeg(20), options)
    assert (result.width, result.height) == (64, 48)


def test_a_jpeg_with_too_many_scans_is_refused_before_decoding(tmp_path, options):
    data = many_scan_jpeg(5000, (2000, 1500))  # decoded, this takes seconds of CPU
    started = time.monotonic()
    error = _refused(tmp_path, data, options)
    assert error.code == "too_many_scans"
    assert time.monotonic() - started < 5  # refused from the bytes, not after a decode


def test_the_scan_limit_is_a_setting(tmp_path):
    from mediahub.config import Settings
    from mediahub.pipeline.options import image_options

    strict = image_options(Settings(_env_file=None, max_jpeg_scans=5))
    assert _refused(tmp_path, many_scan_jpeg(20), strict).code == "too_many_scans"


@pytest.mark.parametrize("name", [
    "jpeg_flower.jpg",                 # RGB, upright: libvips shrink-on-load, bytes kept
    "orient_landscape_6.jpg",          # rotated: re-encoded from a full Pillow decode
    "jpeg_cmyk.jpg",                   # CMYK: Pillow only
    "jpeg_progressive_peppers.jpg",    # progressive
    "gps_nikon_DSCN0021.jpg",          # a camera file with EXIF
])
@pytest.mark.parametrize("fraction", [0.33, 0.9])
def test_a_jpeg_cut_short_and_closed_with_an_end_marker_is_refused(tmp_path, options, name, fraction):
    data = (GOOD / name).read_bytes()
    assert _refused(tmp_path, cut(data, fraction, EOI), options).code == "truncated_image"
    assert _refused(tmp_path, cut(data, fraction), options).code in ("truncated_image", "corrupt_image")


def _sof_dimensions(data: bytes, width: int, height: int) -> bytes:
    at = data.index(b"\xff\xc0")
    return data[:at + 5] + struct.pack(">HH", height, width) + data[at + 9:]


def test_a_jpeg_header_without_image_data_is_refused(tmp_path, options):
    out = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(out, "JPEG")
    big = _sof_dimensions(out.getvalue(), 10000, 5000)
    sos = big.index(b"\xff\xda")
    no_scan = big[:sos] + EOI
    sos_length = struct.unpack(">H", big[sos + 2:sos + 4])[0]
    empty_scan = big[:sos + 2 + sos_length] + EOI
    for data in (no_scan, empty_scan):
        assert _refused(tmp_path, data, options).code == "truncated_image"


def test_pillow_never_loads_truncated_images(tmp_path, options):
    from PIL import ImageFile

    _process(tmp_path, (GOOD / "jpeg_hopper.jpg").read_bytes(), options)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # the last line behind the checks above


@pytest.mark.parametrize("name, trailer", [
    ("png_hopper.png", b"\x00\x00\x00\x00IEND\xaeB`\x82"),
    ("png_large_dims_2400x2000.png", b""),
    ("gif_animated_chi.gif", b";"),    # later frames missing: Pillow kept the first ones
    ("gif_hopper.gif", b""),
    ("webp_flower.webp", b""),
    ("webp_animated_iss634.webp", b""),
    ("heic_iphone13_3024x4032.heic", b""),  # Pillow decoded it, missing tiles and all
    ("avif_exif_512.avif", b""),
])
def test_other_formats_cut_short_are_refused_as_truncated(tmp_path, options, name, trailer):
    data = (GOOD / name).read_bytes()
    assert _refused(tmp_path, cut(data, 0.5, trailer), options).code == "truncated_image"


def _png_chunk(kind: bytes, body: bytes = b"") -> bytes:
    import zlib

    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_a_png_with_a_flood_of_chunks_is_refused(tmp_path, options):
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "PNG")
    data = out.getvalue()
    iend = data.rindex(b"IEND") - 4
    flood = data[:iend] + _png_chunk(b"prVt") * (MAX_SEGMENTS + 1) + data[iend:]
    assert _refused(tmp_path, flood, options).code == "too_many_segments"


def test_a_gif_with_too_many_frames_is_refused_from_its_blocks(tmp_path, options):
    frames = [Image.new("P", (4, 4), i % 2) for i in range(options.limits.max_frames + 5)]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=10, optimize=False)
    assert _refused(tmp_path, out.getvalue(), options).code == "too_many_frames"


def _tiff_with_pages(pages: int) -> bytes:
    """A little-endian TIFF whose IFD chain has `pages` directories (each a 1x1 grey page)."""
    header = b"II*\x00" + struct.pack("<I", 8)
    body = []
    ifd_size = 2 + 7 * 12 + 4
    pixel_at = 8 + pages * ifd_size
    for index in range(pages):
        at = 8 + index * ifd_size
        next_ifd = at + ifd_size if index + 1 < pages else 0
        entries = [(256, 3, 1, 1), (257, 3, 1, 1), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
                   (273, 4, 1, pixel_at), (278, 3, 1, 1)]
        ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries)
        body.append(ifd + struct.pack("<I", next_ifd))
    return header + b"".join(body) + b"\x80"


def test_a_tiff_with_too_many_pages_is_refused_from_its_directory_chain(tmp_path, options):
    assert _process(tmp_path, _tiff_with_pages(1), options).width == 1
    assert _refused(tmp_path, _tiff_with_pages(options.limits.max_frames + 1), options).code == "too_many_frames"
    assert _refused(tmp_path, _tiff_with_pages(3)[:100], options).code == "truncated_image"


def test_a_tiff_with_a_flood_of_pages_is_refused_before_pillow_walks_them(tmp_path, options):
    data = _tiff_with_pages(100_000)  # 9 MB; Pillow's own page count took minutes over this chain
    started = time.monotonic()
    assert _refused(tmp_path, data, options).code == "too_many_frames"
    assert time.monotonic() - started < 20


def test_a_heic_whose_tiles_point_past_the_end_is_refused(tmp_path, options):
    """Cut inside its data, with the data box's size made to fit: libheif decoded the missing tiles as grey."""
    data = (GOOD / "heic_iphone13_3024x4032.heic").read_bytes()
    at = data.index(b"mdat") - 4
    assert struct.unpack(">I", data[at:at + 4])[0] == 1  # a 64-bit box size follows the type
    length = len(data) // 2 - at
    forged = data[:at + 8] + struct.pack(">Q", length) + data[at + 16:at + length]
    assert _refused(tmp_path, forged, options).code == "truncated_image"
