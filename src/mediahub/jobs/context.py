"""What a task may use: the leaves of the service graph, built before any dispatcher exists."""

from __future__ import annotations

from dataclasses import dataclass

from mediahub.config import Settings
from mediahub.db.session import Database
from mediahub.media.checks import ModerationChecks
from mediahub.pipeline.tagging import Tagger
from mediahub.storage.base import Storage


@dataclass(frozen=True)
class TaskContext:
    settings: Settings
    database: Database
    storage: Storage
    checks: ModerationChecks  # this process's (one NSFW model per process, loaded on first use)
    tagger: Tagger | None = None  # the classifier of tagging jobs; None: this process has none
