"""Ingest runtimes with duplicate-detection settings, over a real database and store."""

from __future__ import annotations

import pytest

from tests.media.conftest import make_runtime


@pytest.fixture
def make(sqlite_db, local_storage, tmp_path):
    """make(**settings) -> a Runtime on one SQLite database and one local store (shared by all made)."""
    def build(**overrides):
        return make_runtime(sqlite_db, local_storage, tmp_path, **overrides)
    return build
