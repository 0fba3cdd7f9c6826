"""The libvips half of the pipeline agrees with the Pillow half it replaced."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from mediahub.config import VariantSpec
from mediahub.pipeline import vips as vips_step
from mediahub.pipeline.fingerprint import pixel_sha256
from mediahub.pipeline.intake import spool
from mediahub.pipeline.orient import upright
from mediahub.pipeline.variants import output_size, render_all

SPECS = (VariantSpec("thumbnail", 150, 150, True), VariantSpec("small", 400, 400),
         VariantSpec("medium", 800, 800), VariantSpec("large", 1600, 1600))


def noise(mode: str, size: tuple[int, int], seed: int = 1) -> Image.Image:
    bands = len(mode)
    values = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], bands), dtype=np.uint8)
    return Image.fromarray(values[..., 0] if bands == 1 else values, mode)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_pillow_to_vips_and_back_keeps_every_pixel(mode):
    image = noise(mode, (37, 23))
    back = vips_step.to_pillow(vips_step.from_pillow(image))
    assert back.mode == mode and back.tobytes() == image.tobytes()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_vips_orientation_matches_pillow(orientation):
    stored = noise("RGB", (7, 4), seed=orientation)
    via_pillow = upright(stored.copy(), orientation)
    via_vips = vips_step.to_pillow(upright(vips_step.from_pillow(stored), orientation))
    assert via_vips.size == via_pillow.size
    assert via_vips.tobytes() == via_pillow.tobytes()


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_pixel_digest_is_the_same_for_vips_and_pillow_pixels(mode):
    image = noise(mode, (64, 48))
    assert pixel_sha256(vips_step.from_pillow(image)) == pixel_sha256(image)
    assert pixel_sha256(image) == pixel_sha256(image.convert("RGB"))  # grey widens to RGB


def test_renders_from_vips_and_pillow_bases_are_the_same():
    base = noise("RGB", (1600, 1067))
    from_pillow = {n: vips_step.to_pillow(r) for n, r in render_all(base, SPECS).items()}
    from_vips = {n: vips_step.to_pillow(r) for n, r in render_all(vips_step.from_pillow(base), SPECS).items()}
    for spec in SPECS:
        assert from_pillow[spec.name].size == output_size(1600, 1067, spec)
        assert from_pillow[spec.name].tobytes() == from_vips[spec.name].tobytes()


def test_renders_of_a_reduced_base_take_the_full_pictures_sizes():
    renders = render_all(noise("RGB", (1602, 1202)), SPECS, full_size=(4000, 3000))
    assert {name: (image.width, image.height) for name, image in renders.items()} == {
        "large": (1600, 1200), "medium": (800, 600), "small": (400, 300), "thumbnail": (150, 150)}


def test_alpha_is_premultiplied_so_transparent_colour_never_bleeds_in():
    # Opaque white stripes on fully transparent *black*: a resize that ignores alpha greys the edges.
    values = np.zeros((400, 400, 4), dtype=np.uint8)
    values[:, ::2] = (255, 255, 255, 255)
    renders = render_all(Image.fromarray(values, "RGBA"), (VariantSpec("small", 133, 133),))
    small = np.asarray(vips_step.to_pillow(renders["small"]))
    visible = small[..., 3] > 0
    assert small.shape[2] == 4 and visible.any()
    assert small[visible][:, :3].min() >= 250


def test_spooled_digests_are_those_of_the_bytes(tmp_path):
    data = bytes(range(256)) * 5000
    spooled = spool([data[:1000], data[1000:]], limit=len(data), tmp_dir=tmp_path)
    try:
        assert spooled.sha256 == hashlib.sha256(data).hexdigest()
        assert spooled.md5 == hashlib.md5(data).hexdigest()
        assert spooled.size == len(data)
    finally:
        spooled.discard()


def test_jpeg_variants_from_libvips_match_pillows_encoder():
    """The libvips JPEG encode (q, 4:2:0, no metadata) decodes to what Pillow's would."""
    import io

    from mediahub.pipeline.variants import EncodeOptions, encode

    base = noise("RGB", (320, 200))
    options = EncodeOptions(jpeg_quality=85, webp_quality=80, webp=False)
    ours = Image.open(io.BytesIO(encode(vips_step.from_pillow(base), "jpeg", options)))
    out = io.BytesIO()
    base.save(out, "JPEG", quality=85)
    theirs = Image.open(io.BytesIO(out.getvalue()))
    assert ours.size == theirs.size and not ours.info.get("exif") and not ours.info.get("icc_profile")
    difference = np.abs(np.asarray(ours, dtype=int) - np.asarray(theirs, dtype=int))
    assert difference.mean() < 1.0
