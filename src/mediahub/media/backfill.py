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

from sqlalchemy import ColumnElement, func, or_, select, update

from mediahub.db.models import MediaItem, utcnow
from mediahub.db.session import Database
from mediahub.dedup.policy import row_columns
from mediahub.errors import MediaHubError, UnsupportedType
from mediahub.pipeline.image import ImageOptions, process_image
from mediahub.pipeline.sniff import sniff
from mediahub.storage.base import Storage

PAGE = 50
IMAGE_VARIANT_FORMATS = frozenset({"jpeg", "png", "webp", "gif", "avif"})


@dataclass
class BackfillReport:
    examined: int = 0
    filled: int = 0
    from_variant: int = 0  # of `filled`: the original could not be used
    failed: dict[int, str] = field(default_factory=dict)  # id -> why


def _missing() -> list[ColumnElement[bool]]:
    return [MediaItem.media_type == "image",
            or_(MediaItem.pixel_sha256.is_(None), MediaItem.dedup_thumb.is_(None), MediaItem.hash_w0.is_(None),
                MediaItem.hash_c0.is_(None))]


def pending(database: Database) -> int:
    """Image rows that lack a fingerprint value."""
    with database.session() as session:
        return session.scalar(select(func.count(MediaItem.id)).where(*_missing())) or 0


def _sources(original_key: str, variants: list[dict]) -> list[str]:
    """The original, then the largest image variant."""
    images = [v for v in variants or [] if v.get("format") in IMAGE_VARIANT_FORMATS]
    largest = max(images, key=lambda v: (v.get("width") or 0) * (v.get("height") or 0), default=None)
    return [original_key] + ([largest["key"]] if largest else [])


def _fingerprint(storage: Storage, key: str, options: ImageOptions, folder: Path) -> dict:
    data = storage.get(key)
    sniffed = sniff(data[:4096])
    if sniffed.media_kind != "image":
        raise UnsupportedType(f"{key} holds a {sniffed.media_kind}, not an image")
    path = folder / "object"
    path.write_bytes(data)
    processed = process_image(path, sniffed, options)
    return row_columns(processed.fingerprint, processed.pixel_sha256)


def backfill(database: Database, storage: Storage, options: ImageOptions,
             progress: Callable[[], None] | None = None) -> BackfillReport:
    """Compute the missing duplicate-detection values of every image row; one transaction per row."""
    options = replace(options, encode=replace(options.encode, base=False, webp=False, avif=False))
    report = BackfillReport()
    last_id = 0
    with tempfile.TemporaryDirectory(prefix="mediahub-backfill-") as folder:
        while True:
            with database.session() as session:
                page = session.execute(select(MediaItem.id, MediaItem.original_key, MediaItem.variants)
                                       .where(MediaItem.id > last_id, *_missing())
                                       .order_by(MediaItem.id).limit(PAGE)).all()
            for media_id, original_key, variants in page:
                report.examined += 1
                errors = []
                for n, key in enumerate(_sources(original_key, variants)):
                    try:
                        values = _fingerprint(storage, key, options, Path(folder))
                    except MediaHubError as exc:
                        errors.append(f"{key}: {exc.code}: {exc.message}")
                        continue
                    except OSError as exc:  # undecodable bytes Pillow gives up on
                        errors.append(f"{key}: {exc}")
                        continue
                    with database.session() as session:
                        session.execute(update(MediaItem).where(MediaItem.id == media_id)
                                        .values(**values, updated_at=utcnow()))
                    report.filled += 1
                    report.from_variant += n > 0
                    break
                else:
                    report.failed[media_id] = "; ".join(errors) or "no stored image"
                if progress:
                    progress()
            if len(page) < PAGE:
                return report
            last_id = page[-1][0]
