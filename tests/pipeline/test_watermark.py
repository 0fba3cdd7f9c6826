"""Watermarks at pixel level: where the mark lands, how it blends, and which renders carry it."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mediahub.config import Settings, Watermark, parse_image_sizes
from mediahub.media.renditions import StoredOriginal, plan_variants
from mediahub.pipeline import vips as vips_step
from mediahub.pipeline.variants import EncodeOptions, Encoded, encode_all, render_all
from mediahub.pipeline.watermark import (
    UnknownWatermarkField,
    applies,
    apply,
    check_fields,
    fingerprint,
    for_field,
)
from tests.support.watermarks import mark_file

COLOUR = (250, 20, 120)


def _photo(mode: str, size: tuple[int, int] = (400, 300)) -> Image.Image:
    """Noise: every pixel differs from its neighbours, so an unchanged region is unchanged pixel by pixel."""
    rng = np.random.default_rng(7)
    bands = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], bands), dtype=np.uint8)
    if mode == "RGBA":
        pixels[..., 3] = 255
    return Image.fromarray(pixels.squeeze(axis=2) if bands == 1 else pixels, mode)


def _pixels(image) -> np.ndarray:
    pillow = vips_step.to_pillow(image) if vips_step.is_vips(image) else image
    array = np.asarray(pillow, dtype=np.int16)
    return array[..., None] if array.ndim == 2 else array


def _changed_box(before: np.ndarray, after: np.ndarray) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom), exclusive, of the pixels that differ; None when none do."""
    rows, cols = np.nonzero(np.any(before != after, axis=2))
    if not len(rows):
        return None
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


@pytest.mark.parametrize("mode, colour", [("RGB", COLOUR), ("RGBA", COLOUR), ("L", (200, 200, 200))])
def test_a_half_opaque_mark_at_bottom_right_blends_into_exactly_its_box(tmp_path, mode, colour):
    mark = Watermark(image=mark_file(tmp_path, colour), position="bottom-right", opacity=0.5, scale=0.25,
                     margin=0.02)
    photo = vips_step.from_pillow(_photo(mode))
    marked = apply(photo, mark)
    assert (marked.width, marked.height, marked.bands, marked.format) == (400, 300, photo.bands, "uchar")
    before, after = _pixels(photo), _pixels(marked)
    # Margin 8 px (0.02 of 400), mark 100x50 (0.25 of 400 wide, its own aspect).
    assert _changed_box(before, after) == (292, 242, 392, 292)
    inside = (slice(242, 292), slice(292, 392))
    channels = 1 if mode == "L" else 3
    expected = (before[inside][..., :channels] + np.array(colour[:channels])) / 2
    assert np.abs(after[inside][..., :channels] - expected).max() <= 1
    if mode == "RGBA":
        assert (after[..., 3] == 255).all(), "an opaque picture stays opaque"
    outside = np.ones(before.shape[:2], bool)
    outside[inside] = False
    assert (after[outside] == before[outside]).all()


def test_grey_with_alpha_keeps_its_two_bands(tmp_path):
    mark = Watermark(image=mark_file(tmp_path, (200, 200, 200)), opacity=0.5, scale=0.25, margin=0.02)
    pixels = np.stack([np.asarray(_photo("L")), np.full((300, 400), 255, np.uint8)], axis=2)
    photo = vips_step.module().Image.new_from_memory(pixels.tobytes(), 400, 300, 2, "uchar").copy(
        interpretation="b-w")
    marked = apply(photo, mark)
    assert (marked.bands, marked.interpretation) == (2, "b-w")
    before, after = np.asarray(pixels, dtype=np.int16), np.ndarray((300, 400, 2), np.uint8, marked.write_to_memory())
    assert _changed_box(before, after) == (292, 242, 392, 292)
    assert np.abs(after[242:292, 292:392, 0] - (before[242:292, 292:392, 0] + 200) / 2).max() <= 1


@pytest.mark.parametrize("position, left, top", [
    ("top-left", 8, 8), ("top", 150, 8), ("top-right", 292, 8),
    ("left", 8, 125), ("center", 150, 125), ("right", 292, 125),
    ("bottom-left", 8, 242), ("bottom", 150, 242), ("bottom-right", 292, 242),
])
def test_each_anchor_places_the_mark_inside_the_margin(tmp_path, position, left, top):
    mark = Watermark(image=mark_file(tmp_path), position=position, opacity=1, scale=0.25, margin=0.02)
    photo = vips_step.from_pillow(_photo("RGB"))
    after = _pixels(apply(photo, mark))
    assert _changed_box(_pixels(photo), after) == (left, top, left + 100, top + 50)
    assert (after[top:top + 50, left:left + 100] == COLOUR).all(), "opacity 1 and an opaque mark: its own colour"


def test_the_mark_scales_with_the_output_and_stays_inside_a_short_one(tmp_path):
    mark = Watermark(image=mark_file(tmp_path), scale=0.25, margin=0.02)
    wide = vips_step.from_pillow(_photo("RGB", (800, 600)))
    assert _changed_box(_pixels(wide), _pixels(apply(wide, mark))) == (584, 484, 784, 584)
    # 400x60: a 100x50 mark would not fit between the 8 px margins; it shrinks to 88x44.
    short = vips_step.from_pillow(_photo("RGB", (400, 60)))
    assert _changed_box(_pixels(short), _pixels(apply(short, mark))) == (304, 8, 392, 52)
    tiny = vips_step.from_pillow(_photo("RGB", (3, 2)))
    assert (_pixels(apply(tiny, mark)) == _pixels(tiny)).all(), "a mark under a pixel is left out"


