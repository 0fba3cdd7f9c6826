"""Placeholders made by uploads (inline and deferred variants, video posters), and the backfill of old rows."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import fast_blurhash
import numpy as np
import pytest
import thumbhash
from PIL import Image, ImageOps
from sqlalchemy import update

from mediahub.db.models import MediaItem
from mediahub.media import placeholders as placeholder_backfill
from mediahub.media.responsive import whole_presets
from tests.jobs.helpers import ingest_only
from tests.media.conftest import make_runtime
from tests.media.helpers import reload, upload
from tests.support.corpus import CORPUS_DIR

GOOD = CORPUS_DIR / "images/good"
PHOTO = GOOD / "orient_landscape_6.jpg"  # EXIF orientation 6: the placeholder must be of the upright picture
TRANSPARENT_PNG = GOOD / "png_rgba_transparent.png"
VIDEO = CORPUS_DIR / "video/mp4_h264_example_640x480.mp4"


def linear_mean(srgb: np.ndarray) -> np.ndarray:
    """The mean of 8-bit sRGB pixels (N x 3) taken in linear light, as 8-bit sRGB: what BlurHash keeps."""
    values = srgb / 255
    mean = np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4).mean(axis=0)
    return 255 * np.where(mean <= 0.0031308, mean * 12.92, 1.055 * mean ** (1 / 2.4) - 0.055)


def decoded_mean(values: dict[str, str]) -> dict[str, np.ndarray]:
    """The mean RGB of each placeholder, decoded with its package's decoder."""
    blur = np.frombuffer(fast_blurhash.decode(values["blurhash"], 32, 32), np.uint8).reshape(-1, 3)
    width, height, rgba = thumbhash.thumb_hash_to_rgba(base64.b64decode(values["thumbhash"], validate=True))
    thumb = np.frombuffer(rgba, np.uint8).reshape(-1, 4)[:, :3]
    return {"blurhash": linear_mean(blur), "thumbhash": thumb.mean(axis=0)}


def picture_means(image: Image.Image) -> dict[str, np.ndarray]:
    """The picture's mean colour as each placeholder keeps it: BlurHash in linear light, ThumbHash in sRGB."""
    srgb = np.asarray(image.convert("RGB").resize((64, 64), Image.Resampling.BOX)).reshape(-1, 3).astype(float)
    return {"blurhash": linear_mean(srgb), "thumbhash": srgb.mean(axis=0)}


def assert_plausible(values: dict[str, str], image: Image.Image) -> None:
    expected = picture_means(image)
    for name, got in decoded_mean(values).items():
        assert np.abs(got - expected[name]).max() < 10, (name, got, expected[name])


def textured(path: Path, colour: tuple[int, int, int], size=(1200, 800)) -> Path:
    """A photo-like picture of one dominant colour (noise around it), saved as JPEG."""
    noise = np.random.default_rng(7).integers(-40, 40, (size[1], size[0], 3))
    Image.fromarray(np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)).save(path, quality=90)
    return path


@pytest.mark.parametrize("colour", [(210, 25, 25), (20, 60, 200)], ids=["red", "blue"])
def test_an_upload_stores_placeholders_of_its_colour(runtime, tmp_path, colour):
    item = upload(runtime, textured(tmp_path / "plain.jpg", colour))
    for got in decoded_mean(item.meta["placeholders"]).values():
        assert np.abs(got - colour).max() < 15, (got, colour)


def test_a_photo_gets_placeholders_of_its_upright_pixels(runtime):
    item = upload(runtime, PHOTO)
    with Image.open(PHOTO) as image:
        stored = image.size
        upright = ImageOps.exif_transpose(image)
    assert (item.width, item.height) == upright.size == stored[::-1]
    values = item.meta["placeholders"]
    assert_plausible(values, upright)
    ratio = thumbhash.thumb_hash_to_approximate_aspect_ratio(base64.b64decode(values["thumbhash"]))
    assert ratio == pytest.approx(item.width / item.height, rel=0.2)


