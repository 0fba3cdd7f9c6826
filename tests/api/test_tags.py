"""Machine tags over HTTP: shown with their provenance, filtered by, reviewed by moderators (audited), exported."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import AppFactory, Tokens, add_member, assert_problem, upload
from tests.support.taggers import FixedTagger, room, thing

PHOTOS = "/v1/media/properties/123/photos"
LIST = "/v1/media/entity/property/123"


@pytest.fixture
def tagger() -> FixedTagger:
    return FixedTagger()


@pytest.fixture
def client(app_factory: AppFactory, tagger: FixedTagger, tokens: Tokens) -> Any:
    """An app whose jobs tag with the fake tagger; USR-OWNER owns property 123."""
    with TestClient(app_factory(tagger=tagger)) as test_client:
        add_member(test_client, tokens, "property:123", "USR-OWNER")
        yield test_client


def settle(client: TestClient, *items: dict[str, Any]) -> None:
    """Wait for the items' jobs (their tagging among them), run in process."""
    assert client.app.state.runtime.wait_for_jobs([item["id"] for item in items], timeout=60)  # type: ignore[attr-defined]


def approved_upload(client: TestClient, tokens: Tokens, tags: str | None = None) -> dict[str, Any]:
    response = upload(client, PHOTOS, tokens.header("USR-OWNER", verified=True),
                      data={"tags": tags} if tags else None)
    assert response.status_code == 201, response.text
    item = response.json()
    settle(client, item)
    return item


def machine_tags(client: TestClient, tokens: Tokens, item: dict[str, Any]) -> list[dict[str, Any]]:
    answer = client.get(f"/v1/media/{item['id']}", headers=tokens.moderator())
    assert answer.status_code == 200, answer.text
    return answer.json()["machine_tags"]


def tag_id(client: TestClient, tokens: Tokens, item: dict[str, Any], label: str) -> int:
    return next(tag["id"] for tag in machine_tags(client, tokens, item) if tag["label"] == label)


def listed(client: TestClient, *labels: str, headers: dict[str, str] | None = None) -> set[int]:
    answer = client.get(LIST, params=[("tag", label) for label in labels], headers=headers or {})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["total"] == len(body["items"])
    return {entry["id"] for entry in body["items"]}


def test_the_detail_and_the_list_show_machine_tags_with_their_provenance(client: TestClient, tokens: Tokens):
    item = approved_upload(client, tokens, tags="pool,sunny")
    assert item["machine_tags"] == []  # the upload answers before its tagging job runs
    assert item["processing_status"] == "ready"
    detail = client.get(f"/v1/media/{item['id']}").json()
    assert detail["tags"] == ["pool", "sunny"]
    assert [{k: tag[k] for k in ("label", "kind", "score", "source", "model", "state")}
            for tag in detail["machine_tags"]] == [
        {"label": "kitchen", "kind": "room", "score": 0.9, "source": "machine", "model": "fake-rooms@1",
         "state": "suggested"},
        {"label": "dishwasher", "kind": "object", "score": 0.7, "source": "machine", "model": "fake-rooms@1",
         "state": "suggested"}]
    (entry,) = client.get(LIST).json()["items"]
    assert entry["machine_tags"] == detail["machine_tags"]
    assert client.get(f"/v1/media/public/{item['public_id']}").json()["machine_tags"] == detail["machine_tags"]


def test_the_list_filters_by_tag(client: TestClient, tokens: Tokens, tagger: FixedTagger):
    kitchen = approved_upload(client, tokens, tags="sunny")
    tagger.tags = [room("kitchen", 0.2), thing("oven", 0.9)]
    unsure = approved_upload(client, tokens)
    tagger.tags = [room("bathroom", 0.8)]
    bathroom = approved_upload(client, tokens)
    assert listed(client, "kitchen") == {kitchen["id"]}  # 0.2 is below MACHINE_TAG_MIN_SCORE
    assert listed(client, "sunny") == {kitchen["id"]}
    assert listed(client, "kitchen", "sunny") == {kitchen["id"]}
    assert listed(client, "bathroom", "sunny") == set()
    assert listed(client, "oven") == set()
    client.put(f"/v1/media/{bathroom['id']}/room", json={"label": "bedroom"}, headers=tokens.moderator())
    assert listed(client, "bathroom") == set() and listed(client, "bedroom") == {bathroom["id"]}
    client.post(f"/v1/media/{unsure['id']}/tags/{tag_id(client, tokens, unsure, 'kitchen')}/accept",
                headers=tokens.moderator())
    assert listed(client, "kitchen") == {kitchen["id"], unsure["id"]}


def test_the_threshold_is_a_setting(app_factory: AppFactory, tokens: Tokens):
    tagger = FixedTagger([room("kitchen", 0.2)])
    with TestClient(app_factory(tagger=tagger, machine_tag_min_score=0.1)) as client:
        add_member(client, tokens, "property:123", "USR-OWNER")
        item = approved_upload(client, tokens)
        assert listed(client, "kitchen") == {item["id"]}


@pytest.mark.parametrize(("params", "code"), [
    ([("tag", "x" * 65)], None), ([("tag", "")], None), ([("tag", "a\x00b")], None),
    ([("tag", str(n)) for n in range(11)], None)])
def test_a_bad_tag_filter_is_422(client: TestClient, params: list[tuple[str, str]], code: str | None):
    assert_problem(client.get(LIST, params=params), 422, code)


