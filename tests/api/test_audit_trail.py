"""The audit trail over HTTP: every state-changing route records what it changed, and the trail reads back.

Two proofs that no change escapes it: the guard every API test runs under (tests/support/audit_guard.py: no
transaction commits an audited write without an event), and the table below, which has a case for every
state-changing route of the app, performs it and checks the events it recorded (none, for routes that change
nothing the trail covers).
"""

from __future__ import annotations

import base64
import json
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings

from mediahub.api.app import create_app
from mediahub.api.library.routes import PAGES
from mediahub.db.models import MediaItem
from mediahub.db.repositories import ACTIONS
from tests.api.conftest import HOPPER, AppFactory, Tokens, add_member, assert_problem, make_settings, upload
from tests.api.library.conftest import FORM_CSRF, sign_in
from tests.api.test_direct_uploads import _complete_post, _multipart, _post_form, _s3_app, _start
from tests.support.audit_guard import AUDITED_COLUMNS, SYSTEM_COLUMNS, AuditGuard
from tests.support.corpus import CORPUS_DIR
from tests.support.taggers import FixedTagger

FLOWER = CORPUS_DIR / "images/good/jpeg_flower.jpg"
PHOTOS = "/v1/media/properties/123/photos"
TUS = {"Tus-Resumable": "1.0.0"}
STATE_CHANGING = {"post", "put", "patch", "delete"}


@dataclass
class World:
    """Property 123 with its owner USR-OWNER, who uploaded a pending item P and an approved item A (the same
    picture: a group of exact duplicates)."""

    client: TestClient
    tokens: Tokens
    pending: dict[str, Any]
    approved: dict[str, Any]

    @property
    def owner(self) -> dict[str, str]:
        return self.tokens.owner()

    def newest(self) -> int:
        items = self.client.get("/v1/media/audit", params={"limit": 1}, headers=self.tokens.admin()).json()["items"]
        return items[0]["id"] if items else 0

    def since(self, marker: int) -> list[dict[str, Any]]:
        """The events recorded after event `marker`, oldest first."""
        answer = self.client.get("/v1/media/audit", params={"limit": 100}, headers=self.tokens.admin())
        assert answer.status_code == 200, answer.text
        return [event for event in reversed(answer.json()["items"]) if event["id"] > marker]


def make_world(client: TestClient, tokens: Tokens) -> World:
    add_member(client, tokens, "property:123", "USR-OWNER")
    pending = upload(client, PHOTOS, tokens.owner()).json()
    approved = upload(client, PHOTOS, tokens.header("USR-OWNER", verified=True)).json()
    assert (pending["moderation_status"], approved["moderation_status"]) == ("pending", "approved")
    return World(client, tokens, pending, approved)


@pytest.fixture
def world(client: TestClient, tokens: Tokens) -> World:
    return make_world(client, tokens)


# ---------------------------------------------------------------------------- every state-changing route

Perform = Callable[[World], Any]


@dataclass(frozen=True)
class Case:
    perform: Perform  # does what the route does, successfully; returns the response (its status is checked)
    status: int
    actions: tuple[str, ...]  # the events it records, in order; () for a route that changes nothing audited
    s3: bool = False  # the route needs the S3 store (direct uploads)
    prepare: Perform | None = None  # what must have happened first (not part of the checked events)


def _tus_create(w: World, length: int) -> str:
    metadata = ",".join(f"{key} {base64.b64encode(value.encode()).decode()}"
                        for key, value in {"entity_type": "property", "entity_id": "123",
                                           "entity_field": "photos", "filename": "a.jpg"}.items())
    created = w.client.post("/v1/media/tus/", headers={**w.owner, **TUS, "Upload-Length": str(length),
                                                        "Upload-Metadata": metadata})
    assert created.status_code == 201, created.text
    return created.headers["location"]


