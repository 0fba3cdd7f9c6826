"""Who may do what: every endpoint x every kind of caller, expected statuses in one table.

The world: property 123 whose member (owner) USR-OWNER uploaded a pending item P
and an approved item A. Callers: anonymous, a signed-in stranger, the owner
(also the uploader), a moderator, an admin. Items a caller may not see are 404.
"""

from __future__ import annotations

import base64

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.api.conftest import HOPPER, AppFactory, Tokens, add_member, upload
from tests.support.taggers import FixedTagger

ROLES = ("anonymous", "user", "owner", "moderator", "admin")
Request = Callable[[dict[str, Any]], tuple[str, str, dict[str, Any]]]


def _file() -> dict[str, Any]:
    return {"files": {"file": ("a.jpg", HOPPER.read_bytes(), "image/jpeg")}}


def _batch() -> dict[str, Any]:
    return {"files": [("files", ("a.jpg", HOPPER.read_bytes(), "image/jpeg"))],
            "data": {"entity_type": "property", "entity_id": "123", "entity_field": "gallery"}}


def _url_path(url: str, signed: bool) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if signed and parts.query else "")


@dataclass(frozen=True)
class Row:
    name: str
    request: Request
    expected: tuple[int, int, int, int, int]  # in ROLES order


# fmt: off
MATRIX = [
    #   endpoint                                   request(world) -> (method, path, kwargs)                                                           anon user owner mod admin
    Row("upload property photo",    lambda w: ("POST", "/v1/media/properties/123/photos", _file()),                                                  (401, 403, 201, 403, 201)),
    Row("upload own avatar",        lambda w: ("POST", "/v1/media/users/USR-OWNER/avatar", _file()),                                                 (401, 403, 201, 403, 201)),
    Row("batch upload",             lambda w: ("POST", "/v1/media/batch/upload", _batch()),                                                          (401, 403, 201, 403, 201)),
    Row("list entity",              lambda w: ("GET", "/v1/media/entity/property/123", {}),                                                          (200, 200, 200, 200, 200)),
    Row("get pending",              lambda w: ("GET", f"/v1/media/{w['P']['id']}", {}),                                                              (404, 404, 200, 200, 200)),
    Row("get approved",             lambda w: ("GET", f"/v1/media/{w['A']['id']}", {}),                                                              (200, 200, 200, 200, 200)),
    Row("similar of pending",       lambda w: ("GET", f"/v1/media/{w['P']['id']}/similar", {}),                                                      (404, 404, 200, 200, 200)),
    Row("similar of approved",      lambda w: ("GET", f"/v1/media/{w['A']['id']}/similar", {}),                                                      (200, 200, 200, 200, 200)),
    Row("public get pending",       lambda w: ("GET", f"/v1/media/public/{w['P']['public_id']}", {}),                                                (404, 404, 404, 404, 404)),
    Row("public get approved",      lambda w: ("GET", f"/v1/media/public/{w['A']['public_id']}", {}),                                                (200, 200, 200, 200, 200)),
    Row("patch pending caption",    lambda w: ("PATCH", f"/v1/media/{w['P']['id']}", {"json": {"caption": "x"}}),                                    (401, 404, 200, 403, 200)),
    Row("patch approved caption",   lambda w: ("PATCH", f"/v1/media/{w['A']['id']}", {"json": {"caption": "x"}}),                                   (401, 403, 200, 403, 200)),
    Row("patch approved primary",   lambda w: ("PATCH", f"/v1/media/{w['A']['id']}", {"json": {"is_primary": True}}),                                (401, 403, 200, 403, 200)),
    Row("patch moderation status",  lambda w: ("PATCH", f"/v1/media/{w['P']['id']}", {"json": {"moderation_status": "approved"}}),                   (401, 404, 403, 200, 200)),
    Row("delete pending",           lambda w: ("DELETE", f"/v1/media/{w['P']['id']}", {}),                                                           (401, 404, 204, 403, 204)),
    Row("delete approved",          lambda w: ("DELETE", f"/v1/media/{w['A']['id']}", {}),                                                           (401, 403, 204, 403, 204)),
    Row("batch delete",             lambda w: ("POST", "/v1/media/batch/delete", {"json": {"ids": [w["P"]["id"]]}}),                                 (401, 200, 200, 200, 200)),
    Row("batch action",             lambda w: ("POST", "/v1/media/batch", {"json": {"action": "approve", "ids": [w["P"]["id"]]}}),            (401, 200, 200, 200, 200)),
    Row("reorder",                  lambda w: ("PUT", "/v1/media/entity/property/123/order", {"json": {"field": "gallery", "ids": [w["A"]["id"], w["P"]["id"]]}}), (401, 403, 200, 403, 200)),
    Row("storage analytics",        lambda w: ("GET", "/v1/media/analytics/storage", {}),                                                            (401, 403, 403, 200, 200)),
    Row("uploads over time",        lambda w: ("GET", "/v1/media/analytics/uploads", {}),                                                            (401, 403, 403, 200, 200)),
    Row("duplicate groups",         lambda w: ("GET", "/v1/media/duplicates", {}),                                                                   (401, 403, 403, 200, 200)),
    Row("duplicates summary",       lambda w: ("GET", "/v1/media/duplicates/summary", {}),                                                           (401, 403, 403, 200, 200)),
    # P and A are exact copies, but not look-alikes: near:A has no group (409) for those who may ask.
    Row("resolve duplicates",       lambda w: ("POST", "/v1/media/duplicates/resolve", {"json": {"group": f"near:{w['A']['id']}", "keep": w["A"]["id"], "delete": [w["P"]["id"]]}}), (401, 403, 403, 409, 409)),
    Row("keep all duplicates",      lambda w: ("POST", "/v1/media/duplicates/keep-all", {"json": {"group": f"near:{w['A']['id']}", "ids": [w["A"]["id"]]}}), (401, 403, 403, 409, 409)),
    Row("resolve all exact",        lambda w: ("POST", "/v1/media/duplicates/resolve-all-exact", {"json": {}}),                                      (401, 403, 403, 200, 200)),
    Row("moderation queue",         lambda w: ("GET", "/v1/media/moderation/queue", {}),                                                             (401, 403, 403, 200, 200)),
    Row("moderate pending",         lambda w: ("POST", f"/v1/media/{w['P']['id']}/moderation", {"json": {"status": "approved"}}),                    (401, 404, 403, 200, 200)),
    Row("moderate approved",        lambda w: ("POST", f"/v1/media/{w['A']['id']}/moderation", {"json": {"status": "rejected"}}),                    (401, 403, 403, 200, 200)),
    Row("flag pending",             lambda w: ("POST", f"/v1/media/{w['P']['id']}/flag", {"json": {}}),                                              (401, 404, 200, 200, 200)),
    Row("flag approved",            lambda w: ("POST", f"/v1/media/{w['A']['id']}/flag", {"json": {}}),                                              (401, 200, 200, 200, 200)),
    Row("dismiss reports",          lambda w: ("POST", f"/v1/media/{w['A']['id']}/reports/dismiss", {}),                                             (401, 403, 403, 200, 200)),
    Row("reports of pending",       lambda w: ("GET", f"/v1/media/{w['P']['id']}/reports", {}),                                                      (401, 404, 403, 200, 200)),
    Row("reports of approved",      lambda w: ("GET", f"/v1/media/{w['A']['id']}/reports", {}),                                                      (401, 403, 403, 200, 200)),
    Row("audit trail",              lambda w: ("GET", "/v1/media/audit", {}),                                                                        (401, 403, 403, 403, 200)),
    Row("history of pending",       lambda w: ("GET", f"/v1/media/{w['P']['id']}/history", {}),                                                      (401, 404, 200, 200, 200)),
    Row("history of approved",      lambda w: ("GET", f"/v1/media/{w['A']['id']}/history", {}),                                                      (401, 403, 200, 200, 200)),
    Row("accept tag of pending",    lambda w: ("POST", f"/v1/media/{w['P']['id']}/tags/{w['TAG_P']}/accept", {}),                                   (401, 404, 403, 200, 200)),
    Row("reject tag of approved",   lambda w: ("POST", f"/v1/media/{w['A']['id']}/tags/{w['TAG_A']}/reject", {}),                                   (401, 403, 403, 200, 200)),
    Row("correct room of pending",  lambda w: ("PUT", f"/v1/media/{w['P']['id']}/room", {"json": {"label": "bedroom"}}),                            (401, 404, 403, 200, 200)),
    Row("correct room of approved", lambda w: ("PUT", f"/v1/media/{w['A']['id']}/room", {"json": {"label": "bedroom"}}),                            (401, 403, 403, 200, 200)),
    Row("export tag decisions",     lambda w: ("GET", "/v1/media/tags/export", {}),                                                                  (401, 403, 403, 200, 200)),
    Row("put member",               lambda w: ("PUT", "/v1/media/entities/property/123/members/USR-NEW", {"json": {"role": "editor"}}),              (401, 403, 403, 403, 200)),
    Row("delete member",            lambda w: ("DELETE", "/v1/media/entities/property/123/members/USR-OWNER", {}),                                   (401, 403, 403, 403, 204)),
    Row("file of pending, unsigned", lambda w: ("GET", _url_path(w["P"]["url"], signed=False), {}),                                                  (404, 404, 200, 200, 200)),
    Row("file of pending, signed",  lambda w: ("GET", _url_path(w["P"]["url"], signed=True), {}),                                                    (200, 200, 200, 200, 200)),
    Row("file of approved",         lambda w: ("GET", _url_path(w["A"]["url"], signed=False), {}),                                                   (200, 200, 200, 200, 200)),
    Row("head of approved file",    lambda w: ("HEAD", _url_path(w["A"]["url"], signed=False), {}),                                                  (200, 200, 200, 200, 200)),
    Row("head of pending, unsigned", lambda w: ("HEAD", _url_path(w["P"]["url"], signed=False), {}),                                                  (404, 404, 200, 200, 200)),
    Row("preset of pending",        lambda w: ("GET", f"/v1/images/{w['P']['public_id']}/small", {}),                                          (404, 404, 200, 200, 200)),
    Row("preset of approved",       lambda w: ("GET", f"/v1/images/{w['A']['public_id']}/small", {}),                                          (200, 200, 200, 200, 200)),
    Row("head preset of pending",   lambda w: ("HEAD", f"/v1/images/{w['P']['public_id']}/small.jpg", {}),                                     (404, 404, 200, 200, 200)),
    Row("head preset of approved",  lambda w: ("HEAD", f"/v1/images/{w['A']['public_id']}/small.jpg", {}),                                     (200, 200, 200, 200, 200)),
    Row("transform of pending",     lambda w: ("GET", _url_path(w["TP"], signed=True), {}),                                                    (404, 404, 200, 200, 200)),
    Row("transform of approved",    lambda w: ("GET", _url_path(w["TA"], signed=True), {}),                                                    (200, 200, 200, 200, 200)),
    Row("head transform of pending", lambda w: ("HEAD", _url_path(w["TP"], signed=True), {}),                                                  (404, 404, 200, 200, 200)),
    Row("transform-url of pending", lambda w: ("POST", f"/v1/media/{w['P']['id']}/transform-url", {"json": {"width": 64}}),                    (401, 404, 200, 200, 200)),
    Row("transform-url of approved", lambda w: ("POST", f"/v1/media/{w['A']['id']}/transform-url", {"json": {"width": 64}}),                   (401, 200, 200, 200, 200)),
    Row("tus create photos",        lambda w: ("POST", "/v1/media/tus/", _tus_creation()),                                                        (401, 403, 201, 403, 201)),
    Row("tus head of owner's",      lambda w: ("HEAD", f"/v1/media/tus/{w['T']}", {"headers": TUS}),                                             (401, 404, 200, 404, 404)),
    Row("tus outcome of owner's",   lambda w: ("GET", f"/v1/media/tus/{w['T']}", {"headers": TUS}),                                              (401, 404, 202, 404, 404)),
    Row("tus patch of owner's",     lambda w: ("PATCH", f"/v1/media/tus/{w['T']}", _tus_bytes()),                                                (401, 404, 204, 404, 404)),
    Row("tus terminate owner's",    lambda w: ("DELETE", f"/v1/media/tus/{w['T']}", {"headers": TUS}),                                           (401, 404, 204, 404, 404)),
    # Direct uploads need the S3 store (this app stores locally): 404 for everyone signed in. Who may do what
    # on S3 is in test_direct_uploads.
    Row("direct multipart create",  lambda w: ("POST", "/v1/media/s3/multipart", {"json": {"filename": "a.jpg", "metadata": PHOTOS}}), (401, 404, 404, 404, 404)),
    Row("direct sign part",         lambda w: ("GET", "/v1/media/s3/multipart/x/1?key=incoming/direct/x", {}),                                   (401, 404, 404, 404, 404)),
    Row("direct sign parts",        lambda w: ("GET", "/v1/media/s3/multipart/x/batch?key=incoming/direct/x&partNumbers=1", {}),                 (401, 404, 404, 404, 404)),
    Row("direct list parts",        lambda w: ("GET", "/v1/media/s3/multipart/x?key=incoming/direct/x", {}),                                     (401, 404, 404, 404, 404)),
    Row("direct complete",          lambda w: ("POST", "/v1/media/s3/multipart/x/complete?key=incoming/direct/x", {"json": {"parts": []}}),      (401, 404, 404, 404, 404)),
    Row("direct abort",             lambda w: ("DELETE", "/v1/media/s3/multipart/x?key=incoming/direct/x", {}),                                  (401, 404, 404, 404, 404)),
    Row("direct post form",         lambda w: ("GET", "/v1/media/s3/params?filename=a.jpg", {}),                                                 (401, 404, 404, 404, 404)),
    Row("direct post complete",     lambda w: ("POST", "/v1/media/s3/params/complete?key=incoming/direct/x", {}),                                (401, 404, 404, 404, 404)),
    Row("healthz",                  lambda w: ("GET", "/healthz", {}),                                                                               (200, 200, 200, 200, 200)),
    Row("readyz",                   lambda w: ("GET", "/readyz", {}),                                                                                (200, 200, 200, 200, 200)),
    Row("metrics (no METRICS_TOKEN)", lambda w: ("GET", "/metrics", {}),                                                                             (404, 404, 404, 404, 404)),
]
# fmt: on


