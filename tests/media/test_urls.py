"""MediaUrls: the store's own URLs where it has them, else the API's file route, signed by the app; a CDN
(CDN_BASE_URL) in front of approved items' unsigned URLs only."""

from __future__ import annotations

import time
import urllib.parse
from pathlib import Path

import pytest
from pydantic import ValidationError

from mediahub.config import Settings
from mediahub.db.models import MediaItem
from mediahub.media.urls import MediaUrls
from mediahub.storage.local import LocalStorage
from mediahub.storage.signing import verify
from tests.support.s3_server import make_s3_storage

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


# CDN_BASE_URL: a CDN in front of the API carries what anyone may fetch unsigned, and nothing else.

CDN = "https://cdn.example.net/media"
PUBLIC_ID = "pub123"


def _item(status: str) -> MediaItem:
    return MediaItem(moderation_status=status, public_id=PUBLIC_ID)


def test_the_cdn_carries_the_unsigned_urls_of_approved_items(store: LocalStorage) -> None:
    urls = _urls(store, cdn_base_url=CDN + "/")

    approved = _item("approved")
    assert urls.url(approved, KEY) == f"{CDN}/v1/media/files/{KEY}"
    assert urls.preset_url(approved, "small") == f"{CDN}/v1/images/{PUBLIC_ID}/small"
    assert urls.preset_url(approved, "small", "webp") == f"{CDN}/v1/images/{PUBLIC_ID}/small.webp"
    assert urls.transform_prefix(approved) == f"{CDN}/v1/images/{PUBLIC_ID}/t/"
    signed = urls.transform_url(approved, "sig", "w_300", "webp", 99)
    assert signed == f"{CDN}/v1/images/{PUBLIC_ID}/t/sig/w_300.webp?expires=99", "signed for anyone: cacheable"


@pytest.mark.parametrize("status", ["pending", "rejected", "flagged"])
def test_items_not_approved_never_go_through_the_cdn(store: LocalStorage, status: str) -> None:
    urls = _urls(store, cdn_base_url=CDN)

    item = _item(status)
    file_url = urls.url(item, KEY)
    assert file_url.startswith(f"http://api.example.org/v1/media/files/{KEY}")
    assert ("signature=" in file_url) == (status != "rejected"), "pending and flagged links are signed"
    assert urls.preset_url(item, "small") == f"http://api.example.org/v1/images/{PUBLIC_ID}/small"
    assert urls.transform_prefix(item) == f"http://api.example.org/v1/images/{PUBLIC_ID}/t/"
    assert urls.transform_url(item, "sig", "w_300", "jpg", None).startswith("http://api.example.org/v1/images/")


def test_every_delivery_url_of_a_preset_is_listed(store: LocalStorage) -> None:
    urls = _urls(store, cdn_base_url=CDN)

    listed = urls.preset_urls(_item("approved"), "large")

    base = f"{CDN}/v1/images/{PUBLIC_ID}/large"
    assert sorted(listed) == sorted([base, f"{base}.avif", f"{base}.webp", f"{base}.jpg", f"{base}.png"])


@pytest.mark.s3
def test_on_a_presigning_store_the_cdn_gets_the_file_route_and_the_rest_stays_presigned(s3_server: str) -> None:
    """A presigned URL differs on every answer (no cache could keep it): through a CDN, an approved object
    gets the one unsigned file-route URL; a pending one keeps its presigned, private URL."""
    urls = MediaUrls(Settings(_env_file=None, url_signing_secret=SECRET, cdn_base_url=CDN),
                     make_s3_storage(s3_server), "http://api.example.org")

    assert urls.url(_item("approved"), KEY) == f"{CDN}/v1/media/files/{KEY}"
    pending = urls.url(_item("pending"), KEY)
    assert pending.startswith(s3_server) and "Signature" in pending


@pytest.mark.s3
def test_a_public_bucket_keeps_its_own_urls_beside_the_cdn(s3_server: str) -> None:
    urls = MediaUrls(Settings(_env_file=None, url_signing_secret=SECRET, cdn_base_url=CDN),
                     make_s3_storage(s3_server, public_base_url="https://bucket.example.net"), "http://api.example.org")

    assert urls.url(_item("approved"), KEY) == f"https://bucket.example.net/{KEY}"
    assert urls.preset_url(_item("approved"), "small") == f"{CDN}/v1/images/{PUBLIC_ID}/small"


@pytest.mark.parametrize("value", ["cdn.example.net", "ftp://cdn.example.net", "https://cdn.example.net/?x=1",
                                   "https://cdn example.net"])
def test_a_cdn_base_url_is_validated_like_the_public_base_url(value: str) -> None:
    with pytest.raises(ValidationError, match="cdn_base_url"):
        Settings(_env_file=None, cdn_base_url=value)
    with pytest.raises(ValidationError, match="public_base_url"):
        Settings(_env_file=None, public_base_url=value)


def test_an_empty_cdn_base_url_is_unset_and_a_purge_hook_needs_one() -> None:
    assert Settings(_env_file=None, cdn_base_url=" ").cdn_base_url is None
    with pytest.raises(ValidationError, match="CDN_PURGE_URL needs CDN_BASE_URL"):
        Settings(_env_file=None, cdn_purge_url="https://api.cdn.example.net/purge")