def _tus_patch(w: World) -> Any:
    data = HOPPER.read_bytes()
    location = _tus_create(w, len(data))
    return w.client.patch(location, content=data, headers={
        **w.owner, **TUS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"})


def _exact_group(w: World) -> str:
    groups = w.client.get("/v1/media/duplicates", headers=w.tokens.moderator()).json()["groups"]
    return next(group["key"] for group in groups if {m["item"]["id"] for m in group["items"]} >= {
        w.pending["id"], w.approved["id"]})


def _bucket() -> requests.Session:
    http = requests.Session()
    http.trust_env = False
    return http


def _multipart_complete(w: World) -> Any:
    with _bucket() as http:
        return _multipart(w.client, http, w.owner, HOPPER.read_bytes())[2]


def _post_complete(w: World) -> Any:
    with _bucket() as http:
        key, sent = _post_form(w.client, http, w.owner, HOPPER.read_bytes())
        assert sent.status_code == 204, sent.text
        return _complete_post(w.client, w.owner, key)


def _multipart_abort(w: World) -> Any:
    key, upload_id = _start(w.client, w.owner)
    return w.client.delete(f"/v1/media/s3/multipart/{upload_id}", params={"key": key}, headers=w.owner)


def _library_login(w: World) -> Any:
    form = w.client.get("/library/login")
    return w.client.post("/library/login", data={"token": w.tokens.mint("USR-OWNER"),
                                                 "csrf_token": FORM_CSRF.search(form.text).group(1)},
                         follow_redirects=False)


def _library_tag_form(w: World) -> Any:
    kitchen = _machine_tag(w, "kitchen")
    csrf = sign_in(w.client, w.tokens.mint("MOD-1", roles=("user", "moderator")))
    return w.client.post(f"/library/media/{w.approved['id']}/tags", data={
        "csrf_token": csrf, "action": "accept", "tag_id": str(kitchen)}, follow_redirects=False)


def _library_logout(w: World) -> Any:
    csrf = sign_in(w.client, w.tokens.mint("USR-OWNER"))
    return w.client.post("/library/logout", data={"csrf_token": csrf}, follow_redirects=False)


def _machine_tag(w: World, label: str) -> int:
    """The id of the approved item's machine tag `label`, once its tagging job ran."""
    assert w.client.app.state.runtime.wait_for_jobs([w.approved["id"]], timeout=60)  # type: ignore[attr-defined]
    tags = w.client.get(f"/v1/media/{w.approved['id']}", headers=w.tokens.moderator()).json()["machine_tags"]
    return next(tag["id"] for tag in tags if tag["label"] == label)


P = "/v1/media/{media_id}"
DUPLICATES = "/v1/media/duplicates"
MEMBER = "/v1/media/entities/{entity_type}/{entity_id}/members/{sub}"
CASES: dict[tuple[str, str], Case] = {
    ("patch", P): Case(lambda w: w.client.patch(f"/v1/media/{w.approved['id']}", headers=w.owner,
                                                json={"caption": "A hall"}), 200, ("media.update",)),
    ("delete", P): Case(lambda w: w.client.delete(f"/v1/media/{w.pending['id']}", headers=w.owner), 204,
                        ("media.delete",)),
    ("post", "/v1/media/{media_id}/moderation"): Case(
        lambda w: w.client.post(f"/v1/media/{w.pending['id']}/moderation", headers=w.tokens.moderator(),
                                json={"status": "rejected", "reason": "blurred"}), 200, ("media.reject",)),
    ("post", "/v1/media/{media_id}/flag"): Case(
        lambda w: w.client.post(f"/v1/media/{w.approved['id']}/flag", headers=w.tokens.user(),
                                json={"reason": "spam"}), 200, ("report.create",)),
    ("post", "/v1/media/{media_id}/reports/dismiss"): Case(
        lambda w: w.client.post(f"/v1/media/{w.approved['id']}/reports/dismiss", headers=w.tokens.moderator()),
        200, ("report.dismiss",),
        prepare=lambda w: w.client.post(f"/v1/media/{w.approved['id']}/flag", headers=w.tokens.user(), json={})),
    ("post", "/v1/media/{media_id}/transform-url"): Case(
        lambda w: w.client.post(f"/v1/media/{w.approved['id']}/transform-url", headers=w.owner,
                                json={"width": 64}), 200, ()),
    ("post", "/v1/media/batch"): Case(
        lambda w: w.client.post("/v1/media/batch", headers=w.tokens.moderator(),
                                json={"action": "approve", "ids": [w.pending["id"]]}), 200, ("media.approve",)),
    ("post", "/v1/media/batch/delete"): Case(
        lambda w: w.client.post("/v1/media/batch/delete", headers=w.owner,
                                json={"ids": [w.pending["id"], w.approved["id"]]}), 200,
        ("media.delete", "media.delete")),
    ("post", "/v1/media/batch/upload"): Case(
        lambda w: w.client.post("/v1/media/batch/upload", headers=w.owner,
                                files=[("files", ("a.jpg", HOPPER.read_bytes(), "image/jpeg"))],
                                data={"entity_type": "property", "entity_id": "123", "entity_field": "photos"}),
        201, ("media.create",)),
    ("put", "/v1/media/entity/{entity_type}/{entity_id}/order"): Case(
        lambda w: w.client.put("/v1/media/entity/property/123/order", headers=w.owner,
                               json={"field": "photos", "ids": [w.approved["id"], w.pending["id"]]}), 200,
        ("media.order",)),
    ("put", MEMBER): Case(lambda w: w.client.put("/v1/media/entities/property/123/members/USR-NEW",
                                                 headers=w.tokens.admin(), json={"role": "editor"}), 200,
                          ("member.grant",)),
    ("delete", MEMBER): Case(lambda w: w.client.delete("/v1/media/entities/property/123/members/USR-OWNER",
                                                       headers=w.tokens.admin()), 204, ("member.revoke",)),
    ("post", f"{DUPLICATES}/resolve"): Case(
        lambda w: w.client.post(f"{DUPLICATES}/resolve", headers=w.tokens.admin(), json={
            "group": _exact_group(w), "keep": w.approved["id"], "delete": [w.pending["id"]]}), 200,
        ("media.delete",)),
    ("post", f"{DUPLICATES}/keep-all"): Case(
        lambda w: w.client.post(f"{DUPLICATES}/keep-all", headers=w.tokens.moderator(), json={
            "group": _exact_group(w), "ids": [w.pending["id"], w.approved["id"]]}), 200, ("duplicates.keep_all",)),
    ("post", f"{DUPLICATES}/resolve-all-exact"): Case(
        lambda w: w.client.post(f"{DUPLICATES}/resolve-all-exact", headers=w.tokens.admin(), json={}), 200,
        ("media.delete",)),
    ("post", "/v1/media/tus/"): Case(lambda w: w.client.head(_tus_create(w, 10), headers={**w.owner, **TUS}),
                                     200, ()),
    ("patch", "/v1/media/tus/{upload_id}"): Case(_tus_patch, 204, ("media.create",)),
    ("delete", "/v1/media/tus/{upload_id}"): Case(
        lambda w: w.client.delete(_tus_create(w, 10), headers={**w.owner, **TUS}), 204, ()),
    ("post", "/v1/media/s3/multipart"): Case(lambda w: w.client.post(
        "/v1/media/s3/multipart", headers=w.owner, json={"filename": "a.jpg", "metadata": {
            "entity_type": "property", "entity_id": "123", "entity_field": "photos"}}), 201, (), s3=True),
    ("post", "/v1/media/s3/multipart/{upload_id}/complete"): Case(_multipart_complete, 201, ("media.create",),
                                                                  s3=True),
    ("delete", "/v1/media/s3/multipart/{upload_id}"): Case(_multipart_abort, 200, (), s3=True),
    ("post", "/v1/media/s3/params/complete"): Case(_post_complete, 201, ("media.create",), s3=True),
    ("post", "/v1/media/{media_id}/tags/{tag_id}/accept"): Case(
        lambda w: w.client.post(f"/v1/media/{w.approved['id']}/tags/{_machine_tag(w, 'kitchen')}/accept",
                                headers=w.tokens.moderator()), 200, ("tags.accept",)),
    ("post", "/v1/media/{media_id}/tags/{tag_id}/reject"): Case(
        lambda w: w.client.post(f"/v1/media/{w.approved['id']}/tags/{_machine_tag(w, 'dishwasher')}/reject",
                                headers=w.tokens.moderator()), 200, ("tags.reject",)),
    ("put", "/v1/media/{media_id}/room"): Case(
        lambda w: w.client.put(f"/v1/media/{w.approved['id']}/room", headers=w.tokens.moderator(),
                               json={"label": "bedroom"}), 200, ("tags.correct",)),
    ("post", "/library/media/{media_id}/tags"): Case(_library_tag_form, 303, ("tags.accept",)),
    ("post", "/library/login"): Case(_library_login, 303, ()),
    ("post", "/library/logout"): Case(_library_logout, 303, ()),
}


def _upload_case(template: str) -> Case:
    """Each entity kind's upload route (generated from entities.py): an admin's upload to entity X1 (of parent X1)."""
    path = re.sub(r"\{[^}]+\}", "X1", template)
    return Case(lambda w: upload(w.client, path, w.tokens.admin()), 201, ("media.create",))


def state_changing_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every route that may change state: the API's (its OpenAPI document lists
    every one) and the library's form posts."""
    paths = app.openapi()["paths"]
    routes = [(method, template) for template, operations in paths.items() for method in operations
              if method in STATE_CHANGING]
    routes += [(method.lower(), route.path) for page in PAGES for route in page.router.routes
               for method in getattr(route, "methods", ()) if method.lower() in STATE_CHANGING]
    return sorted(routes)


def case_of(route: tuple[str, str], upload_paths: set[str]) -> Case | None:
    if route in CASES:
        return CASES[route]
    method, template = route
    return _upload_case(template) if method == "post" and template in upload_paths else None


def _upload_paths(app: FastAPI) -> set[str]:
    paths = app.openapi()["paths"]
    return {template for template, operations in paths.items()
            if "post" in operations and "uploads" in operations["post"]["tags"]
            and template != "/v1/media/batch/upload"}


def test_every_state_changing_route_has_an_audited_case(app: FastAPI) -> None:
    routes = state_changing_routes(app)
    uploads = _upload_paths(app)
    assert len(routes) > 30 and uploads  # the enumeration found the app's routes
    missing = [route for route in routes if case_of(route, uploads) is None]
    assert missing == [], "give each a case in CASES: what it does, and the events it records"
    stale = [route for route in CASES if route not in routes]
    assert stale == [], "cases of routes the app no longer has"


def _route_params() -> list[Any]:
    """A parameter per state-changing route of an app built from the default test settings (at collection)."""
    with tempfile.TemporaryDirectory() as directory:
        app = create_app(make_settings(Path(directory)))
    uploads = _upload_paths(app)
    cases = [(route, case_of(route, uploads)) for route in state_changing_routes(app)]
    return [pytest.param(route, case, id=f"{route[0].upper()} {route[1]}", marks=[pytest.mark.s3] if case.s3 else [])
            for route, case in cases if case is not None]


@pytest.mark.parametrize(("route", "case"), _route_params())
def test_each_route_records_its_events(route: tuple[str, str], case: Case, app_factory: AppFactory, tokens: Tokens,
                                       audit_guard: AuditGuard, request: pytest.FixtureRequest) -> None:
    if case.s3:
        client = _s3_app(app_factory, request.getfixturevalue("s3_server"))
    else:
        client = TestClient(app_factory(tagger=FixedTagger()))  # listing photos get machine tags to review
    with client:
        if case.s3:
            client.app.state.runtime.storage.check()  # type: ignore[attr-defined]  # creates the bucket
        w = make_world(client, tokens)
        if case.prepare is not None:
            assert case.prepare(w).status_code < 300
        marker, checked = w.newest(), audit_guard.checked
        response = case.perform(w)
        assert response.status_code == case.status, response.text
        events = w.since(marker)
    assert [event["action"] for event in events] == list(case.actions)
    assert all(event["actor"] and event["request_id"] for event in events), events
    assert audit_guard.checked - checked >= (1 if case.actions else 0)  # the guard saw the change commit


# ---------------------------------------------------------------------------- what the events say


def _events(w: World, **params: Any) -> list[dict[str, Any]]:
    answer = w.client.get("/v1/media/audit", params={"limit": 100, **params}, headers=w.tokens.admin())
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]


