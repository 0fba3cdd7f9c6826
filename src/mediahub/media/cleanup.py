"""Removing stored objects whose rows are gone, retried until the store confirms."""

from __future__ import annotations

import logging

from mediahub.db.repositories import PendingDeleteRepository
from mediahub.db.session import Database
from mediahub.errors import MediaHubError
from mediahub.storage.base import Storage

log = logging.getLogger(__name__)


def purge_pending_deletes(database: Database, storage: Storage, batch: int = 500) -> int:
    """Delete queued objects; failures stay queued with their error. Returns objects removed."""
    removed = 0
    while True:
        with database.session() as session:
            repo = PendingDeleteRepository(session)
            due = repo.due(batch)
            if not due:
                return removed
            try:
                failed = set(storage.delete_many([p.storage_key for p in due]))
            except MediaHubError as exc:
                for pending in due:
                    repo.failed(pending.id, exc.message)
                log.warning("storage refused %d deletes: %s", len(due), exc.message)
                return removed
            repo.done([p.id for p in due if p.storage_key not in failed])
            for pending in due:
                if pending.storage_key in failed:
                    repo.failed(pending.id, "delete failed")
            removed += len(due) - len(failed)
            if failed or len(due) < batch:
                return removed
