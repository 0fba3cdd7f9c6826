"""The item JSON's `placeholders`, `srcset` and `widths`: what a web page needs for a responsive <img>."""

from __future__ import annotations

import base64
import io

import pytest
import thumbhash
from fastapi.testclient import TestClient
from PIL import Image

from mediahub.db.models import PRESET, MediaItem, MediaVariant
from mediahub.media.responsive import is_whole_picture, responsive
from mediahub.media.urls import MediaUrls
from tests.api.conftest import AppFactory, Tokens, add_member, make_settings, upload
from tests.support.corpus import CORPUS_DIR

SIZES = "thumbnail:150x150:crop,small:400,medium:800,large:1600"
LANDSCAPE = CORPUS_DIR / "images/good/orient_landscape_0.jpg"  # 1800x1200
FLOWER = CORPUS_DIR / "images/good/jpeg_flower.jpg"  # 480x360: medium and large are one object
VIDEO = CORPUS_DIR / "video/mp4_h264_example_640x480.mp4"
OWNER = "USR-OWNER"


@pytest.fixture
def client(app_factory: AppFactory, tokens: Tokens):
    with TestClient(app_factory(image_sizes=SIZES)) as test_client:
        add_member(test_client, tokens, "property:P-1", OWNER)
        yield test_client


def _upload(client: TestClient, headers: dict[str, str], file=LANDSCAPE) -> dict:
    response = upload(client, "/v1/media/properties/P-1/photos", headers, file=file)
    assert response.status_code == 201, response.text
    return response.json()


def _candidates(srcset: str) -> list[tuple[str, int]]:
    pairs = [candidate.rsplit(" ", 1) for candidate in srcset.split(", ")]
    return [(url, int(width.removesuffix("w"))) for url, width in pairs]


def _fit(item: dict, fmt: str = "jpeg") -> list[tuple[str, int]]:
    """(url, width) of the fit sizes' renditions, as `variants` lists them."""
    return [(item["variants"][name][fmt]["url"], item["variants"][name][fmt]["width"])
            for name in ("small", "medium", "large")]


def test_an_approved_image_has_a_srcset_per_format_and_one_of_preset_urls(client: TestClient, tokens: Tokens):
    item = _upload(client, tokens.admin())
    assert item["moderation_status"] == "approved"
    # A `large` re-encode no smaller in bytes than the original names the original, 1800 px wide.
    large = 1800 if item["variants"]["large"]["jpeg"]["url"] == item["url"] else 1600
    assert [width for _, width in _fit(item)] == item["widths"] == [400, 800, large]
    assert set(item["srcset"]) == {"jpeg", "auto"}
    assert _candidates(item["srcset"]["jpeg"]) == _fit(item)
    assert item["variants"]["thumbnail"]["jpeg"]["url"] not in item["srcset"]["jpeg"], "a crop is no candidate"
    base = f"http://testserver/v1/images/{item['public_id']}"
    assert _candidates(item["srcset"]["auto"]) == [(f"{base}/{name}", width) for name, width in
                                                   zip(("small", "medium", "large"), item["widths"], strict=True)]
    for url, width in _candidates(item["srcset"]["auto"]):  # each served, anonymously, at the width it claims
        served = client.get(url, headers={"Accept": "image/jpeg"})
        assert served.status_code == 200, served.text
        assert Image.open(io.BytesIO(served.content)).width == width
    again = client.get(f"/v1/media/{item['id']}", headers=tokens.admin()).json()
    assert (again["srcset"], again["widths"]) == (item["srcset"], item["widths"])


def test_a_pending_image_has_no_preset_srcset(client: TestClient, tokens: Tokens):
    item = _upload(client, tokens.header(OWNER))
    assert item["moderation_status"] == "pending"
    assert set(item["srcset"]) == {"jpeg"}, "a pending item's preset URL needs a bearer token"
    assert _candidates(item["srcset"]["jpeg"]) == _fit(item)
    assert [width for _, width in _fit(item)] == item["widths"]


def test_sizes_that_share_an_object_are_one_candidate(client: TestClient, tokens: Tokens):
    item = _upload(client, tokens.admin(), FLOWER)
    fit = _fit(item)
    assert fit[1] == fit[2] and fit[2][1] == 480, "medium and large are the one 480 px object"
    distinct = sorted(set(fit), key=lambda candidate: candidate[1])
    assert _candidates(item["srcset"]["jpeg"]) == distinct
    assert item["widths"] == [width for _, width in distinct]
    assert [width for _, width in _candidates(item["srcset"]["auto"])] == item["widths"]


def test_placeholders_are_a_field_of_their_own(client: TestClient, tokens: Tokens):
    item = _upload(client, tokens.admin())
    placeholders = item["placeholders"]
    assert set(placeholders) == {"blurhash", "thumbhash"} and len(placeholders["blurhash"]) == 4 + 2 * 4 * 3
    ratio = thumbhash.thumb_hash_to_approximate_aspect_ratio(base64.b64decode(placeholders["thumbhash"]))
    assert ratio == pytest.approx(1800 / 1200, rel=0.2)
    owner_view = client.get(f"/v1/media/{item['id']}", headers=tokens.admin()).json()
    assert "placeholders" not in owner_view["metadata"]


def test_a_video_has_placeholders_of_its_poster_and_no_srcset(client: TestClient, tokens: Tokens):
    item = _upload(client, tokens.admin(), VIDEO)
    assert item["media_type"] == "video"
    assert item["srcset"] is None and item["widths"] is None
    assert item["placeholders"]["blurhash"] and item["placeholders"]["thumbhash"]


def _item(width: int, height: int, variants: list[tuple[str, str, int, int, str]]) -> MediaItem:
    item = MediaItem(public_id="pid", media_type="image", width=width, height=height, moderation_status="approved",
                     original_key="o.jpg")
    item.variants = [MediaVariant(name=name, format=fmt, width=w, height=h, storage_key=key, kind=PRESET,
                                  byte_size=1, content_type=f"image/{fmt}") for name, fmt, w, h, key in variants]
    return item


def test_every_format_gets_its_own_srcset(tmp_path, local_storage):
    item = _item(1800, 1200, [
        (name, fmt, w, h, f"{name}.{fmt}")
        for name, w, h in [("thumbnail", 150, 150), ("small", 400, 267), ("medium", 800, 533), ("large", 1600, 1067)]
        for fmt in ("jpeg", "webp", "avif")
    ])
    urls = MediaUrls(make_settings(tmp_path, public_base_url="https://media.example"), local_storage)
    images = responsive(item, urls, lambda key: urls.url(item, key))
    assert images.widths == [400, 800, 1600]
    for fmt in ("jpeg", "webp", "avif"):
        assert images.srcset[fmt] == ", ".join(
            f"https://media.example/v1/media/files/{name}.{fmt} {w}w" for name, w in [("small", 400), ("medium", 800),
                                                                                        ("large", 1600)])


@pytest.mark.parametrize(("item_size", "variant_size", "whole"), [
    ((1800, 1200), (400, 267), True),  # rounded to the pixel
    ((1800, 1200), (150, 150), False),  # the square crop
    ((1000, 970), (150, 150), False),  # a crop of a few per cent
    ((1200, 1200), (150, 150), True),  # a square crop of a square picture removes nothing
    ((4000, 3), (400, 1), True),  # a side clamped to one pixel
])
def test_whole_pictures_are_told_by_their_size(item_size, variant_size, whole):
    item = _item(*item_size, [("v", "jpeg", *variant_size, "v.jpg")])
    assert is_whole_picture(item, item.variants[0]) is whole