def test_a_decision_records_who_what_why_and_the_fields_it_changed(world: World) -> None:
    w = world
    assert w.client.post(f"/v1/media/{w.pending['id']}/flag", headers=w.owner, json={"reason": "spam"}).is_success
    assert w.client.post(f"/v1/media/{w.pending['id']}/moderation", headers=w.tokens.moderator(),
                         json={"status": "rejected", "reason": "not the property"}).is_success
    closed, reject = _events(w, media=w.pending["public_id"])[:2]
    assert (reject["action"], reject["actor"], reject["actor_role"], reject["reason"]) == (
        "media.reject", "MOD-1", "moderator", "not the property")
    assert reject["before"] == {"moderation_status": "pending", "moderation_reason": None}
    assert reject["after"] == {"moderation_status": "rejected", "moderation_reason": "not the property"}
    assert (reject["media_id"], reject["entity_type"], reject["entity_id"], reject["parent_id"]) == (
        w.pending["id"], "property", "123", None)
    assert (closed["action"], closed["before"], closed["after"]) == (
        "report.close", {"open_reports": 1, "resolution": None}, {"open_reports": 0, "resolution": "rejected"})


def test_an_approval_that_replaces_a_single_slot_records_the_deletes(client: TestClient, tokens: Tokens) -> None:
    w = World(client, tokens, {}, {})
    old = upload(client, "/v1/media/users/USR-1/avatar", tokens.header("USR-1", verified=True)).json()
    new = upload(client, "/v1/media/users/USR-1/avatar", tokens.header("USR-1")).json()
    assert client.post(f"/v1/media/{new['id']}/moderation", headers=tokens.moderator(),
                       json={"status": "approved"}).status_code == 200
    deleted = _events(w, action="media.delete")
    assert [(e["media_id"], e["actor"], e["reason"]) for e in deleted] == [
        (old["id"], "MOD-1", f"replaced by item {new['id']} in its single slot")]
    assert deleted[0]["before"]["moderation_status"] == "approved" and deleted[0]["after"] is None
    approve = _events(w, action="media.approve")[0]
    assert approve["after"]["moderation_status"] == "approved" and approve["media_id"] == new["id"]


