"""Small pure steps: geometry of variants, orientation table, EXIF reading, WebP chunks."""

from __future__ import annotations

import io
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from mediahub.config import VariantSpec
from mediahub.pipeline.exif import read_exif
from mediahub.pipeline.orient import display_size, upright
from mediahub.pipeline.strip import strip_webp
from mediahub.pipeline.variants import crop_box, fit_size, output_size, render_all

sides = st.integers(1, 12000)


@given(sides, sides, st.integers(1, 4000), st.integers(1, 4000))
def test_fit_size_stays_inside_and_never_upscales(w, h, bw, bh):
    fw, fh = fit_size(w, h, bw, bh)
    assert 1 <= fw <= max(1, min(w, bw)) and 1 <= fh <= max(1, min(h, bh))
    assert fw == min(w, bw) or fh == min(h, bh) or fw == 1 or fh == 1


@given(sides, sides, st.floats(0.1, 10))
def test_crop_box_is_centred_and_inside(w, h, aspect):
    left, top, right, bottom = crop_box(w, h, aspect)
    assert 0 <= left <= right <= w + 1e-6 and 0 <= top <= bottom <= h + 1e-6
    assert abs((left + right) / 2 - w / 2) < 1e-6 and abs((top + bottom) / 2 - h / 2) < 1e-6


def test_render_chain_matches_sizes_from_the_full_image():
    base = Image.linear_gradient("L").resize((3000, 2000)).convert("RGB")
    specs = (VariantSpec("thumbnail", 150, 150, True), VariantSpec("small", 400, 400),
             VariantSpec("medium", 800, 800), VariantSpec("large", 1600, 1600))
    renders = render_all(base, specs)
    sizes = {name: (image.width, image.height) for name, image in renders.items()}
    for spec in specs:
        assert sizes[spec.name] == output_size(3000, 2000, spec)
    assert sizes["thumbnail"] == (150, 150)
    assert sizes["large"] == (1600, 1067)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_lands_the_marked_corner_top_left(orientation):
    # A 4x2 image with one white pixel at the top-left of the *displayed* picture.
    displayed = Image.new("L", (4, 2))
    displayed.putpixel((0, 0), 255)
    inverse = {2: 2, 3: 3, 4: 4, 5: 5, 6: 8, 7: 7, 8: 6}
    stored = upright(displayed, inverse.get(orientation, 1))
    result = upright(stored, orientation)
    assert result.size == (4, 2) == display_size(*stored.size, orientation)
    assert result.getpixel((0, 0)) == 255


@pytest.mark.parametrize("value, expected", [(0, 1), (9, 1), (3, 3), (6, 6), (65535, 1)])
def test_orientation_junk_counts_as_one(value, expected):
    image = Image.new("RGB", (4, 4))
    exif = Image.Exif()
    exif[0x0112] = value
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes())
    with Image.open(io.BytesIO(out.getvalue())) as reopened:
        assert read_exif(reopened).orientation == expected


def _riff_chunk(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("<I", len(payload)) + payload + b"\0" * (len(payload) & 1)


def test_a_webp_keeps_only_the_chunks_that_make_its_picture():
    """A location in a chunk no decoder reads (any tool may write one) is not kept."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buffer, "WEBP", quality=80)
    plain = buffer.getvalue()
    extra = _riff_chunk(b"XYZW", b"GPSLatitude 48.85N secretloc") + _riff_chunk(b"EXIF", b"Exif\0\0secret-exif")
    body = plain[8:] + extra
    dirty = b"RIFF" + struct.pack("<I", len(body)) + body

    stripped = strip_webp(dirty)

    assert b"secretloc" not in stripped.data and b"secret-exif" not in stripped.data
    assert stripped.data == plain
    assert Image.open(io.BytesIO(stripped.data)).size == (16, 16)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    import zlib

    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


@pytest.mark.parametrize("where", ["before_pixels", "after_pixels"])
def test_png_exif_is_read_wherever_the_chunk_is_without_decoding_the_pixels(tmp_path, where):
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "PngCam"
    exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 31.0, 12.5), 3: "E", 4: (13.0, 24.0, 36.0)})
    plain = io.BytesIO()
    Image.new("RGB", (64, 48), "teal").save(plain, "PNG")
    data = plain.getvalue()
    iend = data.rindex(b"IEND") - 4
    chunk = _png_chunk(b"eXIf", exif.tobytes()[6:] if exif.tobytes().startswith(b"Exif") else exif.tobytes())
    if where == "after_pixels":
        data = data[:iend] + chunk + data[iend:]
    else:
        first_idat = data.index(b"IDAT") - 4
        data = data[:first_idat] + chunk + data[first_idat:]
    path = tmp_path / "exif.png"
    path.write_bytes(data)
    with Image.open(path) as image:
        summary = read_exif(image)
        assert image.tile, "the pixels were decoded to find the EXIF"
    assert summary.orientation == 6
    assert summary.camera["make"] == "PngCam"
    assert summary.has_gps_tags and summary.gps["latitude"] == pytest.approx(52.52, abs=0.01)


def test_libvips_png_decode_gives_pillows_pixels_or_steps_aside():
    from pathlib import Path

    from mediahub.pipeline.probe import load_png
    from tests.support.corpus import CORPUS_DIR

    decoded = 0
    for path in sorted(Path(CORPUS_DIR / "images/good").glob("*.png")):
        with Image.open(path) as by_vips, Image.open(path) as by_pillow:
            pixels = load_png(path, by_vips)
            by_pillow.load()
            if pixels is None:
                assert by_pillow.mode not in ("L", "RGB", "RGBA") or "transparency" in by_pillow.info \
                    or getattr(by_pillow, "n_frames", 1) > 1, f"{path.name} should decode through libvips"
                continue
            decoded += 1
            assert (pixels.mode, pixels.size) == (by_pillow.mode, by_pillow.size)
            assert pixels.tobytes() == by_pillow.tobytes(), path.name
            assert pixels.info.get("icc_profile") == by_pillow.info.get("icc_profile")
    assert decoded >= 8
