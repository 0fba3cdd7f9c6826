"""The duplicate review page: who may see it, the groups it shows (large enough to judge), and the decisions
its script sends to the API with the session and its CSRF token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.api.conftest import CORPUS_DIR, Tokens, assert_problem, upload
from tests.support.html import Element, parse

GOOD = CORPUS_DIR / "images/good"
HOPPER_PNG, HOPPER_BMP, HOPPER_TIFF = GOOD / "png_hopper.png", GOOD / "bmp_hopper.bmp", GOOD / "tiff_hopper.tif"
FLOWER_JPEG, FLOWER_WEBP = GOOD / "jpeg_flower.jpg", GOOD / "webp_flower.webp"  # 480 x 360, look alike
PEPPERS = GOOD / "jpeg_progressive_peppers.jpg"
API = "/v1/media/duplicates"


def put(client: TestClient, tokens: Tokens, entity_id: str, file: Path, **data: str) -> dict[str, Any]:
    answer = upload(client, f"/v1/media/properties/{entity_id}/photos", tokens.admin(), file=file, data=data)
    assert answer.status_code == 201, answer.text
    return answer.json()


def groups_shown(page: Element) -> dict[str, list[int]]:
    return {section.attrs["data-group"]: [int(li.attrs["data-id"])
                                          for li in section.find_all("li", class_="dup-member")]
            for section in page.find_all("section", data_group=None)}


def test_the_page_is_for_moderators_and_admins(client: TestClient, tokens: Tokens, signed_in) -> None:
    assert client.get("/library/duplicates", follow_redirects=False).status_code == 303  # to the sign-in form
    signed_in("USR-1")
    answer = client.get("/library/duplicates")
    assert answer.status_code == 403 and "moderator_required" in answer.text
    assert answer.headers["content-type"].startswith("text/html")
    client.cookies.clear()
    signed_in("MOD-1", ("user", "moderator"))
    assert client.get("/library/duplicates").status_code == 200
    assert client.get("/library/duplicates?kind=near").status_code == 200
    assert client.get("/library/duplicates?kind=other").status_code == 422
    assert client.get("/library/duplicates?after=pixels:nothex").status_code == 422


def test_exact_and_near_groups_side_by_side(client: TestClient, tokens: Tokens, signed_in) -> None:
    png, bmp, tiff = (put(client, tokens, entity_id, file) for entity_id, file in
                      (("1", HOPPER_PNG), ("2", HOPPER_BMP), ("3", HOPPER_TIFF)))
    flower_jpeg = put(client, tokens, "4", FLOWER_JPEG, alt_text="Tulips by the window")
    flower_webp = put(client, tokens, "5", FLOWER_WEBP)
    put(client, tokens, "6", PEPPERS)
    signed_in("MOD-1", ("user", "moderator"))

    exact = parse(client.get("/library/duplicates").text)
    assert list(groups_shown(exact).values()) == [[png["id"], bmp["id"], tiff["id"]]]
    summary = exact.find("section", class_="resolve-all").text
    assert "1 group of exact copies to resolve; resolving them all deletes 2 items" in summary
    first = exact.find("li", class_="dup-member")
    assert "checked" in first.find("input", type="radio").attrs  # the suggested keeper: the oldest
    assert first.find("a", class_="dup-image").attrs["href"] == f"/library/media/{png['id']}"
    facts = first.find("dl", class_="facts").text
    assert "0 (exact)" in facts and "128 × 128 px" in facts and "ADM-1" in facts and "property 1" in facts
    assert "kB" in facts  # bytes for people

    near = parse(client.get("/library/duplicates?kind=near").text)
    shown = groups_shown(near)
    assert shown[f"near:{flower_jpeg['id']}"] == [flower_jpeg["id"], flower_webp["id"]]
    image = near.find("section", data_group=f"near:{flower_jpeg['id']}").find("img")
    # The `small` rendition (these tests make thumbnail and small, 400 px, which a 480 px JPEG already is),
    # never the 150 px thumbnail.
    assert (image.attrs["width"], image.attrs["height"]) == ("480", "360")
    assert image.attrs["src"] == flower_jpeg["variants"]["small"]["jpeg"]["url"]
    assert "480w" in image.attrs["srcset"] and image.attrs["alt"] == "Tulips by the window"
    near.find("a", href="/library/property/4")  # the entity's page


def test_keep_all_through_the_session_hides_the_group(client: TestClient, tokens: Tokens, signed_in) -> None:
    ids = [put(client, tokens, entity_id, file)["id"] for entity_id, file in (("1", HOPPER_PNG), ("2", HOPPER_BMP))]
    csrf = signed_in("MOD-1", ("user", "moderator"))
    (key,) = groups_shown(parse(client.get("/library/duplicates").text))
    assert_problem(client.post(f"{API}/keep-all", json={"group": key, "ids": ids}), 403, "csrf_failed")
    answer = client.post(f"{API}/keep-all", json={"group": key, "ids": ids}, headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 200, answer.text
    page = parse(client.get("/library/duplicates").text)
    assert groups_shown(page) == {}
    assert "No exact copies to review." in page.text


def test_resolving_one_group_keeps_the_chosen_item(client: TestClient, tokens: Tokens, signed_in) -> None:
    png, bmp, tiff = (put(client, tokens, entity_id, file)["id"] for entity_id, file in
                      (("1", HOPPER_PNG), ("2", HOPPER_BMP), ("3", HOPPER_TIFF)))
    csrf = signed_in("ADM-2", ("user", "admin"))
    (key,) = groups_shown(parse(client.get("/library/duplicates").text))
    answer = client.post(f"{API}/resolve", json={"group": key, "keep": tiff, "delete": [png, bmp]},
                         headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 200, answer.text
    assert [result["ok"] for result in answer.json()["results"]] == [True, True]
    assert [client.get(f"/v1/media/{media_id}").status_code for media_id in (png, bmp, tiff)] == [404, 404, 200]
    assert groups_shown(parse(client.get("/library/duplicates").text)) == {}


def test_resolving_all_exact_groups_never_deletes_a_primary(client: TestClient, tokens: Tokens, signed_in) -> None:
    hopper = [put(client, tokens, "1", HOPPER_PNG)["id"], put(client, tokens, "2", HOPPER_BMP, is_primary="true")["id"],
              put(client, tokens, "3", HOPPER_TIFF)["id"]]
    peppers = [put(client, tokens, "4", PEPPERS)["id"], put(client, tokens, "5", PEPPERS)["id"]]
    csrf = signed_in("ADM-2", ("user", "admin"))
    page = parse(client.get("/library/duplicates").text)
    assert "2 groups of exact copies to resolve; resolving them all deletes 3 items" in page.find(
        "section", class_="resolve-all").text
    answer = client.post(f"{API}/resolve-all-exact", json={}, headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 200, answer.text
    assert answer.json()["next"] is None
    alive = {media_id for media_id in [*hopper, *peppers] if client.get(f"/v1/media/{media_id}").status_code == 200}
    assert alive == {hopper[1], peppers[0]}
    page = parse(client.get("/library/duplicates").text)
    assert groups_shown(page) == {}
    assert "disabled" in page.find("button", data_resolve_all=None).attrs
