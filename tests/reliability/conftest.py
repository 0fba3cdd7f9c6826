"""Fixtures of the reliability scenarios: a throwaway PostgreSQL database, a fresh bucket on moto."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mediahub.storage.s3 import S3Storage
from tests.support.databases import SERVERS, empty_database
from tests.support.s3_server import make_s3_storage


@pytest.fixture
def pg_url() -> Iterator[str]:
    """An empty PostgreSQL database for this test (created, then dropped)."""
    with empty_database(SERVERS["postgresql"]) as url:
        yield url


@pytest.fixture
def bucket(s3_server: str) -> S3Storage:
    """A fresh bucket on the moto server; the test reads it directly (never through a proxy)."""
    storage = make_s3_storage(s3_server)
    storage.check()
    return storage