@pytest.fixture
def app(app_factory: AppFactory) -> FastAPI:
    """Listing photos get machine tags (from a fake classifier), for the rows of the tag review routes."""
    return app_factory(tagger=FixedTagger())


@pytest.fixture
def world(client: TestClient, tokens: Tokens) -> dict[str, Any]:
    add_member(client, tokens, "property:123", "USR-OWNER")
    pending = upload(client, "/v1/media/properties/123/photos", tokens.owner()).json()
    approved = upload(client, "/v1/media/properties/123/photos", tokens.header("USR-OWNER", verified=True)).json()
    assert (pending["moderation_status"], approved["moderation_status"]) == ("pending", "approved")
    assert client.app.state.runtime.wait_for_jobs([pending["id"], approved["id"]], timeout=60)  # type: ignore[attr-defined]
    tags = {name: client.get(f"/v1/media/{item['id']}", headers=tokens.admin()).json()["machine_tags"][0]["id"]
            for name, item in (("TAG_P", pending), ("TAG_A", approved))}
    transforms = {name: client.post(f"/v1/media/{item['id']}/transform-url", json={"width": 64},
                                    headers=tokens.owner()).json()["url"]
                  for name, item in (("TP", pending), ("TA", approved))}
    tus = client.post("/v1/media/tus/", headers={**tokens.owner(), **_tus_creation()["headers"]})
    return {"P": pending, "A": approved, **transforms, **tags, "T": tus.headers["location"].rsplit("/", 1)[-1]}


