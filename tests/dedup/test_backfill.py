"""`dedup_backfill`: rows stored before fingerprints existed get them from their stored bytes."""

from __future__ import annotations

from sqlalchemy import update

from mediahub.db.models import MediaItem
from mediahub.dedup import policy as dedup
from mediahub.media import backfill as dedup_backfill
from tests.media.helpers import reload, upload
from tests.support.corpus import CORPUS_DIR

GOOD = CORPUS_DIR / "images/good"
COLUMNS = ["pixel_sha256", "dedup_thumb", *(f"hash_{k}{b}" for k in "wc" for b in range(4))]


def _values(item: MediaItem) -> dict:
    return {name: getattr(item, name) for name in COLUMNS}


def _forget(runtime, *items: MediaItem) -> None:
    """As a row written before duplicate detection: no digest, no thumbnail, no bands."""
    with runtime.database.session() as session:
        session.execute(update(MediaItem).where(MediaItem.id.in_([i.id for i in items]))
                        .values(**dict.fromkeys(COLUMNS)))


def _backfill(runtime):
    return dedup_backfill.backfill(runtime.database, runtime.storage, runtime.ingest.image_options)


def test_backfill_restores_what_ingest_computed_and_is_idempotent(make):
    runtime = make(dedup_policy="allow")
    items = [upload(runtime, GOOD / name, f"property:P-{n}:gallery")
             for n, name in enumerate(["jpeg_hopper.jpg", "png_hopper.png", "jpeg_flower.jpg"])]
    before = [_values(item) for item in items]
    _forget(runtime, *items)
    assert dedup_backfill.pending(runtime.database) == 3
    with runtime.database.session() as session:
        assert dedup.similar_items(session, items[0].id, threshold=14) == []

    report = _backfill(runtime)
    assert (report.examined, report.filled, report.from_variant, report.failed) == (3, 3, 0, {})
    assert [_values(reload(runtime, item)) for item in items] == before
    with runtime.database.session() as session:  # the copy on another listing is found again
        found = dedup.similar_items(session, items[0].id, threshold=14, index=runtime.dedup_index)
        assert [(item.id, distance) for item, distance in found] == [(items[1].id, 0)]

    again = _backfill(runtime)
    assert (again.examined, again.filled) == (0, 0) and dedup_backfill.pending(runtime.database) == 0


def test_backfill_falls_back_to_the_largest_variant_and_reports_what_it_cannot_read(make):
    runtime = make()
    kept = upload(runtime, GOOD / "jpeg_flower.jpg", "property:P-1:gallery")
    lost = upload(runtime, GOOD / "jpeg_hopper.jpg", "property:P-2:gallery")
    fingerprint_before = dedup.Probe.of_item(kept).fingerprint
    runtime.storage.delete(kept.original_key)
    runtime.storage.delete_many(lost.keys())
    _forget(runtime, kept, lost)

    report = _backfill(runtime)
    assert (report.examined, report.filled, report.from_variant) == (2, 1, 1)
    assert list(report.failed) == [lost.id] and "not_found" in report.failed[lost.id]
    after = reload(runtime, kept)
    assert after.pixel_sha256 and after.hash_w0 is not None
    # From a 1600 px variant the fingerprint is the original's, within a few bits.
    fingerprint_after = dedup.Probe.of_item(after).fingerprint
    assert fingerprint_after.compare(fingerprint_before, 4) is not None
    assert _backfill(runtime).examined == 1, "a second run retries only the row that failed"
