"""The item page (`/library/media/{id}`) shows each viewer what `GET /v1/media/{id}` shows them, no more: the same
404 for an item they may not see, private details and GPS only where the API has them, and the editing,
moderating and reporting controls only where the API would take the change."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import AppFactory, Tokens, add_member, upload
from tests.api.library.conftest import sign_in
from tests.support.corpus import CORPUS_DIR

CAMERA_PHOTO = CORPUS_DIR / "images/good/gps_nikon_DSCN0010.jpg"  # 640x480, EXIF make NIKON, GPS
GALLERY = "/v1/media/properties/123/photos"
UPLOADER = "USR-UPLOADER"  # uploads through a token grant, unverified: their uploads wait for a moderator

# name -> (subject, roles, grants); None: not signed in
VIEWERS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]] | None] = {
    "anonymous": None,
    "stranger": ("USR-STRANGER", ("user",), ()),
    "uploader": (UPLOADER, ("user",), ("property:123",)),
    "owner": ("USR-OWNER", ("user",), ()),
    "moderator": ("MOD-1", ("user", "moderator"), ()),
    "admin": ("ADM-1", ("user", "admin"), ()),
}


def _headers(tokens: Tokens, viewer: str) -> dict[str, str]:
    who = VIEWERS[viewer]
    return {} if who is None else tokens.header(who[0], roles=who[1], grants=who[2])


def _as(client: TestClient, tokens: Tokens, viewer: str) -> None:
    """Sign the client's browser session in as `viewer` (or out)."""
    client.cookies.clear()
    who = VIEWERS[viewer]
    if who is not None:
        sign_in(client, tokens.mint(who[0], roles=who[1], grants=who[2]))


def _page(client: TestClient, media_id: int) -> tuple[int, str]:
    response = client.get(f"/library/media/{media_id}")
    assert response.headers["content-type"].startswith("text/html")
    return response.status_code, html.unescape(response.text)


@pytest.fixture
def world(app_factory: AppFactory, tokens: Tokens) -> Iterator[tuple[TestClient, dict[str, dict[str, Any]]]]:
    """A pending and an approved camera photo of property 123 (GPS kept), both by UPLOADER."""
    with TestClient(app_factory(strip_gps=False)) as client:
        add_member(client, tokens, "property:123", "USR-OWNER")
        uploader = _headers(tokens, "uploader")
        items = {name: upload(client, GALLERY, uploader, file=CAMERA_PHOTO, filename="garden-at-dusk.jpg",
                              data={"caption": "The garden"}).json() for name in ("pending", "approved")}
        decided = client.post(f"/v1/media/{items['approved']['id']}/moderation", headers=tokens.moderator(),
                              json={"status": "approved"})
        assert decided.status_code == 200, decided.text
        yield client, items


@pytest.mark.parametrize("viewer", VIEWERS)
def test_each_viewer_sees_on_the_page_what_the_api_shows_them(world, tokens: Tokens, viewer: str) -> None:
    client, items = world
    for item in items.values():
        api = client.get(f"/v1/media/{item['id']}", headers=_headers(tokens, viewer))
        _as(client, tokens, viewer)
        status, page = _page(client, item["id"])
        assert status == api.status_code, (viewer, item["moderation_status"])
        if status != 200:
            assert "media_not_found" in page and api.json()["code"] == "media_not_found"
            assert "garden" not in page.lower(), "nothing of the item on its 404 page"
            continue
        shown = api.json()
        metadata = shown["metadata"]
        assert ("exif" in metadata) is ('id="metadata-private"' in page) is ("NIKON" in page), viewer
        assert ("filename" in metadata) is ("garden-at-dusk.jpg" in page), viewer
        assert ("gps" in metadata) is ('id="metadata-location"' in page) is ("<h3>Location</h3>" in page), viewer
        if "gps" in metadata:
            assert all(str(value) in page for value in metadata["gps"].values())
        assert (shown["uploaded_by"] is not None) is (f"by <strong>{UPLOADER}</strong>" in page), viewer
        assert shown["caption"] in page and shown["moderation_status"] in page


@pytest.mark.parametrize("viewer", [name for name in VIEWERS if name != "anonymous"])
def test_the_controls_shown_are_those_the_api_accepts(world, tokens: Tokens, viewer: str) -> None:
    client, items = world
    item, headers = items["approved"], _headers(tokens, viewer)
    _as(client, tokens, viewer)
    _, page = _page(client, item["id"])
    # An edit that changes nothing: the API says whether this viewer may make it, and changes nothing.
    may_edit = client.patch(f"/v1/media/{item['id']}", headers=headers, json={"caption": item["caption"]})
    may_moderate = client.get(f"/v1/media/{item['id']}/reports", headers=headers)
    assert may_edit.status_code in (200, 403) and may_moderate.status_code in (200, 403)
    assert ('id="text-form"' in page) is ('id="delete-start"' in page) is (may_edit.status_code == 200), viewer
    assert ('id="focal-picker" class="focal-picker editable"' in page) is (may_edit.status_code == 200), viewer
    assert ('id="moderate-form"' in page) is (may_moderate.status_code == 200), viewer
    assert ('id="report-form"' in page) is (may_moderate.status_code == 403), "signed-in viewers who do not decide"


