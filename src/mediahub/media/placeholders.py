"""Placeholders for rows stored before uploads made them (`mediahub placeholders backfill`).

Each row without them gets them from its smallest whole-picture preset rendition
(a video: of its poster), never from the original: a few hundred pixels, not
millions, are decoded. Rows that have them are never read, so a second run only
retries what failed and what had no rendition yet (an upload whose variants job has
not run: its placeholders come from that upload, or from a later run).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mediahub.db.repositories.item_metadata import MetadataRepository
from mediahub.db.session import Database
from mediahub.errors import MediaHubError
from mediahub.media.responsive import whole_presets
from mediahub.pipeline.placeholders import PLACEHOLDERS, placeholders_of_file
from mediahub.storage.base import Storage

PAGE = 100
DECODED_FORMATS = frozenset({"jpeg", "png", "webp", "avif"})  # what the pipeline writes and Pillow reads


@dataclass
class PlaceholderReport:
    examined: int = 0
    filled: int = 0
    without_rendition: int = 0  # no whole-picture rendition stored yet
    failed: dict[int, str] = field(default_factory=dict)  # id -> why


def pending(database: Database) -> int:
    """Rows without placeholders."""
    with database.session() as session:
        return MetadataRepository(session).count_lacking(PLACEHOLDERS)


def backfill(database: Database, storage: Storage, progress: Callable[[], None] | None = None) -> PlaceholderReport:
    """Compute the placeholders of every row that lacks them; one short transaction per row."""
    report = PlaceholderReport()
    last_id = 0
    while True:
        with database.session() as session:
            page = MetadataRepository(session).lacking(PLACEHOLDERS, last_id, PAGE)
        for item in page:
            report.examined += 1
            source = next((v for v in whole_presets(item) if v.format in DECODED_FORMATS), None)
            if source is None:
                report.without_rendition += 1
            else:
                try:
                    values = placeholders_of_file(storage.get(source.storage_key))
                except MediaHubError as exc:  # storage: a missing object, an unreachable store
                    report.failed[item.id] = f"{source.storage_key}: {exc.code}: {exc.message}"
                except (OSError, ValueError) as exc:  # bytes Pillow cannot decode
                    report.failed[item.id] = f"{source.storage_key}: {exc}"
                else:
                    with database.session() as session:
                        report.filled += MetadataRepository(session).put(item.id, PLACEHOLDERS, values)
            if progress:
                progress()
        if len(page) < PAGE:
            return report
        last_id = page[-1].id
