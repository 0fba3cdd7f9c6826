"""Every image of the shared corpus through the image row: verdict, size, cleanliness."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageOps

from mediahub.errors import MediaHubError
from mediahub.pipeline.image import process_image
from mediahub.pipeline.sniff import sniff
from tests.support.corpus import corpus_images

STABLE_CODES = {
    "unsupported_type", "empty_file", "corrupt_image", "too_many_pixels", "too_many_frames", "trailing_data",
    "too_large", "truncated_image", "too_many_scans", "too_many_segments",
}
GPS_MARKERS = (b"GPSLatitude", b"GPSLongitude")
EXIF = b"Exif\x00\x00"
ORIENTATION_ONLY_SEGMENT = 36  # APP1 length field: "Exif\0\0", a TIFF header, one IFD entry


def _run(entry, options):
    return process_image(entry.path, sniff(entry.path.read_bytes()[:4096]), options)


def _assert_no_metadata(data: bytes) -> None:
    for marker in GPS_MARKERS:
        assert marker not in data, f"{marker!r} survived in served bytes"
    if EXIF in data:  # only a kept JPEG's orientation: one segment that holds nothing else
        assert data.count(EXIF) == 1
        start = data.index(EXIF)
        assert data[start - 4:start - 2] == b"\xff\xe1"
        assert int.from_bytes(data[start - 2:start], "big") <= ORIENTATION_ONLY_SEGMENT
    with Image.open(io.BytesIO(data)) as image:
        exif = image.getexif()
        assert not exif.get_ifd(0x8825), "GPS IFD survived"
        assert set(exif) <= {0x0112}, f"EXIF other than the orientation survived: {sorted(exif)}"
        assert "xmp" not in image.info and "comment" not in image.info


@pytest.mark.parametrize("entry", corpus_images("accept"), ids=lambda e: e.name)
def test_accepted_image_is_upright_clean_and_hashed(entry, options):
    result = _run(entry, options)
    expected = (entry.entry["expected_display_width"], entry.entry["expected_display_height"])
    assert (result.width, result.height) == expected
    with Image.open(io.BytesIO(result.original.data)) as stored:
        shown = ImageOps.exif_transpose(stored)
        assert shown.size == expected, "the stored original must be shown upright"
        turned = stored.getexif().get(0x0112, 1) != 1
        assert turned == (result.metadata["original"] == "oriented"), "only a kept JPEG may carry its orientation"
    _assert_no_metadata(result.original.data)
    assert len(result.phash) == 16 and int(result.phash, 16) >= 0
    if entry.entry["has_gps"]:
        assert result.metadata["gps_stripped"] and "gps" not in result.metadata


@pytest.mark.parametrize("entry", corpus_images("accept"), ids=lambda e: e.name)
def test_variants_fit_their_boxes_and_never_upscale(entry, options):
    result = _run(entry, options)
    specs = {spec.name: spec for spec in options.sizes}
    names = {(v.name, v.format) for v in result.variants}
    for spec in options.sizes:
        assert (spec.name, "webp") in names
        assert (spec.name, "jpeg") in names or (spec.name, "png") in names
    for variant in result.variants:
        spec = specs[variant.name]
        assert variant.width <= min(spec.width, result.width) or spec.crop
        assert variant.width <= spec.width and variant.height <= spec.height
        assert variant.width <= result.width and variant.height <= result.height
        if spec.crop:
            short = min(result.width, result.height)
            assert (variant.width, variant.height) == (min(spec.width, short), min(spec.height, short))
        else:
            # Fit inside: one side touches the box unless the picture is smaller than it.
            assert variant.width == min(spec.width, result.width) or variant.height == min(spec.height, result.height)
        with Image.open(io.BytesIO(variant.data)) as decoded:
            assert decoded.size == (variant.width, variant.height)
            assert decoded.format.lower() == variant.format
        _assert_no_metadata(variant.data)


@pytest.mark.parametrize("entry", corpus_images("reject"), ids=lambda e: e.name)
def test_rejected_image_gets_a_stable_code(entry, options):
    with pytest.raises(MediaHubError) as caught:
        _run(entry, options)
    assert caught.value.code in STABLE_CODES
    assert caught.value.message and "\n" not in caught.value.message


def test_every_manifest_image_is_covered():
    entries = corpus_images()
    assert len(entries) == 95
    assert {e.entry["expected"] for e in entries} == {"accept", "reject"}


def test_orientation_is_applied_to_pixels_not_just_size(options):
    """Orientation 3 and 6 files must look like orientation 1 once processed."""
    reference = {e.name: e for e in corpus_images("accept")}
    upright = _run(reference["images/good/orient_landscape_1.jpg"], options)
    with Image.open(io.BytesIO(upright.original.data)) as base:
        base_pixels = base.convert("L").resize((60, 40))
    for turned in ("3", "6", "8", "5"):
        result = _run(reference[f"images/good/orient_landscape_{turned}.jpg"], options)
        with Image.open(io.BytesIO(result.original.data)) as image:
            pixels = ImageOps.exif_transpose(image).convert("L").resize((60, 40))
        diff = sum(abs(a - b) for a, b in zip(base_pixels.tobytes(), pixels.tobytes(), strict=True)) / (60 * 40)
        assert diff < 12, f"orientation {turned} not applied (mean difference {diff:.1f})"


def test_lossless_strip_keeps_jpeg_pixels_identical(options):
    entry = next(e for e in corpus_images("accept") if e.name == "images/good/gps_nikon_DSCN0010.jpg")
    result = _run(entry, options)
    assert result.metadata["original"] == "stripped"
    with Image.open(entry.path) as source, Image.open(io.BytesIO(result.original.data)) as stored:
        assert source.tobytes() == stored.tobytes()