def test_the_mark_image_is_read_once_per_process(tmp_path):
    path = mark_file(tmp_path, name="cached.png")
    mark = Watermark(image=path, opacity=1, scale=0.25)
    photo = vips_step.from_pillow(_photo("RGB"))
    first = _pixels(apply(photo, mark))
    mark_file(tmp_path, colour=(0, 255, 0), name="cached.png")  # the file changes under a running process
    assert (_pixels(apply(photo, mark)) == first).all()


def test_marks_apply_to_the_listed_presets_and_transforms_at_least_min_width_wide(tmp_path):
    mark = Watermark(image=mark_file(tmp_path), presets=("large", "medium"), min_width=600)
    assert applies(mark, 1600, "large") and applies(mark, 600, "medium") and applies(mark, 600)
    assert not applies(mark, 599, "large") and not applies(mark, 599), "narrower than min_width"
    assert not applies(mark, 1600, "small") and not applies(mark, 1600, "thumbnail")
    assert not applies(None, 1600, "large") and not applies(None, 1600)


def test_the_fingerprint_changes_with_the_marks_pixels_or_settings(tmp_path):
    red, green = mark_file(tmp_path, (255, 0, 0), name="red.png"), mark_file(tmp_path, (0, 255, 0), name="green.png")
    prints = {fingerprint(Watermark(image=red)), fingerprint(Watermark(image=green)),
              fingerprint(Watermark(image=red, opacity=0.4)), fingerprint(Watermark(image=red, presets=("medium",)))}
    assert len(prints) == 4 and None not in prints
    assert fingerprint(Watermark(image=red)) == fingerprint(Watermark(image=red, opacity=0.5))
    assert fingerprint(None) is None


def test_a_field_finds_its_mark_in_the_settings_or_a_table(tmp_path):
    mark = Watermark(image=mark_file(tmp_path))
    settings = Settings(_env_file=None, watermarks={"builder.portfolio": mark})
    assert for_field(settings, "builder", "portfolio") == mark
    assert for_field({"builder.portfolio": mark}, "builder", "portfolio") == mark
    assert for_field(settings, "builder", "logo") is None and for_field(settings, "property", "gallery") is None


@pytest.mark.parametrize("key", ["builder.photos", "builders.portfolio", "property.photos", "portfolio"])
def test_a_key_naming_no_entity_field_is_refused_naming_the_setting(tmp_path, key):
    mark = Watermark(image=mark_file(tmp_path))
    check_fields({"builder.portfolio": mark, "property.gallery": mark})
    with pytest.raises(UnknownWatermarkField,
                       match=f"WATERMARKS: no such entity field '{key}'; valid keys: .*builder.portfolio"):
        check_fields({key: mark})


def test_only_the_listed_presets_are_encoded_marked_and_the_renders_stay_clean(tmp_path):
    mark = Watermark(image=mark_file(tmp_path), opacity=1, scale=0.25, presets=("large",))
    sizes = parse_image_sizes("thumbnail:100x100:crop,small:200,large:400")
    renders = render_all(_photo("RGB", (800, 600)), sizes)
    before = {name: _pixels(image) for name, image in renders.items()}
    options = EncodeOptions(85, 80, webp=True)
    plain = {(v.name, v.format): v for v in encode_all(renders, sizes, options)}
    marked = {(v.name, v.format): v for v in encode_all(renders, sizes, options, mark)}
    assert all((_pixels(renders[name]) == pixels).all() for name, pixels in before.items()), (
        "the mark goes on the encoded copy: renders (which smaller sizes come from) stay unmarked")
    assert {key for key, v in marked.items() if v.watermarked} == {("large", "jpeg"), ("large", "webp")}
    for key, variant in marked.items():
        assert (variant.data == plain[key].data) == (key[0] != "large"), key
    for fmt in ("jpeg", "webp"):
        decoded = np.asarray(Image.open(io.BytesIO(marked["large", fmt].data)), dtype=np.int16)
        box = decoded[246:288, 296:388]  # large is 400x300: the 100x50 mark at (292, 242), inset from its edges
        assert np.abs(box - COLOUR).mean() < 8, fmt


def test_a_marked_variant_shares_no_object_with_unmarked_ones_or_the_original():
    encoded = [Encoded("large", "jpeg", 480, 360, b"x" * 120, watermarked=True),
               Encoded("medium", "jpeg", 480, 360, b"x" * 130), Encoded("small", "jpeg", 400, 300, b"x" * 125)]
    planned = plan_variants(encoded, lambda v: f"{v.name}.{v.format}", StoredOriginal("o.jpg", "jpeg", 480, 360, 100))
    assert [(p.row.name, p.row.storage_key, p.stored) for p in planned] == [
        ("large", "large.jpeg", True),  # more bytes than the original, but other pixels: stored
        ("medium", "o.jpg", False),  # the unmarked sizes share the original, never the marked large
        ("small", "o.jpg", False),
    ]
    smaller_marked = [Encoded("large", "jpeg", 480, 360, b"x" * 120), Encoded("medium", "jpeg", 480, 360, b"x" * 130,
                                                                            watermarked=True)]
    planned = plan_variants(smaller_marked, lambda v: f"{v.name}.{v.format}", None)
    assert [p.row.storage_key for p in planned] == ["large.jpeg", "medium.jpeg"]