def _headers(tokens: Tokens, role: str) -> dict[str, str]:
    return getattr(tokens, role)()


TUS = {"Tus-Resumable": "1.0.0"}
PHOTOS = {"entity_type": "property", "entity_id": "123", "entity_field": "photos"}


def _tus_creation() -> dict[str, Any]:
    metadata = ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in PHOTOS.items())
    return {"headers": {**TUS, "Upload-Length": "100", "Upload-Metadata": metadata}}


def _tus_bytes() -> dict[str, Any]:
    return {"headers": {**TUS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"},
            "content": b"x" * 10}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("row", MATRIX, ids=lambda row: row.name.replace(" ", "-"))
def test_permission_matrix(client: TestClient, tokens: Tokens, world: dict[str, Any], row: Row, role: str) -> None:
    method, path, kwargs = row.request(world)
    headers = {**_headers(tokens, role), **kwargs.pop("headers", {})}
    response = client.request(method, path, headers=headers, **kwargs)
    assert response.status_code == row.expected[ROLES.index(role)], response.text


def test_every_route_is_in_the_matrix(client: TestClient, world: dict[str, Any]) -> None:
    """A new endpoint must get a row. The generated per-kind upload routes are one family
    (tagged `uploads`), covered route by route in test_uploads."""
    covered = [(method.lower(), path) for method, path, _ in (row.request(world) for row in MATRIX)]
    missing = []
    for template, operations in client.get("/openapi.json").json()["paths"].items():
        pattern = re.compile("^" + re.sub(r"\{[^}]+\}", "[^?]+", template) + r"(\?.*)?$")
        for method, operation in operations.items():
            if "uploads" in operation["tags"] and template != "/v1/media/batch/upload":
                continue
            if not any(m == method and pattern.match(path) for m, path in covered):
                missing.append((method, template))
    assert missing == []
