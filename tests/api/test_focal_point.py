"""Focal points over HTTP: returned with every item, set by PATCH (validated, for editors only), re-cropping the
thumbnail and dropping derived transform results; face boxes for owners and moderators only."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from mediahub.db.models import TRANSFORM
from mediahub.db.repositories import MediaRepository, VariantRepository, VariantRow
from mediahub.media.keys import variant_key
from tests.api.conftest import AppFactory, Tokens, add_member, assert_problem, upload
from tests.support import scenes

GALLERY = "/v1/media/properties/123/photos"
ON_PORTRAIT = 1 - scenes.PORTRAIT / 3  # where the portrait begins, of the width


@pytest.fixture
def owner(client: TestClient, tokens: Tokens) -> dict[str, str]:
    add_member(client, tokens, "property:123", "USR-OWNER")
    return tokens.owner()


def _upload(client: TestClient, headers: dict[str, str], file: Path, path: str = GALLERY) -> dict[str, Any]:
    response = upload(client, path, headers, file=file)
    assert response.status_code == 201, response.text
    return response.json()


def _approve(client: TestClient, tokens: Tokens, media_id: int) -> None:
    response = client.post(f"/v1/media/{media_id}/moderation", headers=tokens.moderator(), json={"status": "approved"})
    assert response.status_code == 200, response.text


def _settled(client: TestClient, media_id: int, headers: dict[str, str]) -> dict[str, Any]:
    assert client.app.state.runtime.wait_for_jobs([media_id], timeout=120)
    item = client.get(f"/v1/media/{media_id}", headers=headers).json()
    assert item["processing_status"] == "ready" and item["pending"] == [], item
    return item


def _thumbnail(client: TestClient, item: dict[str, Any], headers: dict[str, str], fmt: str = "jpeg") -> Image.Image:
    response = client.get(item["variants"]["thumbnail"][fmt]["url"], headers=headers)
    assert response.status_code == 200
    return Image.open(io.BytesIO(response.content)).convert("RGB")


def _distance_from(image: Image.Image, expected: np.ndarray) -> float:
    return float(np.abs(np.asarray(image).astype(int) - expected).mean())


def _patch(client: TestClient, media_id: int, headers: dict[str, str], body: Any) -> Any:
    return client.patch(f"/v1/media/{media_id}", headers=headers, json=body)


def test_an_upload_answers_its_focal_point_and_only_owners_and_moderators_see_the_faces(
        client: TestClient, tokens: Tokens, owner: dict[str, str], tmp_path: Path) -> None:
    scene = scenes.portrait_at_right()
    item = _upload(client, owner, scenes.save_jpeg(scene, tmp_path / "agent.jpg"))
    point = item["focal_point"]
    assert point["source"] == "faces" and ON_PORTRAIT < point["x"] < 1 and 1 - scenes.PORTRAIT < point["y"] < 1
    assert "focal_point" not in item["metadata"], "returned once, at the top"
    assert _distance_from(_thumbnail(client, item, owner), scenes.right_square(scene, 150)) < 6
    _approve(client, tokens, item["id"])

    def seen_by(headers: dict[str, str]) -> dict[str, Any]:
        response = client.get(f"/v1/media/{item['id']}", headers=headers)
        assert response.status_code == 200
        return response.json()

    for headers in (owner, tokens.moderator()):
        faces = seen_by(headers)["metadata"]["faces"]
        assert len(faces) == 1 and faces[0][0] >= ON_PORTRAIT
    public_answers = [seen_by(tokens.user()), seen_by({}), client.get(f"/v1/media/public/{item['public_id']}").json()]
    for answer in public_answers:
        assert "faces" not in answer["metadata"] and answer["focal_point"] == point


def test_a_manual_focal_point_moves_the_thumbnail_crop_to_it(
        client: TestClient, owner: dict[str, str], tmp_path: Path) -> None:
    item = _upload(client, owner, scenes.save_jpeg(scenes.thirds(), tmp_path / "thirds.jpg"))
    old_thumbnail_url = item["variants"]["thumbnail"]["jpeg"]["url"]
    for point, colour in (({"x": 0.0, "y": 1.0}, scenes.THIRDS[0]), ({"x": 0.97, "y": 0.2}, scenes.THIRDS[2])):
        response = _patch(client, item["id"], owner, {"focal_point": point})
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["focal_point"] == {**point, "source": "manual"} and answer["pending"] == ["reprocess"]

        settled = _settled(client, item["id"], owner)

        assert settled["focal_point"] == {**point, "source": "manual"}
        assert settled["variants"]["thumbnail"]["jpeg"]["url"] != old_thumbnail_url, "a new object, a new URL"
        assert scenes.colour_distance(_thumbnail(client, settled, owner), colour) < 12, point
        old_thumbnail_url = settled["variants"]["thumbnail"]["jpeg"]["url"]


def test_the_deferred_variants_job_crops_around_the_focal_point_found_at_upload(
        app_factory: AppFactory, tokens: Tokens, tmp_path: Path) -> None:
    png = tmp_path / "disc.png"
    scenes.red_disc((1200, 600), (0.1, 0.6)).save(png)  # a PNG is decoded in full: its variants are left to a job
    with TestClient(app_factory(defer_slow_variants=True, make_webp=True)) as client:
        add_member(client, tokens, "property:123", "USR-OWNER")
        item = _upload(client, tokens.owner(), png)
        assert item["pending"] == ["variants"] and item["focal_point"]["source"] == "attention"
        assert item["focal_point"]["x"] == pytest.approx(0.1, abs=0.06)

        settled = _settled(client, item["id"], tokens.owner())

        assert settled["focal_point"] == item["focal_point"]
        for fmt in ("jpeg", "webp"):  # no alpha: JPEG variants
            thumbnail = _thumbnail(client, settled, tokens.owner(), fmt)
            assert scenes.red_share(thumbnail) > 0.9 * scenes.DISC_IN_SQUARE, fmt


@pytest.mark.parametrize("body", [
    {"focal_point": {"x": 1.5, "y": 0.5}},
    {"focal_point": {"x": 0.5, "y": -0.01}},
    {"focal_point": {"x": 0.5}},
    {"focal_point": {"x": "left", "y": 0.5}},
    {"focal_point": {"x": 0.5, "y": 0.5, "source": "faces"}},
    {"focal_point": [0.5, 0.5]},
])
def test_a_focal_point_out_of_the_picture_or_malformed_is_refused(
        client: TestClient, owner: dict[str, str], body: dict[str, Any]) -> None:
    item = upload(client, GALLERY, owner).json()
    assert_problem(_patch(client, item["id"], owner, body), 422, "validation_error")
    assert client.get(f"/v1/media/{item['id']}", headers=owner).json()["focal_point"] == item["focal_point"]


def test_a_focal_point_that_is_not_a_number_is_refused(client: TestClient, owner: dict[str, str]) -> None:
    item = upload(client, GALLERY, owner).json()
    response = client.patch(f"/v1/media/{item['id']}", headers={**owner, "Content-Type": "application/json"},
                            content=b'{"focal_point": {"x": NaN, "y": 0.5}}')
    assert_problem(response, 422, "validation_error")


def test_only_those_who_may_edit_the_item_set_its_focal_point(
        client: TestClient, tokens: Tokens, owner: dict[str, str]) -> None:
    pending = upload(client, GALLERY, owner).json()
    approved = upload(client, GALLERY, owner).json()
    _approve(client, tokens, approved["id"])
    body = {"focal_point": {"x": 0.1, "y": 0.1}}

    assert_problem(_patch(client, approved["id"], {}, body), 401)
    assert_problem(_patch(client, approved["id"], tokens.user(), body), 403)
    assert_problem(_patch(client, pending["id"], tokens.user(), body), 404, "media_not_found")
    for item in (pending, approved):
        assert client.get(f"/v1/media/{item['id']}", headers=owner).json()["focal_point"] == item["focal_point"]
    assert _patch(client, approved["id"], tokens.admin(), body).json()["focal_point"]["source"] == "manual"


def test_a_new_focal_point_drops_the_items_transform_results_and_their_objects(
        client: TestClient, owner: dict[str, str]) -> None:
    runtime = client.app.state.runtime
    item = upload(client, GALLERY, owner).json()
    other = upload(client, GALLERY, owner).json()
    transforms = {}
    for media in (item, other):
        with runtime.database.session() as session:
            original_key = MediaRepository(session).get(media["id"]).original_key
        key = variant_key(original_key, "t-0123abcd", "webp")
        runtime.storage.put(key, b"RIFF....WEBP", "image/webp")
        with runtime.database.session() as session:
            VariantRepository(session).replace(media["id"], [], [
                VariantRow("t-0123abcd", "webp", key, 300, 200, 12, "image/webp", kind=TRANSFORM)])
        transforms[media["id"]] = key

    response = _patch(client, item["id"], owner, {"focal_point": {"x": 0.25, "y": 0.75}})
    assert response.status_code == 200, response.text

    with runtime.database.session() as session:
        rows = {media["id"]: VariantRepository(session).for_item(media["id"]) for media in (item, other)}
    assert [v for v in rows[item["id"]] if v.kind == TRANSFORM] == []
    assert {v.name for v in rows[item["id"]]} >= {"thumbnail", "small"}, "the presets stay"
    assert not runtime.storage.exists(transforms[item["id"]]), "the result's object is deleted"
    assert [v.storage_key for v in rows[other["id"]] if v.kind == TRANSFORM] == [transforms[other["id"]]]
    assert runtime.storage.exists(transforms[other["id"]]), "another item's results are not touched"
    _settled(client, item["id"], owner)


def test_the_same_focal_point_again_changes_nothing(client: TestClient, owner: dict[str, str]) -> None:
    item = upload(client, GALLERY, owner).json()
    body = {"focal_point": {"x": 0.3, "y": 0.3}}
    assert _patch(client, item["id"], owner, body).json()["pending"] == ["reprocess"]
    settled = _settled(client, item["id"], owner)
    again = _patch(client, item["id"], owner, body).json()
    assert again["pending"] == [] and again["variants"] == settled["variants"]


def test_an_avatar_is_cropped_around_the_face(client: TestClient, tokens: Tokens, tmp_path: Path) -> None:
    user = tokens.header("USR-1", verified=True)
    scene = scenes.portrait_at_right()
    item = _upload(client, user, scenes.save_jpeg(scene, tmp_path / "me.jpg"), path="/v1/media/users/USR-1/avatar")
    assert item["entity_field"] == "avatar" and item["focal_point"]["source"] == "faces"
    assert _distance_from(_thumbnail(client, item, user), scenes.right_square(scene, 150)) < 6


@pytest.mark.parametrize(("point", "third"), [({"x": 0.0, "y": 0.5}, 0), ({"x": 0.95, "y": 0.5}, 2)])
def test_cover_transforms_keep_the_focal_point_in_frame(client: TestClient, tokens: Tokens, owner: dict[str, str],
                                                        tmp_path: Path, point: dict[str, float], third: int) -> None:
    """A square cover crop of three coloured squares shows the one under the focal point; `center` the middle one,
    whatever the focal point."""
    item = _upload(client, owner, scenes.save_jpeg(scenes.thirds(), tmp_path / "thirds.jpg"))
    assert _patch(client, item["id"], owner, {"focal_point": point}).status_code == 200
    _settled(client, item["id"], owner)
    for gravity, colour in (("focal", scenes.THIRDS[third]), ("center", scenes.THIRDS[1])):
        signed = client.post(f"/v1/media/{item['id']}/transform-url", headers=owner,
                             json={"width": 200, "height": 200, "fit": "cover", "gravity": gravity, "format": "png"})
        assert signed.status_code == 200, signed.text
        response = client.get(signed.json()["url"], headers=owner)
        assert response.status_code == 200, response.text
        picture = Image.open(io.BytesIO(response.content))
        assert picture.size == (200, 200)
        assert scenes.colour_distance(picture, colour) < 12, gravity