def test_moderators_accept_reject_and_correct(client: TestClient, tokens: Tokens):
    item = approved_upload(client, tokens)
    media = f"/v1/media/{item['id']}"
    kitchen, dishwasher = tag_id(client, tokens, item, "kitchen"), tag_id(client, tokens, item, "dishwasher")
    accepted = client.post(f"{media}/tags/{kitchen}/accept", headers=tokens.moderator())
    assert accepted.status_code == 200, accepted.text
    assert [(t["label"], t["state"], t["decided_by"]) for t in accepted.json()["machine_tags"]] == [
        ("kitchen", "accepted", "MOD-1"), ("dishwasher", "suggested", None)]
    rejected = client.post(f"{media}/tags/{dishwasher}/reject", headers=tokens.moderator()).json()
    assert [(t["label"], t["state"]) for t in rejected["machine_tags"]] == [("kitchen", "accepted"),
                                                                            ("dishwasher", "rejected")]
    corrected = client.put(f"{media}/room", json={"label": "living_room"}, headers=tokens.moderator()).json()
    assert [(t["label"], t["source"], t["state"], t["model"], t["score"]) for t in corrected["machine_tags"]] == [
        ("living_room", "moderator", "accepted", None, None), ("kitchen", "machine", "rejected", "fake-rooms@1", 0.9),
        ("dishwasher", "machine", "rejected", "fake-rooms@1", 0.7)]
    # Who decided, and what was rejected, is for the uploader, owners and moderators; a stranger sees what stands.
    public = client.get(media).json()["machine_tags"]
    assert [(t["label"], t["state"], t["decided_by"]) for t in public] == [("living_room", "accepted", None)]
    owner = client.get(media, headers=tokens.user("USR-OWNER")).json()["machine_tags"]
    assert [(t["label"], t["state"]) for t in owner] == [(t["label"], t["state"]) for t in corrected["machine_tags"]]
    assert client.get(f"/v1/media/public/{item['public_id']}").json()["machine_tags"] == public
    # Each change is in the item's history, as the moderator's.
    history = client.get(f"{media}/history", headers=tokens.moderator()).json()["items"]
    assert [event["action"] for event in history[:3]] == ["tags.correct", "tags.reject", "tags.accept"]
    assert history[0]["actor"] == "MOD-1"
    assert history[0]["after"] == {"room:kitchen (fake-rooms@1)": "rejected", "room:living_room (moderator)": "accepted"}


def test_review_errors_have_stable_codes(client: TestClient, tokens: Tokens):
    item = approved_upload(client, tokens)
    media = f"/v1/media/{item['id']}"
    kitchen = tag_id(client, tokens, item, "kitchen")
    assert_problem(client.put(f"{media}/room", json={"label": "attic"}, headers=tokens.moderator()), 422,
                   "unknown_room_label")
    assert_problem(client.put(f"{media}/room", json={"label": "unknown"}, headers=tokens.moderator()), 422,
                   "unknown_room_label")
    assert_problem(client.put(f"{media}/room", json={"label": "x" * 65}, headers=tokens.moderator()), 422)
    assert_problem(client.put(f"{media}/room", json={}, headers=tokens.moderator()), 422)
    assert_problem(client.post(f"{media}/tags/{kitchen}/accept", headers=tokens.owner()), 403, "moderator_required")
    assert_problem(client.put(f"{media}/room", json={"label": "bedroom"}, headers=tokens.user()), 403,
                   "moderator_required")
    assert_problem(client.post(f"{media}/tags/{kitchen}/accept"), 401)
    assert_problem(client.post(f"/v1/media/999999/tags/{kitchen}/accept", headers=tokens.moderator()), 404,
                   "media_not_found")
    assert_problem(client.post(f"{media}/tags/999999/reject", headers=tokens.moderator()), 404, "tag_not_found")
    other = approved_upload(client, tokens)
    assert_problem(client.post(f"/v1/media/{other['id']}/tags/{kitchen}/reject", headers=tokens.moderator()), 404,
                   "tag_not_found")  # another item's tag
    client.put(f"{media}/room", json={"label": "bedroom"}, headers=tokens.moderator())
    own = next(t["id"] for t in machine_tags(client, tokens, item) if t["source"] == "moderator")
    assert_problem(client.post(f"{media}/tags/{own}/reject", headers=tokens.moderator()), 409, "not_machine_tag")


def test_the_export_for_moderators(client: TestClient, tokens: Tokens):
    item = approved_upload(client, tokens)
    client.put(f"/v1/media/{item['id']}/room", json={"label": "bedroom"}, headers=tokens.moderator())
    jsonl = client.get("/v1/media/tags/export", headers=tokens.moderator())
    assert jsonl.status_code == 200 and jsonl.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in jsonl.text.splitlines()]
    assert lines == [{"media_public_id": item["public_id"], "sha256": item["public_id"] and lines[0]["sha256"],
                      "kind": "room", "label": "bedroom", "decision": "corrected", "machine_label": "kitchen",
                      "machine_score": 0.9, "model": "fake-rooms@1", "decided_by": "MOD-1",
                      "decided_at": lines[0]["decided_at"]}]
    assert len(lines[0]["sha256"]) == 64
    table = client.get("/v1/media/tags/export", params={"format": "csv"}, headers=tokens.admin())
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert [(row["label"], row["machine_label"], row["decision"]) for row in rows] == [("bedroom", "kitchen",
                                                                                         "corrected")]
    assert_problem(client.get("/v1/media/tags/export", headers=tokens.user()), 403, "moderator_required")
    assert_problem(client.get("/v1/media/tags/export", params={"format": "xml"}, headers=tokens.moderator()), 422)


def test_without_a_tagger_uploads_get_no_machine_tags(app_factory: AppFactory, tokens: Tokens):
    with TestClient(app_factory()) as client:
        add_member(client, tokens, "property:123", "USR-OWNER")
        item = approved_upload(client, tokens)
        assert client.get(f"/v1/media/{item['id']}").json()["machine_tags"] == []
        assert client.app.state.runtime.tagging == "off"  # type: ignore[attr-defined]