def test_reports_that_hide_an_item_record_the_flag_as_the_systems(app_factory: AppFactory, tokens: Tokens) -> None:
    with TestClient(app_factory(flag_hide_threshold=2)) as client:
        w = make_world(client, tokens)
        for reporter in ("USR-A", "USR-B"):
            assert client.post(f"/v1/media/{w.approved['id']}/flag", headers=tokens.user(reporter),
                               json={}).status_code == 200
        newest = _events(w, media=w.approved["public_id"])
        assert [e["action"] for e in newest[:3]] == ["media.flag", "report.create", "report.create"]
        assert (newest[0]["actor"], newest[0]["actor_role"]) == ("system", "system")
        assert newest[0]["after"]["moderation_status"] == "flagged"


def test_an_edit_records_only_what_changed_and_a_primary_its_own_event(world: World) -> None:
    w = world
    answer = w.client.patch(f"/v1/media/{w.approved['id']}", headers=w.owner, json={
        "caption": "Hall", "tags": ["a"], "is_primary": True, "focal_point": {"x": 0.25, "y": 0.75}})
    assert answer.status_code == 200, answer.text
    primary, update = _events(w, media=w.approved["public_id"])[:2]
    assert update["action"] == "media.update" and primary["action"] == "media.primary"
    assert set(update["after"]) == {"caption", "tags", "focal_point", "moderation_status", "moderation_reason"}
    assert update["after"]["focal_point"]["source"] == "manual"
    assert update["before"]["caption"] is None and update["after"]["caption"] == "Hall"
    assert primary["after"]["is_primary"] is True and primary["before"]["is_primary"] is False
    # The same again changes nothing: nothing is recorded.
    marker = w.newest()
    w.client.patch(f"/v1/media/{w.approved['id']}", headers=w.owner, json={"caption": "Hall"})
    assert w.since(marker) == []


