"""Shared fixtures. Service fixtures live in tests/support/ as plugins."""

from __future__ import annotations

import pytest

from tests.support.corpus import CORPUS_DIR, CorpusMissing, manifest

pytest_plugins = [
    "tests.support.s3_server",
    "tests.support.databases",
    "tests.support.cdn",
    "tests.support.audit_guard",
]


def pytest_sessionstart(session: pytest.Session) -> None:
    try:
        manifest()
    except CorpusMissing as exc:
        raise pytest.UsageError(str(exc)) from exc


@pytest.fixture(scope="session")
def corpus_dir():
    return CORPUS_DIR
