"""An ingest service over a real database and a real store, per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediahub.config import Settings
from mediahub.runtime import Runtime


def make_runtime(database, storage, tmp_path: Path, tagger=None, **overrides) -> Runtime:
    """Variants are made in the upload unless a test asks for them to be deferred (test_deferred_variants.py);
    `tagger`: the classifier of tagging jobs (tests/support/taggers.py), none unless given."""
    overrides.setdefault("defer_slow_variants", False)
    overrides.setdefault("job_lull_seconds", 0.05)  # jobs soon after an upload (the wait has its own tests)
    settings = Settings(_env_file=None, database_url=str(database.url), media_root=tmp_path / "media",
                        temp_dir=tmp_path / "tmp", **overrides)
    return Runtime.assemble(settings, database, storage, tagger=tagger)


@pytest.fixture
def make(db, local_storage, tmp_path):
    """make(**settings) -> a Runtime on this test's database (SQLite, PostgreSQL, MariaDB) and local store."""
    made = []

    def build(**overrides):
        made.append(make_runtime(db, local_storage, tmp_path, **overrides))
        return made[-1]

    yield build
    for runtime in made:
        runtime.jobs.close()


@pytest.fixture
def runtime(sqlite_db, local_storage, tmp_path):
    """The embedded default: SQLite and local disk."""
    runtime = make_runtime(sqlite_db, local_storage, tmp_path)
    yield runtime
    runtime.jobs.close()


@pytest.fixture(params=["local", "s3"])
def any_storage(request):
    return request.getfixturevalue(f"{request.param}_storage")


@pytest.fixture
def backend_runtime(db, any_storage, tmp_path):
    """Every database (SQLite, PostgreSQL, MariaDB) times every store (local, S3)."""
    runtime = make_runtime(db, any_storage, tmp_path)
    yield runtime
    runtime.jobs.close()