def test_an_item_that_loses_its_primary_records_it(world: World) -> None:
    """A new primary (by an edit, an upload or an approved claim) demotes the old one: the old one's history says so."""
    w = world
    demoted = {"is_primary": True, "position": 0}, {"is_primary": False, "position": 1}

    def last_primary_change(media_id: int) -> tuple[Any, Any]:
        event = _events(w, media=_public_id(w, media_id), action="media.primary")[0]
        return event["before"], event["after"]

    assert w.client.patch(f"/v1/media/{w.approved['id']}", headers=w.owner, json={"is_primary": True}).is_success
    assert w.client.patch(f"/v1/media/{w.pending['id']}", headers=w.tokens.moderator(),
                          json={"moderation_status": "approved"}).is_success
    assert w.client.patch(f"/v1/media/{w.pending['id']}", headers=w.owner, json={"is_primary": True}).is_success
    assert last_primary_change(w.approved["id"]) == demoted
    uploaded = upload(w.client, PHOTOS, w.tokens.header("USR-OWNER", verified=True), data={"is_primary": "true"})
    assert uploaded.json()["is_primary"] is True
    assert last_primary_change(w.pending["id"]) == demoted
    claim = upload(w.client, PHOTOS, w.owner, data={"is_primary": "true"}).json()
    assert w.client.post(f"/v1/media/{claim['id']}/moderation", headers=w.tokens.moderator(),
                         json={"status": "approved"}).is_success
    assert last_primary_change(uploaded.json()["id"]) == demoted