def test_moderators_see_the_reports_with_their_reasons_and_outcomes(world, tokens: Tokens) -> None:
    client, items = world
    item = items["approved"]
    for sub, reason in (("USR-A", "not this property"), ("USR-B", "shows a licence plate")):
        assert client.post(f"/v1/media/{item['id']}/flag", headers=tokens.user(sub), json={"reason": reason}).is_success
    client.post(f"/v1/media/{item['id']}/reports/dismiss", headers=tokens.moderator())
    client.post(f"/v1/media/{item['id']}/flag", headers=tokens.user("USR-C"), json={"reason": "blurry"})
    history = client.get(f"/v1/media/{item['id']}/reports", headers=tokens.moderator()).json()

    _as(client, tokens, "moderator")
    _, page = _page(client, item["id"])

    rows = re.findall(r"<tr>\s*<td><time[^>]*>[^<]*</time></td>\s*<td>([^<]*)</td>\s*<td>([^<]*)</td>\s*<td[^>]*>(\w+)",
                      page)
    assert rows == [(r["reporter"], r["reason"], r["resolution"] or "open") for r in history["items"]]
    assert rows == [("USR-C", "blurry", "open"), ("USR-B", "shows a licence plate", "dismissed"),
                    ("USR-A", "not this property", "dismissed")]
    assert "Dismiss 1 open report" in page and "audit trail" in page
    _as(client, tokens, "owner")
    _, page = _page(client, item["id"])
    assert "licence plate" not in page and "USR-B" not in page, "reports are the moderators' business"


def test_an_approved_picture_lists_its_renditions_and_urls_ready_to_copy(world, tokens: Tokens) -> None:
    client, items = world
    shown = client.get(f"/v1/media/{items['approved']['id']}", headers=tokens.admin()).json()
    _as(client, tokens, "admin")
    _, page = _page(client, shown["id"])
    assert f'value="{shown["url"]}"' in page
    for name, by_format in shown["variants"].items():
        for fmt, variant in by_format.items():
            assert f'value="{variant["url"]}"' in page, (name, fmt)
            assert f'data-rendition="{name}/{fmt}"' in page and f"{variant['width']}×{variant['height']}" in page
    base = f"http://testserver/v1/images/{shown['public_id']}"
    for url in (f"{base}/small", f"{base}/small.webp", f"{base}/thumbnail.avif", f"{base}/original.jpg"):
        assert f'value="{url}"' in page, url
    raw = client.get(f"/library/media/{shown['id']}").text
    snippet = re.search(r'<textarea id="img-snippet"[^>]*>([^<]*)</textarea>', raw)
    assert snippet, "a ready <img> snippet"
    source = html.unescape(snippet.group(1))  # what the field holds: HTML to paste
    assert source.startswith("<img ") and f'srcset="{shown["srcset"]["auto"]}"' in source and 'sizes="' in source
    assert 'data-crop="thumbnail"' in page, "a landscape picture's square thumbnail is a crop, shown beside it"
    assert "data:image/png;base64," in page and shown["placeholders"]["thumbhash"] in page


def test_a_pending_picture_hands_out_no_delivery_urls(world, tokens: Tokens) -> None:
    client, items = world
    _as(client, tokens, "owner")
    _, page = _page(client, items["pending"]["id"])
    assert "Delivery URLs" not in page and "/v1/images/" not in page
    assert "signed for this viewer" in page


def test_the_display_image_is_a_rendition_never_the_large_original(app_factory: AppFactory, tokens: Tokens) -> None:
    with TestClient(app_factory(image_sizes="thumbnail:150x150:crop,small:400,medium:800")) as client:
        large = CORPUS_DIR / "images/good/jpeg_large_jolla_3264x2448.jpg"
        shown = upload(client, GALLERY, tokens.admin(), file=large).json()
        _as(client, tokens, "admin")
        _, page = _page(client, shown["id"])
    src = re.search(r'<img id="display-image" src="([^"]+)"', page)
    assert src and src.group(1) == shown["variants"]["medium"]["jpeg"]["url"]


@pytest.mark.parametrize(("path", "status"), [("0", 422), ("abc", 422), ("99999999", 404), ("1.5", 422)])
def test_a_bad_or_unknown_id_is_an_error_page(client: TestClient, path: str, status: int) -> None:
    response = client.get(f"/library/media/{path}")
    assert response.status_code == status and response.headers["content-type"].startswith("text/html")
    assert "content-security-policy" in response.headers


def test_a_video_plays_its_web_rendition_or_original_with_its_poster(client: TestClient, tokens: Tokens) -> None:
    video = CORPUS_DIR / "video/mp4_h264_example_640x480.mp4"
    shown = upload(client, GALLERY, tokens.admin(), file=video).json()
    assert shown["media_type"] == "video", shown
    _as(client, tokens, "admin")
    _, page = _page(client, shown["id"])
    player = re.search(r'<video controls preload="metadata" src="([^"]+)"\s+poster="([^"]+)"', page)
    assert player, "a player with a poster"
    source = shown["variants"].get("web", {}).get("mp4", {}).get("url") or shown["url"]
    assert player.groups() == (source, shown["variants"]["small"]["jpeg"]["url"])
    assert 'id="focal-picker"' not in page