def test_deferred_variants_have_placeholders_from_the_upload_itself(sqlite_db, local_storage, tmp_path):
    runtime = make_runtime(sqlite_db, local_storage, tmp_path, defer_slow_variants=True)
    runtime.ingest.dispatch = None  # the variants job stays queued
    try:
        item = ingest_only(runtime, TRANSPARENT_PNG)
    finally:
        runtime.jobs.close()
    assert item.variants == [] and item.meta["pending"] == ["variants"]
    with Image.open(TRANSPARENT_PNG) as image:
        rgba = image.convert("RGBA")
    values = item.meta["placeholders"]
    _, _, pixels = thumbhash.thumb_hash_to_rgba(base64.b64decode(values["thumbhash"]))
    alpha = np.frombuffer(pixels, np.uint8)[3::4]
    assert abs(alpha.mean() - np.asarray(rgba)[..., 3].mean()) < 25, "the ThumbHash keeps the picture's transparency"


def test_a_video_gets_placeholders_of_its_poster(runtime):
    item = upload(runtime, VIDEO, "post:9:media")
    poster = next(v for v in whole_presets(item) if v.format == "jpeg")
    with Image.open(io.BytesIO(runtime.storage.get(poster.storage_key))) as image:
        assert_plausible(item.meta["placeholders"], image)


def _forget(runtime, *items: MediaItem) -> None:
    """As rows stored before placeholders existed."""
    with runtime.database.session() as session:
        for item in items:
            meta = {k: v for k, v in item.meta.items() if k != "placeholders"}
            session.execute(update(MediaItem).where(MediaItem.id == item.id).values(meta=meta))


def test_backfill_fills_rows_without_placeholders_from_a_rendition_and_leaves_the_others(make, tmp_path):
    runtime = make(dedup_policy="allow")
    red = upload(runtime, textured(tmp_path / "red.jpg", (210, 25, 25)), "property:P-1:gallery")
    photo = upload(runtime, PHOTO, "property:P-2:gallery")
    kept = upload(runtime, GOOD / "jpeg_flower.jpg", "property:P-3:gallery")
    sentinel = {"blurhash": "L00000fQfQfQfQfQfQfQfQfQfQfQ", "thumbhash": "AAAAAAAAAAAAAAAAAAAAAAAAAAA="}
    with runtime.database.session() as session:  # proof that a row with placeholders is not recomputed
        session.execute(update(MediaItem).where(MediaItem.id == kept.id)
                        .values(meta={**kept.meta, "placeholders": sentinel}))
    _forget(runtime, red, photo)
    for item in (red, photo):  # the originals are never read
        runtime.storage.delete(item.original_key)
    assert placeholder_backfill.pending(runtime.database) == 2

    report = placeholder_backfill.backfill(runtime.database, runtime.storage)
    assert (report.examined, report.filled, report.without_rendition, report.failed) == (2, 2, 0, {})
    for got in decoded_mean(reload(runtime, red).meta["placeholders"]).values():
        assert np.abs(got - (210, 25, 25)).max() < 15
    backfilled, uploaded = (decoded_mean(values) for values in (reload(runtime, photo).meta["placeholders"],
                                                                 photo.meta["placeholders"]))
    for name, got in backfilled.items():  # from a rendition, as the upload made them
        assert np.abs(got - uploaded[name]).max() < 6, (name, got, uploaded[name])
    assert reload(runtime, kept).meta["placeholders"] == sentinel
    assert reload(runtime, photo).meta["source_format"] == "jpeg", "the other metadata stays"

    again = placeholder_backfill.backfill(runtime.database, runtime.storage)
    assert (again.examined, again.filled) == (0, 0) and placeholder_backfill.pending(runtime.database) == 0


def test_backfill_reports_unreadable_renditions_and_waits_for_missing_ones(runtime):
    lost = upload(runtime, PHOTO, "property:P-1:gallery")
    waiting = upload(runtime, GOOD / "jpeg_flower.jpg", "property:P-2:gallery")
    runtime.storage.delete_many([v.storage_key for v in lost.variants])
    _forget(runtime, lost, waiting)
    with runtime.database.session() as session:  # as an upload whose variants job has not run
        row = session.get(MediaItem, waiting.id)
        row.variants.clear()

    report = placeholder_backfill.backfill(runtime.database, runtime.storage)
    assert (report.examined, report.filled, report.without_rendition) == (2, 0, 1)
    assert list(report.failed) == [lost.id] and "not_found" in report.failed[lost.id]
    assert placeholder_backfill.pending(runtime.database) == 2, "both are tried again next time"
