"""The service graph, built once at start-up from the settings and shared by CLI and API."""

from __future__ import annotations

from dataclasses import dataclass

from mediahub.config import Settings
from mediahub.db.session import Database
from mediahub.services.ingest import IngestService
from mediahub.storage.base import Storage
from mediahub.storage.factory import build_storage


@dataclass
class Runtime:
    settings: Settings
    database: Database
    storage: Storage
    ingest: IngestService

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        database = Database(settings.database_url)
        storage = build_storage(settings)
        return cls(settings, database, storage, IngestService(settings, database, storage))

    def close(self) -> None:
        self.database.dispose()