def _public_id(w: World, media_id: int) -> str:
    return w.client.get(f"/v1/media/{media_id}", headers=w.tokens.admin()).json()["public_id"]


def test_a_change_that_fails_leaves_no_event(client: TestClient, tokens: Tokens) -> None:
    """The caption's event is recorded before the primary change refuses (409): both roll back."""
    w = World(client, tokens, {}, {})
    avatar = upload(client, "/v1/media/users/USR-1/avatar", tokens.header("USR-1", verified=True)).json()
    marker = w.newest()
    assert_problem(client.patch(f"/v1/media/{avatar['id']}", headers=tokens.header("USR-1"),
                                json={"caption": "me", "is_primary": False}), 409, "single_slot_primary")
    assert w.since(marker) == []
    assert client.get(f"/v1/media/{avatar['id']}", headers=tokens.header("USR-1")).json()["caption"] is None


def test_a_dismissal_with_no_open_report_records_nothing(world: World) -> None:
    w = world
    path = f"/v1/media/{w.approved['id']}/reports/dismiss"
    assert w.client.post(f"/v1/media/{w.approved['id']}/flag", headers=w.tokens.user(), json={}).is_success
    assert w.client.post(path, headers=w.tokens.moderator()).is_success
    marker = w.newest()
    for _ in range(3):
        assert w.client.post(path, headers=w.tokens.moderator()).is_success
    assert w.since(marker) == []


def test_a_reorder_records_the_positions_that_moved(world: World) -> None:
    w = world
    w.client.put("/v1/media/entity/property/123/order", headers=w.owner,
                 json={"field": "photos", "ids": [w.approved["id"], w.pending["id"]]})
    order = _events(w, action="media.order")[0]
    assert (order["entity_type"], order["entity_id"], order["media_id"]) == ("property", "123", None)
    assert order["before"] == {"field": "gallery", "positions": {str(w.pending["id"]): 0, str(w.approved["id"]): 1}}
    assert order["after"] == {"field": "gallery", "positions": {str(w.pending["id"]): 1, str(w.approved["id"]): 0}}


def test_member_changes_record_the_role_before_and_after(world: World) -> None:
    w = world
    path = "/v1/media/entities/property/123/members/USR-OWNER"
    w.client.put(path, headers=w.tokens.admin(), json={"role": "editor"})
    w.client.put(path, headers=w.tokens.admin(), json={"role": "editor"})  # no change: no event
    w.client.delete(path, headers=w.tokens.admin())
    revoke, grant, first = _events(w, entity_type="property", entity_id="123",
                                   action=["member.grant", "member.revoke"])
    member = {"subject": "USR-OWNER"}
    assert (first["action"], first["actor"], first["before"], first["after"]) == (
        "member.grant", "ADM-1", None, {**member, "role": "owner"})
    assert (grant["before"], grant["after"]) == ({**member, "role": "owner"}, {**member, "role": "editor"})
    assert (revoke["action"], revoke["before"], revoke["after"]) == ("member.revoke", {**member, "role": "editor"},
                                                                       None)


def test_the_request_id_is_the_callers_or_a_new_one(world: World) -> None:
    w = world
    answer = w.client.patch(f"/v1/media/{w.approved['id']}", headers={**w.owner, "X-Request-ID": "req-42"},
                            json={"caption": "x"})
    assert answer.headers["x-request-id"] == "req-42"
    assert _events(w, action="media.update")[0]["request_id"] == "req-42"
    hostile = w.client.get("/healthz", headers={"X-Request-ID": "a b<script>"})
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["x-request-id"])


# ---------------------------------------------------------------------------- reading the trail


