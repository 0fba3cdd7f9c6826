"""MediaUrls: the store's own URLs where it has them, else the API's file route, signed by the app."""

from __future__ import annotations

import time
import urllib.parse
from pathlib import Path

import pytest

from mediahub.config import Settings
from mediahub.db.models import MediaItem
from mediahub.media.urls import MediaUrls
from mediahub.storage.local import LocalStorage
from mediahub.storage.signing import verify

KEY = "listings/photos/42/2024-05/photo-20240501120000-abc123.jpg"
SECRET = "a-url-signing-secret-for-these-tests-only-0123456789"


class NamelessDisk(LocalStorage):
    """Another store without URLs of its own: the choice must follow the capability, not the backend's name."""

    kind = "disk"


@pytest.fixture(params=[LocalStorage, NamelessDisk], ids=["local", "other"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> LocalStorage:
    return request.param(tmp_path / "media")


def _urls(store: LocalStorage, **settings: object) -> MediaUrls:
    return MediaUrls(Settings(_env_file=None, url_signing_secret=SECRET, signed_url_ttl=600, **settings), store,
                     "http://api.example.org")


def test_pending_objects_get_a_signed_file_route_url(store: LocalStorage) -> None:
    before = int(time.time())

    url = _urls(store).url(MediaItem(moderation_status="pending"), KEY)

    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query)
    expires, signature = int(query["expires"][0]), query["signature"][0]
    assert url.startswith(f"http://api.example.org/v1/media/files/{KEY}?expires=")
    assert list(query) == ["expires", "signature"]
    assert before + 600 <= expires <= int(time.time()) + 600
    assert verify(KEY, expires, signature, SECRET.encode())
    assert not verify(KEY + "x", expires, signature, SECRET.encode())


@pytest.mark.parametrize("status", ["approved", "rejected"])
def test_approved_and_rejected_objects_get_the_unsigned_file_route(store: LocalStorage, status: str) -> None:
    url = _urls(store).url(MediaItem(moderation_status=status), KEY)

    assert url == f"http://api.example.org/v1/media/files/{KEY}"


def test_the_public_base_url_wins_over_the_request(store: LocalStorage) -> None:
    urls = _urls(store, public_base_url="https://media.example.com/api/")

    route = f"https://media.example.com/api/v1/media/files/{KEY}"
    assert urls.url(MediaItem(moderation_status="approved"), KEY) == route
    assert urls.url(MediaItem(moderation_status="pending"), KEY).startswith(route + "?expires=")
