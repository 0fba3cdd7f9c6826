"""Fingerprints for image rows stored before duplicate detection existed (`mediahub dedup backfill`).

Such rows have no pixel digest, thumbnail or pHash bands, so only their bytes'
SHA-256 can match. Each one is run through the image pipeline again
(`process_image`, with the options ingest uses and no encoding), from its stored
original, or from its largest variant when the original is missing or cannot be
read. The values are those an upload of that stored file would get now; where the
original was re-encoded on the way in, the pixel digest is that of the stored
pixels. Rows that already have every value are never touched, so a second run
only retries what failed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from mediahub.db.models import MediaItem
from mediahub.db.repositories import FingerprintRepository
from mediahub.db.session import Database
from mediahub.dedup.policy import row_columns
from mediahub.errors import MediaHubError
from mediahub.media.originals import process_stored
from mediahub.pipeline.image import ImageOptions
from mediahub.storage.base import Storage

PAGE = 50
IMAGE_VARIANT_FORMATS = frozenset({"jpeg", "png", "webp", "gif", "avif"})


@dataclass
class BackfillReport:
    examined: int = 0
    filled: int = 0
    from_variant: int = 0  # of `filled`: the original could not be used
    failed: dict[int, str] = field(default_factory=dict)  # id -> why


def pending(database: Database) -> int:
    """Image rows that lack a fingerprint value."""
    with database.session() as session:
        return FingerprintRepository(session).count_unfingerprinted()


def _sources(item: MediaItem) -> list[tuple[str, int]]:
    """(key, recorded size): the original, then the largest image variant stored apart from it."""
    images = [v for v in item.presets if v.format in IMAGE_VARIANT_FORMATS and v.storage_key != item.original_key]
    largest = max(images, key=lambda v: v.width * v.height, default=None)
    return [(item.original_key, item.byte_size)] + ([(largest.storage_key, largest.byte_size)] if largest else [])


def backfill(database: Database, storage: Storage, options: ImageOptions,
             progress: Callable[[], None] | None = None) -> BackfillReport:
    """Compute the missing duplicate-detection values of every image row; one transaction per row."""
    options = replace(options, encode=replace(options.encode, base=False, webp=False, avif=False))
    report = BackfillReport()
    last_id = 0
    with tempfile.TemporaryDirectory(prefix="mediahub-backfill-") as folder:
        while True:
            with database.session() as session:
                page = FingerprintRepository(session).unfingerprinted(last_id, PAGE)
            for item in page:
                report.examined += 1
                errors = []
                for n, (key, size) in enumerate(_sources(item)):
                    try:
                        # Objects are immutable: the recorded size is the object's.
                        processed = process_stored(storage, key, size, Path(folder), options)
                    except MediaHubError as exc:
                        errors.append(f"{key}: {exc.code}: {exc.message}")
                        continue
                    except OSError as exc:  # undecodable bytes Pillow gives up on
                        errors.append(f"{key}: {exc}")
                        continue
                    with database.session() as session:
                        FingerprintRepository(session).fill(
                            item.id, row_columns(processed.fingerprint, processed.pixel_sha256))
                    report.filled += 1
                    report.from_variant += n > 0
                    break
                else:
                    report.failed[item.id] = "; ".join(errors) or "no stored image"
                if progress:
                    progress()
            if len(page) < PAGE:
                return report
            last_id = page[-1].id
