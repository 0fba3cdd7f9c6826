"""Duplicate review over HTTP: groups of exact copies and look-alikes, keep one, keep all, resolve every
exact group; and uploads over time. The SQL of both runs on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from mediahub.db.models import MediaItem, utcnow
from mediahub.media import duplicates
from tests.api.conftest import CORPUS_DIR, AppFactory, Tokens, assert_problem, upload

GOOD = CORPUS_DIR / "images/good"
# png, bmp and tiff hopper are the same pixels in three files; the JPEG hopper looks the same (lossy).
HOPPER_PNG, HOPPER_BMP, HOPPER_TIFF, HOPPER_JPEG = (GOOD / name for name in (
    "png_hopper.png", "bmp_hopper.bmp", "tiff_hopper.tif", "jpeg_hopper.jpg"))
FLOWER_JPEG, FLOWER_WEBP = GOOD / "jpeg_flower.jpg", GOOD / "webp_flower.webp"  # look alike, other pixels
PEPPERS = GOOD / "jpeg_progressive_peppers.jpg"
BUNNY = GOOD / "png_bigbuckbunny.png"
CMYK = GOOD / "jpeg_cmyk.jpg"
API = "/v1/media/duplicates"


def put(client: TestClient, headers: dict[str, str], entity_id: str, file: Path, **data: str) -> dict[str, Any]:
    answer = upload(client, f"/v1/media/properties/{entity_id}/photos", headers, file=file, data=data)
    assert answer.status_code == 201, answer.text
    return answer.json()


def groups(client: TestClient, headers: dict[str, str], kind: str = "exact", **params: Any) -> dict[str, Any]:
    answer = client.get(API, params={"kind": kind, **params}, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


def members(page: dict[str, Any]) -> list[list[int]]:
    return [[entry["item"]["id"] for entry in group["items"]] for group in page["groups"]]


def exists(client: TestClient, tokens: Tokens, media_id: int) -> bool:
    return client.get(f"/v1/media/{media_id}", headers=tokens.admin()).status_code == 200


def owner_of(tokens: Tokens, *entity_ids: str) -> dict[str, str]:
    """An unverified owner: their uploads wait for a moderator (pending)."""
    return tokens.header("USR-OWNER", grants=tuple(f"property:{entity_id}" for entity_id in entity_ids))


def test_only_moderators_and_admins_review_duplicates(client: TestClient, tokens: Tokens) -> None:
    owner = owner_of(tokens, "1")
    item = put(client, owner, "1", HOPPER_PNG)
    calls = [("GET", API, {}), ("GET", f"{API}/summary", {}),
             ("POST", f"{API}/resolve", {"json": {"group": "near:1", "keep": item["id"], "delete": [2]}}),
             ("POST", f"{API}/keep-all", {"json": {"group": "near:1", "ids": [item["id"]]}}),
             ("POST", f"{API}/resolve-all-exact", {"json": {}}),
             ("GET", "/v1/media/analytics/uploads", {})]
    for method, path, kwargs in calls:
        assert_problem(client.request(method, path, **kwargs), 401)
        for caller in (tokens.user(), owner):  # the owner of every item may still not review
            assert_problem(client.request(method, path, headers=caller, **kwargs), 403, "moderator_required")
    assert exists(client, tokens, item["id"])


def test_exact_copies_and_look_alikes_are_grouped(client: TestClient, tokens: Tokens) -> None:
    admin = tokens.admin()
    png, bmp, tiff = (put(client, admin, entity_id, file) for entity_id, file in
                      (("1", HOPPER_PNG), ("2", HOPPER_BMP), ("3", HOPPER_TIFF)))
    jpeg = put(client, admin, "4", HOPPER_JPEG)
    flower_jpeg, flower_webp = put(client, admin, "5", FLOWER_JPEG), put(client, admin, "6", FLOWER_WEBP)
    put(client, admin, "7", PEPPERS)  # like nothing else
    again = put(client, admin, "8", HOPPER_PNG)  # the same file again, newer than the JPEG

    exact = groups(client, tokens.moderator())
    assert members(exact) == [[png["id"], bmp["id"], tiff["id"], again["id"]]]
    group = exact["groups"][0]
    assert group["kind"] == "pixels" and group["key"].startswith("pixels:")
    assert group["keep"] == png["id"]  # all approved: the oldest
    assert {entry["distance"] for entry in group["items"]} == {0}
    assert [entry["can_delete"] for entry in group["items"]] == [False] * 4  # a moderator deletes only their own
    assert group["items"][0]["item"]["uploaded_by"] == "ADM-1"  # moderators see who uploaded
    assert exact["next"] is None
    assert all(entry["can_delete"] for entry in groups(client, admin)["groups"][0]["items"])

    near = groups(client, tokens.moderator(), "near")
    # Each pair once, from its older item; the newer exact copy of the PNG is left to the PNG (its group above).
    assert members(near) == [[png["id"], jpeg["id"]], [flower_jpeg["id"], flower_webp["id"]]]
    assert [group["key"] for group in near["groups"]] == [f"near:{png['id']}", f"near:{flower_jpeg['id']}"]
    assert all(entry["distance"] <= 4 for group in near["groups"] for entry in group["items"])


def test_items_without_a_pixel_digest_are_grouped_by_file(client: TestClient, tokens: Tokens) -> None:
    """Rows not fingerprinted yet (before `mediahub backfill`) and videos have only their file digest."""
    admin = tokens.admin()
    first, second = put(client, admin, "1", PEPPERS), put(client, admin, "2", PEPPERS)
    bmp, png = put(client, admin, "3", HOPPER_BMP), put(client, admin, "4", HOPPER_PNG)  # other files: apart
    pixels = put(client, admin, "5", FLOWER_JPEG), put(client, admin, "6", FLOWER_JPEG)
    with client.app.state.runtime.database.session() as session:  # type: ignore[attr-defined]
        session.execute(update(MediaItem).where(MediaItem.id.in_([first["id"], second["id"], bmp["id"], png["id"]]))
                        .values(pixel_sha256=None))

    page = groups(client, tokens.moderator())
    assert members(page) == [[pixels[0]["id"], pixels[1]["id"]], [first["id"], second["id"]]]
    assert [group["kind"] for group in page["groups"]] == ["pixels", "file"]
    assert page["groups"][1]["key"] == f"file:{hashlib.sha256(PEPPERS.read_bytes()).hexdigest()}"


def test_pages_of_exact_groups_follow_the_cursor_across_kinds(client: TestClient, tokens: Tokens) -> None:
    admin = tokens.admin()
    made = [[put(client, admin, f"{n}{copy}", file)["id"] for copy in "ab"]
            for n, file in enumerate((PEPPERS, FLOWER_JPEG, BUNNY, CMYK))]
    with client.app.state.runtime.database.session() as session:  # type: ignore[attr-defined]
        session.execute(update(MediaItem).where(MediaItem.id.in_(made[3])).values(pixel_sha256=None))

    whole = groups(client, tokens.moderator(), limit=10)
    assert sorted(members(whole)) == sorted(made) and whole["next"] is None
    seen, after, pages = [], None, 0
    while True:
        page = groups(client, tokens.moderator(), limit=2, **({"after": after} if after else {}))
        seen += members(page)
        pages += 1
        after = page["next"]
        if after is None:
            break
    assert seen == members(whole) and pages == 2
    assert_problem(client.get(API, params={"after": "near:1"}, headers=admin), 422, "invalid_group")
    assert_problem(client.get(API, params={"after": "pixels:XYZ"}, headers=admin), 422, "invalid_group")
    assert_problem(client.get(API, params={"kind": "both"}, headers=admin), 422)


def test_pages_of_look_alikes_do_bounded_work_and_continue(client: TestClient, tokens: Tokens,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    admin = tokens.admin()
    made = [put(client, admin, str(n), file)["id"] for n, file in
            enumerate((HOPPER_PNG, PEPPERS, FLOWER_JPEG, HOPPER_JPEG, BUNNY, FLOWER_WEBP))]
    whole = groups(client, admin, "near")
    assert members(whole) == [[made[0], made[3]], [made[2], made[5]]]

    monkeypatch.setattr(duplicates, "NEAR_SCAN", 2)  # two items looked up per page
    seen, after, pages = [], None, 0
    while True:
        page = groups(client, admin, "near", **({"after": after} if after else {}))
        seen += members(page)
        pages += 1
        after = page["next"]
        if after is None:
            break
    assert seen == members(whole)
    assert pages == 3  # six items, two looked up per page: a page with no group still says where to go on


def test_keep_all_hides_a_group_until_a_newer_copy_joins_it(client: TestClient, tokens: Tokens) -> None:
    admin = tokens.admin()
    ids = [put(client, admin, entity_id, file)["id"] for entity_id, file in
           (("1", HOPPER_PNG), ("2", HOPPER_BMP), ("3", FLOWER_JPEG), ("4", FLOWER_WEBP))]
    key = groups(client, admin)["groups"][0]["key"]
    assert client.get(f"{API}/summary", headers=admin).json() == {"groups": 1, "deletes": 1}

    kept = client.post(f"{API}/keep-all", headers=tokens.moderator(), json={"group": key, "ids": ids[:2]})
    assert kept.status_code == 200, kept.text
    assert kept.json() == {"group": key, "up_to_id": ids[1]}
    assert groups(client, admin)["groups"] == []
    assert client.get(f"{API}/summary", headers=admin).json() == {"groups": 0, "deletes": 0}
    near_key = f"near:{ids[2]}"
    assert client.post(f"{API}/keep-all", headers=admin, json={"group": near_key, "ids": ids[2:]}).status_code == 200
    assert groups(client, admin, "near")["groups"] == []
    assert all(exists(client, tokens, media_id) for media_id in ids)

    newer = put(client, admin, "5", HOPPER_TIFF)
    assert members(groups(client, admin)) == [[*ids[:2], newer["id"]]]
    assert_problem(client.post(f"{API}/keep-all", headers=admin, json={"group": key, "ids": [ids[2]]}),
                   409, "not_in_group")
    assert_problem(client.post(f"{API}/keep-all", headers=admin, json={"group": "pixels:" + "0" * 64, "ids": [1]}),
                   409, "not_in_group")
    assert_problem(client.post(f"{API}/keep-all", headers=admin, json={"group": "near:0", "ids": [1]}),
                   422, "invalid_group")


def test_resolve_keeps_the_chosen_item_and_deletes_the_rest(client: TestClient, tokens: Tokens) -> None:
    admin = tokens.admin()
    png, bmp, tiff = (put(client, admin, entity_id, file)["id"] for entity_id, file in
                      (("1", HOPPER_PNG), ("2", HOPPER_BMP), ("3", HOPPER_TIFF)))
    other = put(client, admin, "4", PEPPERS)["id"]
    key = groups(client, admin)["groups"][0]["key"]

    assert_problem(client.post(f"{API}/resolve", headers=admin, json={"group": key, "keep": bmp, "delete": [bmp]}),
                   422, "keep_in_delete")
    assert_problem(client.post(f"{API}/resolve", headers=admin, json={"group": key, "keep": other, "delete": [png]}),
                   409, "keep_not_in_group")
    assert all(exists(client, tokens, media_id) for media_id in (png, bmp, tiff, other))

    answer = client.post(f"{API}/resolve", headers=admin,
                         json={"group": key, "keep": bmp, "delete": [png, tiff, other]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["group"] == key and body["kept"] == [bmp]
    assert [(r["id"], r["ok"]) for r in body["results"]] == [(png, True), (tiff, True), (other, False)]
    assert body["results"][2]["error"]["code"] == "not_in_group"
    assert [exists(client, tokens, media_id) for media_id in (png, bmp, tiff, other)] == [False, True, False, True]
    assert groups(client, admin)["groups"] == []


def test_a_moderator_is_told_which_items_they_may_not_delete(client: TestClient, tokens: Tokens) -> None:
    admin, moderator = tokens.admin(), tokens.moderator()
    theirs = put(client, admin, "1", HOPPER_PNG)["id"]
    # The moderator's own upload (to an entity they were granted): theirs to delete.
    own = put(client, tokens.header("MOD-1", roles=("user", "moderator"), grants=("property:2",)), "2",
              HOPPER_BMP)["id"]
    more = put(client, admin, "3", HOPPER_TIFF)["id"]
    key = groups(client, moderator)["groups"][0]["key"]

    body = client.post(f"{API}/resolve", headers=moderator, json={"group": key, "keep": theirs,
                                                                  "delete": [own, more]}).json()
    assert [(r["id"], r["ok"], r["error"] and r["error"]["code"]) for r in body["results"]] == [
        (own, True, None), (more, False, "forbidden")]
    assert members(groups(client, moderator)) == [[theirs, more]]  # still there, with what failed


def test_resolve_all_exact_keeps_the_primary_else_the_oldest_approved_else_the_oldest(
        client: TestClient, tokens: Tokens) -> None:
    admin = tokens.admin()
    owner = owner_of(tokens, *(str(n) for n in range(1, 20)))
    # Hopper: pending (oldest), approved, approved: the oldest approved stays.
    hopper = [put(client, owner, "1", HOPPER_PNG)["id"], put(client, admin, "2", HOPPER_BMP)["id"],
              put(client, admin, "3", HOPPER_TIFF)["id"]]
    # Flower: all pending: the oldest stays.
    flower = [put(client, owner, "4", FLOWER_JPEG)["id"], put(client, owner, "5", FLOWER_JPEG)["id"]]
    # Peppers: an approved item, then a primary: the primary stays.
    peppers = [put(client, admin, "6", PEPPERS)["id"], put(client, admin, "7", PEPPERS, is_primary="true")["id"]]
    # Bunny: two primaries (of two entities): both stay.
    bunny = [put(client, admin, "8", BUNNY, is_primary="true")["id"],
             put(client, admin, "9", BUNNY, is_primary="true")["id"]]
    # CMYK: kept whole by a moderator before: left alone.
    cmyk = [put(client, admin, "10", CMYK)["id"], put(client, admin, "11", CMYK)["id"]]
    near = put(client, admin, "12", HOPPER_JPEG)["id"]  # a look-alike of the hopper: not exact
    cmyk_key = next(g["key"] for g in groups(client, admin)["groups"] if g["items"][0]["item"]["id"] == cmyk[0])
    assert client.post(f"{API}/keep-all", headers=admin, json={"group": cmyk_key, "ids": cmyk}).status_code == 200

    assert client.get(f"{API}/summary", headers=admin).json() == {"groups": 3, "deletes": 4}
    results, after, calls = [], None, 0
    while True:
        answer = client.post(f"{API}/resolve-all-exact", headers=admin, json={"after": after, "limit": 2})
        assert answer.status_code == 200, answer.text
        results += answer.json()["groups"]
        calls += 1
        after = answer.json()["next"]
        if after is None:
            break
    assert calls == 2
    kept = {tuple(sorted(r["id"] for r in group["results"])): group["kept"] for group in results}
    assert kept == {(hopper[0], hopper[2]): [hopper[1]], (flower[1],): [flower[0]], (peppers[0],): [peppers[1]],
                    (): bunny}
    assert all(r["ok"] for group in results for r in group["results"])
    survivors = {media_id for media_id in [*hopper, *flower, *peppers, *bunny, *cmyk, near]
                 if exists(client, tokens, media_id)}
    assert survivors == {hopper[1], flower[0], peppers[1], *bunny, *cmyk, near}
    assert client.get(f"{API}/summary", headers=admin).json() == {"groups": 0, "deletes": 0}


def test_bad_requests_are_refused_clearly(client: TestClient, tokens: Tokens) -> None:
    admin = tokens.admin()
    for body in ({"group": "pixels:" + "a" * 63, "keep": 1, "delete": [2]},
                 {"group": "near:99999999999999999999", "keep": 1, "delete": [2]},
                 {"group": "near:1\x00", "keep": 1, "delete": [2]},
                 {"group": "hash:1", "keep": 1, "delete": [2]}):
        assert_problem(client.post(f"{API}/resolve", headers=admin, json=body), 422)
    for body in ({"group": "near:1", "keep": 1, "delete": []}, {"group": "near:1", "keep": 0, "delete": [2]},
                 {"group": "near:1", "keep": 1, "delete": [2], "extra": True},
                 {"group": "near:1", "keep": 1, "delete": list(range(2, 200))}):
        assert_problem(client.post(f"{API}/resolve", headers=admin, json=body), 422, "validation_error")
    assert_problem(client.post(f"{API}/resolve-all-exact", headers=admin, json={"limit": 0}), 422)
    assert_problem(client.post(f"{API}/resolve-all-exact", headers=admin, json={"after": "near:3"}), 422,
                   "invalid_group")
    assert_problem(client.post(f"{API}/resolve", headers=admin, json={"group": "near:5", "keep": 5, "delete": [6]}),
                   409, "keep_not_in_group")  # no such item: no such group


# ---------------------------------------------------------------------------- uploads over time


def backdate(client: TestClient, media_id: int, moment: datetime) -> None:
    with client.app.state.runtime.database.session() as session:  # type: ignore[attr-defined]
        session.execute(update(MediaItem).where(MediaItem.id == media_id).values(created_at=moment))


def test_uploads_over_time_counts_by_day_week_and_month(client: TestClient, tokens: Tokens) -> None:
    admin = tokens.admin()
    today = utcnow().date()
    noon = datetime.combine(today, time(12), timezone.utc)
    placed = {0: 2, 1: 1, 5: 3, 40: 1, 200: 1}  # days ago -> items
    sizes: dict[int, int] = {}
    for days_ago, count in placed.items():
        for _ in range(count):
            item = put(client, admin, f"{days_ago}", HOPPER_PNG)
            backdate(client, item["id"], noon - timedelta(days=days_ago))
            sizes[days_ago] = sizes.get(days_ago, 0) + item["byte_size"]

    answer = client.get("/v1/media/analytics/uploads", params={"days": 30}, headers=tokens.moderator())
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["interval"], body["since"], body["until"]) == ("day", str(today - timedelta(days=29)), str(today))
    assert len(body["buckets"]) == 30
    by_day = {bucket["start"]: (bucket["count"], bucket["bytes"]) for bucket in body["buckets"] if bucket["count"]}
    assert by_day == {str(today - timedelta(days=d)): (placed[d], sizes[d]) for d in (0, 1, 5)}
    assert (body["count"], body["bytes"]) == (6, sizes[0] + sizes[1] + sizes[5])

    weeks = client.get("/v1/media/analytics/uploads", params={"days": 365}, headers=admin).json()
    assert weeks["interval"] == "week" and weeks["count"] == 8
    assert all(datetime.fromisoformat(b["start"]).weekday() == 0 for b in weeks["buckets"])
    months = client.get("/v1/media/analytics/uploads", params={"days": 1095}, headers=admin).json()
    assert months["interval"] == "month" and months["count"] == 8
    assert all(b["start"].endswith("-01") for b in months["buckets"])
    per_month: dict[str, int] = {}
    for days_ago, count in placed.items():
        month = str((today - timedelta(days=days_ago)).replace(day=1))
        per_month[month] = per_month.get(month, 0) + count
    assert {b["start"]: b["count"] for b in months["buckets"] if b["count"]} == per_month
    for params in ({"days": 0}, {"days": 3661}, {"interval": "hour"}):
        assert_problem(client.get("/v1/media/analytics/uploads", params=params, headers=admin), 422)


# ---------------------------------------------------------------------------- every database


@pytest.fixture
def any_db_client(app_factory: AppFactory, migrated_database_url: str) -> Iterator[TestClient]:
    with TestClient(app_factory(database_url=migrated_database_url)) as client:
        yield client


def test_the_queries_on_every_database(any_db_client: TestClient, tokens: Tokens) -> None:
    """Exact groups with their cursor and reviews, the summary, and uploads per UTC day: the SQL of each
    database (PostgreSQL groups days in UTC whatever its session's time zone)."""
    client, admin = any_db_client, tokens.admin()
    hopper = [put(client, admin, entity_id, file)["id"] for entity_id, file in
              (("1", HOPPER_PNG), ("2", HOPPER_BMP), ("3", HOPPER_TIFF))]
    peppers = [put(client, admin, "4", PEPPERS)["id"], put(client, admin, "5", PEPPERS, is_primary="true")["id"]]
    flower = [put(client, admin, "6", FLOWER_JPEG)["id"], put(client, admin, "7", FLOWER_JPEG)["id"]]
    with client.app.state.runtime.database.session() as session:  # type: ignore[attr-defined]
        session.execute(update(MediaItem).where(MediaItem.id.in_(flower)).values(pixel_sha256=None))

    first = groups(client, admin, limit=1)
    second = groups(client, admin, limit=5, after=first["next"])
    assert sorted([*members(first), *members(second)]) == sorted([hopper, peppers, flower])
    assert [g["kind"] for g in [*first["groups"], *second["groups"]]] == ["pixels", "pixels", "file"]
    assert client.get(f"{API}/summary", headers=admin).json() == {"groups": 3, "deletes": 4}
    listed = [*first["groups"], *second["groups"]]
    peppers_key = next(g["key"] for g in listed if g["items"][0]["item"]["id"] in peppers)
    assert client.post(f"{API}/keep-all", headers=admin, json={"group": peppers_key, "ids": peppers}).status_code == 200
    assert client.post(f"{API}/keep-all", headers=admin, json={"group": peppers_key, "ids": peppers}).status_code == 200
    assert sorted(members(groups(client, admin))) == sorted([hopper, flower])
    assert client.get(f"{API}/summary", headers=admin).json() == {"groups": 2, "deletes": 3}
    assert members(groups(client, admin, "near")) == []  # exact copies are not look-alikes

    today = utcnow().date()
    midnight = datetime.combine(today - timedelta(days=1), time(0), timezone.utc)
    for media_id, moment in ((hopper[0], midnight - timedelta(microseconds=1)), (hopper[1], midnight),
                             (hopper[2], midnight + timedelta(hours=23, minutes=59))):
        backdate(client, media_id, moment)
    engine = client.app.state.runtime.database.engine  # type: ignore[attr-defined]
    if engine.dialect.name == "postgresql":  # sessions at UTC+14: a day taken in the session's zone would shift
        with engine.begin() as connection:
            connection.exec_driver_sql(f"ALTER DATABASE {engine.url.database} SET timezone TO 'Pacific/Kiritimati'")
        engine.dispose()
    body = client.get("/v1/media/analytics/uploads", params={"days": 3}, headers=admin).json()
    assert [(b["start"], b["count"]) for b in body["buckets"]] == [
        (str(today - timedelta(days=2)), 1), (str(today - timedelta(days=1)), 2), (str(today), 4)]