def test_the_trail_pages_newest_first_with_filters(world: World) -> None:
    w = world
    for n in range(5):
        w.client.patch(f"/v1/media/{w.approved['id']}", headers=w.owner, json={"caption": f"c{n}"})
    everything = _events(w)
    seen, after = [], None
    while True:
        params = {"limit": 3, **({"after": after} if after else {})}
        page = w.client.get("/v1/media/audit", params=params, headers=w.tokens.admin()).json()
        seen += page["items"]
        after = page["next"]
        if after is None:
            break
    assert [e["id"] for e in seen] == [e["id"] for e in everything]
    assert [e["id"] for e in everything] == sorted((e["id"] for e in everything), reverse=True)
    updates = _events(w, action="media.update", actor="USR-OWNER", media=w.approved["public_id"])
    assert [e["after"]["caption"] for e in updates] == ["c4", "c3", "c2", "c1", "c0"]
    both = _events(w, action=["media.update", "member.grant"])
    assert {e["action"] for e in both} == {"media.update", "member.grant"} and len(both) == 6
    assert _events(w, since=(datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()) == []
    assert len(_events(w, until=(datetime.now(timezone.utc) + timedelta(hours=1)).isoformat())) == len(everything)
    assert _events(w, entity_type="properties", entity_id="123") == [
        e for e in everything if e["entity_type"] == "property"]


@pytest.mark.parametrize(("params", "code"), [
    ({"action": "media.explode"}, "unknown_action"),
    ({"after": "bm90IGEgY3Vyc29y"}, "invalid_cursor"),
    ({"after": "!!!"}, "invalid_cursor"),
    ({"after": base64.urlsafe_b64encode(b'["2026-01-01T00:00:00", 5]').decode()}, "invalid_cursor"),
    ({"after": base64.urlsafe_b64encode(b'["2026-01-01T00:00:00+00:00", -5]').decode()}, "invalid_cursor"),
    ({"entity_type": "planet"}, "unknown_entity_type"),
    ({"entity_id": "123"}, "entity_type_required"),
    ({"entity_type": "property", "entity_id": "1 2"}, "invalid_entity_id"),
    ({"entity_type": "property", "parent_id": "C1"}, "unexpected_parent"),
    ({"since": "2026-01-01T00:00:00"}, "invalid_time"),
    ({"since": "0001-01-01T00:00:00+00:00"}, "invalid_time"),
    ({"until": "9999-12-31T23:59:59-05:00"}, "invalid_time"),
    ({"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "invalid_time_range"),
    ({"since": "yesterday"}, "validation_error"),
    ({"limit": "0"}, "validation_error"),
    ({"limit": "101"}, "validation_error"),
    ({"actor": "a\x00b"}, None),
])
def test_hostile_filters_are_4xx_with_a_stable_code(world: World, params: dict[str, Any], code: str | None) -> None:
    answer = world.client.get("/v1/media/audit", params=params, headers=world.tokens.admin())
    assert 400 <= answer.status_code < 500, answer.text
    if code is not None:
        assert answer.json()["code"] == code, answer.text


def _cursor(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


@pytest.mark.parametrize("key", [["0001-01-01T00:00:00+14:00", 1], ["9999-12-31T23:59:59-14:00", 1],
                                 ["0001-01-01T00:00:00+00:00", 1]])
def test_a_cursor_outside_the_years_a_database_stores_is_invalid_on_every_database(
        app_factory: AppFactory, migrated_database_url: str, tokens: Tokens, key: list[Any]) -> None:
    """A cursor's time in its own offset may be in range while its UTC moment is not (MariaDB's driver fails on it)."""
    with TestClient(app_factory(database_url=migrated_database_url), raise_server_exceptions=False) as client:
        item = upload(client, PHOTOS, tokens.admin()).json()
        for path in ("/v1/media/audit", f"/v1/media/{item['id']}/history"):
            assert_problem(client.get(path, params={"after": _cursor(key)}, headers=tokens.admin()), 422,
                           "invalid_cursor")


def test_the_trail_on_every_database(app_factory: AppFactory, migrated_database_url: str, tokens: Tokens) -> None:
    """Recording in each change's transaction, the filters, the pages and an item's history on each database."""
    with TestClient(app_factory(database_url=migrated_database_url)) as client:
        w = make_world(client, tokens)
        for status in ("approved", "rejected", "approved"):
            assert client.post(f"/v1/media/{w.pending['id']}/moderation", headers=tokens.moderator(),
                               json={"status": status, "reason": status}).is_success
        decisions = _events(w, action=["media.approve", "media.reject"], actor="MOD-1")
        assert [e["reason"] for e in decisions] == ["approved", "rejected", "approved"]
        first = client.get("/v1/media/audit", params={"limit": 2}, headers=tokens.admin()).json()
        rest = client.get("/v1/media/audit", params={"after": first["next"]}, headers=tokens.admin()).json()
        assert [e["id"] for e in first["items"] + rest["items"]] == [e["id"] for e in _events(w)]
        history = client.get(f"/v1/media/{w.pending['id']}", headers=w.owner).json()["history"]
        assert [e["action"] for e in history] == ["media.approve", "media.reject", "media.approve", "media.create"]


def test_history_in_the_detail_is_for_owners_and_moderators_and_hides_reporters(world: World) -> None:
    w = world
    w.client.post(f"/v1/media/{w.approved['id']}/flag", json={"reason": "ugly"},
                  headers={**w.tokens.user("USR-REPORTER"), "X-Request-ID": "reporter-chose-this"})
    path = f"/v1/media/{w.approved['id']}"
    owner = w.client.get(path, headers=w.owner).json()["history"]
    moderator = w.client.get(path, headers=w.tokens.moderator()).json()["history"]
    assert [e["action"] for e in owner] == [e["action"] for e in moderator] == ["report.create", "media.create"]
    assert (moderator[0]["actor"], moderator[0]["reason"], moderator[0]["request_id"]) == (
        "USR-REPORTER", "ugly", "reporter-chose-this")
    assert (owner[0]["actor"], owner[0]["reason"], owner[0]["request_id"]) == (None, None, None)
    assert "USR-REPORTER" not in w.client.get(path, headers=w.owner).text
    assert w.client.get(path, headers=w.tokens.user()).json()["history"] is None
    assert w.client.get(path).json()["history"] is None
    paged = w.client.get(f"{path}/history", params={"limit": 1}, headers=w.owner).json()
    assert [e["action"] for e in paged["items"]] == ["report.create"] and paged["items"][0]["actor"] is None
    rest = w.client.get(f"{path}/history", params={"after": paged["next"]}, headers=w.owner).json()
    assert [e["action"] for e in rest["items"]] == ["media.create"] and rest["next"] is None
    assert_problem(w.client.get(f"{path}/history", headers=w.tokens.user()), 403, "history_forbidden")


def test_an_items_history_outlives_it(world: World) -> None:
    w = world
    w.client.delete(f"/v1/media/{w.pending['id']}", headers=w.owner)
    kept = _events(w, media=w.pending["public_id"])
    assert [e["action"] for e in kept] == ["media.delete", "media.create"]


def test_the_item_page_shows_the_history_to_owners_only(world: World) -> None:
    w = world
    w.client.patch(f"/v1/media/{w.approved['id']}", headers=w.owner, json={"caption": "<b>bold</b>"})
    w.client.post(f"/v1/media/{w.approved['id']}/flag", headers=w.tokens.user("USR-REPORTER"), json={})
    sign_in(w.client, w.tokens.mint("USR-OWNER"))
    page = w.client.get(f"/library/media/{w.approved['id']}").text
    assert 'id="history"' in page and "media.update" in page and "USR-OWNER" in page
    assert "USR-REPORTER" not in page and "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    stranger = TestClient(w.client.app)  # the same app, a browser of its own
    sign_in(stranger, w.tokens.mint("USR-STRANGER"))
    assert 'id="history"' not in stranger.get(f"/library/media/{w.approved['id']}").text


def test_the_columns_the_guard_watches_are_every_column_of_media_items() -> None:
    columns = {attribute.key for attribute in MediaItem.__mapper__.column_attrs}
    assert AUDITED_COLUMNS | SYSTEM_COLUMNS == columns
    assert not AUDITED_COLUMNS & SYSTEM_COLUMNS


def test_the_actions_are_listed_once_with_their_meaning() -> None:
    assert all(re.fullmatch(r"[a-z]+\.[a-z_]+", name) and len(name) <= 32 and meaning
               for name, meaning in ACTIONS.items())


def test_generated_requests_to_the_audit_routes_never_get_a_5xx(world: World) -> None:
    """Schemathesis over the operations this trail adds (the whole document runs in tests/reliability)."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", world.client.app)
    operations = [result.ok() for result in schema.get_all_operations()
                  if result.ok().path in ("/v1/media/audit", "/v1/media/{media_id}/history", "/v1/media/{media_id}")
                  and result.ok().method == "get"]
    assert len(operations) == 3
    failures: list[tuple[str, int]] = []
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        def run(case: Any) -> None:
            response = case.call(headers=world.tokens.admin())
            if response.status_code >= 500:
                failures.append((case.as_curl_command(), response.status_code))

        run()
    assert failures == []
