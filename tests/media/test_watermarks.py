"""Watermarks through ingest, the deferred variants job and reprocessing, checked at pixel level.

The same picture goes to a watermarked field (builder portfolio) and to one without a mark
(property gallery): only `large`'s anchor box may differ between the two, by the blend.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from mediahub.db.repositories.job_queue import enqueue
from mediahub.jobs import tasks
from mediahub.media import reprocessing
from mediahub.media.job_kinds import REPROCESS
from mediahub.pipeline import watermark
from tests.media.conftest import make_runtime
from tests.media.helpers import reload, upload
from tests.support.corpus import CORPUS_DIR
from tests.support.watermarks import mark_file

PHOTO = CORPUS_DIR / "images/good/orient_landscape_1.jpg"  # 1800x1200
FLOWER = CORPUS_DIR / "images/good/jpeg_flower.jpg"  # 480x360: medium and large are its own size
SIZES = "thumbnail:150x150:crop,small:400,medium:800,large:1200"
COLOUR = (250, 20, 120)
# large is 1200x800: margin 24 px (0.02 of 1200), the 100x50 mark scaled to 300x150, at bottom-right.
BOX = (slice(626, 776), slice(876, 1176))
MARKED, PLAIN = "builder:B-1:portfolio", "property:P-1:gallery"


def _settings(tmp_path, **mark):
    return {"image_sizes": SIZES, "watermarks": {"builder.portfolio": {
        "image": str(mark_file(tmp_path, COLOUR)), "opacity": 0.5, "scale": 0.25, "margin": 0.02, **mark}}}


def _objects(runtime, item) -> dict[tuple[str, str], bytes]:
    return {(v.name, v.format): runtime.storage.get(v.storage_key) for v in item.variants}


def _decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def _outside(shape: tuple[int, ...], block: int) -> np.ndarray:
    """Every pixel but those of the codec's blocks (`block` px) the mark's box touches, and a pixel around them
    (a JPEG decoder's chroma upsampling reads one pixel into the next block)."""
    mask = np.ones(shape[:2], bool)
    pad = int(block > 1)
    rows, cols = BOX
    mask[rows.start // block * block - pad:-(-rows.stop // block) * block + pad,
         cols.start // block * block - pad:-(-cols.stop // block) * block + pad] = False
    return mask


def _assert_marked(marked: bytes, plain: bytes, fmt: str) -> None:
    """`marked` is `plain` with the half-opaque mark blended into BOX, and the same elsewhere.

    PNG compares exactly; a JPEG's blocks away from the box are the same bytes' pixels; WebP's
    encoder adapts its quantisers to the whole picture, so its pixels elsewhere move a little.
    """
    after, before = _decoded(marked), _decoded(plain)
    assert after.shape == before.shape == (800, 1200, 3)
    inset = (slice(BOX[0].start + 8, BOX[0].stop - 8), slice(BOX[1].start + 8, BOX[1].stop - 8))
    error = np.abs(after[inset] - (before[inset] + np.array(COLOUR)) / 2)
    outside = _outside(after.shape, {"png": 1, "jpeg": 16, "webp": 16}[fmt])
    if fmt == "png":
        assert error.max() <= 1
    else:
        assert error.mean() < 4
    if fmt == "webp":
        assert np.abs(after[outside] - before[outside]).mean() < 3
    else:
        assert (after[outside] == before[outside]).all()
    assert np.abs(after[inset] - before[inset]).mean() > 30, "the mark is visible"


def _assert_only_large_differs(runtime, marked, plain) -> None:
    marked_objects, plain_objects = _objects(runtime, marked), _objects(runtime, plain)
    assert set(marked_objects) == set(plain_objects)
    for key, data in marked_objects.items():
        assert (data == plain_objects[key]) == (key[0] != "large"), f"{key}: only large is marked"
    assert runtime.storage.get(marked.original_key) == runtime.storage.get(plain.original_key), "originals unmarked"
    marked_keys = {v.storage_key for v in marked.variants if v.name == "large"}
    assert marked.original_key not in marked_keys
    assert not marked_keys & {v.storage_key for v in marked.variants if v.name != "large"}


def test_large_of_a_watermarked_field_carries_the_mark_in_every_format_and_nothing_else_does(make, tmp_path):
    runtime = make(**_settings(tmp_path))
    marked, plain = upload(runtime, PHOTO, MARKED), upload(runtime, PHOTO, PLAIN)
    assert {v.format for v in marked.variants} == {"jpeg", "webp"}, "JPEG at upload, WebP by the renditions job"
    mark = watermark.for_field(runtime.settings, "builder", "portfolio")
    assert marked.meta[watermark.METADATA_KEY] == watermark.fingerprint(mark)
    assert watermark.METADATA_KEY not in plain.meta
    _assert_only_large_differs(runtime, marked, plain)
    objects, plain_objects = _objects(runtime, marked), _objects(runtime, plain)
    for fmt in ("jpeg", "webp"):
        _assert_marked(objects["large", fmt], plain_objects["large", fmt], fmt)


def test_the_deferred_variants_job_marks_large_exactly(make, tmp_path):
    runtime = make(defer_slow_variants=True, **_settings(tmp_path))
    # A PNG with alpha: a full decode, so its variants are a job's; lossless PNG variants compare exactly.
    # Noise in one band: the original is more bytes than large's re-encode, so the plain large is its own object.
    gradient = np.linspace(0, 255, 1500, dtype=np.uint8)
    pixels = np.stack([np.random.default_rng(3).integers(0, 256, (1000, 1500), dtype=np.uint8),
                       np.tile(gradient, (1000, 1)), np.full((1000, 1500), 90, np.uint8),
                       np.full((1000, 1500), 255, np.uint8)], axis=2)
    pixels[:100, :100, 3] = 128  # translucent far from the mark, which lands on opaque pixels
    source = tmp_path / "plan.png"
    Image.fromarray(pixels, "RGBA").save(source)
    marked, plain = upload(runtime, source, MARKED), upload(runtime, source, PLAIN)
    assert marked.meta["original"] != "raw", "the job replaced the raw original"
    _assert_only_large_differs(runtime, marked, plain)
    objects, plain_objects = _objects(runtime, marked), _objects(runtime, plain)
    _assert_marked(objects["large", "png"], plain_objects["large", "png"], "png")


def _reprocess(runtime, item):
    with runtime.database.session() as session:
        job = enqueue(session, REPROCESS, media_id=item.id)
    tasks.reprocess(runtime.tasks, job)
    return reload(runtime, item)


def test_reprocessing_finds_and_marks_items_stored_before_the_mark_and_unmarks_them_after(db, local_storage, tmp_path):
    before = make_runtime(db, local_storage, tmp_path, image_sizes=SIZES)
    item = upload(before, PHOTO, MARKED)
    before.jobs.close()
    unmarked = _objects(before, item)
    after = make_runtime(db, local_storage, tmp_path, **_settings(tmp_path))
    assert not reprocessing.is_stale(item, before.settings)
    assert reprocessing.is_stale(item, after.settings), "made without the mark the settings now give its field"
    redone = _reprocess(after, item)
    assert not reprocessing.is_stale(redone, after.settings)
    objects = _objects(after, redone)
    for key, data in objects.items():
        assert (data == unmarked[key]) == (key[0] != "large"), key
    for fmt in ("jpeg", "webp"):
        _assert_marked(objects["large", fmt], unmarked["large", fmt], fmt)
    assert redone.original_key == item.original_key
    after.jobs.close()

    # The mark taken off again: the item is stale, and its large made plain.
    assert reprocessing.is_stale(redone, before.settings)
    before = make_runtime(db, local_storage, tmp_path, image_sizes=SIZES)
    plain = _reprocess(before, redone)
    assert _objects(before, plain) == unmarked and watermark.METADATA_KEY not in plain.meta
    assert not reprocessing.is_stale(plain, before.settings)
    before.jobs.close()


def test_a_small_pictures_marked_large_shares_neither_the_original_nor_an_unmarked_size(make, tmp_path):
    settings = _settings(tmp_path)
    settings["image_sizes"] = "thumbnail:150x150:crop,small:400,medium:800,large:1600"
    settings["watermarks"]["community.photos"] = {**settings["watermarks"]["builder.portfolio"], "min_width": 600}
    runtime = make(**settings)
    plain, marked = upload(runtime, FLOWER, PLAIN), upload(runtime, FLOWER, MARKED)
    narrow = upload(runtime, FLOWER, "community:C-1:photos")

    def keys(item, fmt):
        return {v.name: v.storage_key for v in item.variants if v.format == fmt}

    # Unmarked, large and medium are the original's pixels: they name it (renditions.plan_variants).
    assert keys(plain, "jpeg")["large"] == keys(plain, "jpeg")["medium"] == plain.original_key
    assert keys(plain, "webp")["large"] == keys(plain, "webp")["medium"]
    jpeg, webp = keys(marked, "jpeg"), keys(marked, "webp")
    assert jpeg["large"] != marked.original_key and jpeg["medium"] == marked.original_key
    assert webp["large"] != webp["medium"]
    assert keys(narrow, "jpeg")["large"] == narrow.original_key, "480 px is under community's min_width: no mark"
    original = _decoded(runtime.storage.get(marked.original_key))
    large = _decoded(runtime.storage.get(jpeg["large"]))
    # 480x360: margin 10 px, the mark 96x48 at (374, 302); the original's pixels elsewhere (up to JPEG noise).
    assert np.abs(large[306:346, 378:466] - (original[306:346, 378:466] + np.array(COLOUR)) / 2).mean() < 6
    assert np.abs(large[:288] - original[:288]).mean() < 2
