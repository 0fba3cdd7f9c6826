"""Lets no one in: bad tokens on every authenticated operation, every upload route refuses
strangers, ids and keys cannot leave their prefix, secrets never reach a log.

Extends tests/api (test_auth probes one endpoint, test_permissions covers every route but
two of the generated upload family, test_files the signatures).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import requests
from fastapi.testclient import TestClient

from mediahub.api.app import create_app
from mediahub.db import migrate
from mediahub.entities import KINDS, get_kind
from tests.api.conftest import make_settings
from tests.reliability.harness import (
    JWT_SECRET,
    admin,
    bearer,
    multipart,
    raw_request,
    running,
    server_env,
    tally,
    token,
    upload_head,
)
from tests.support.corpus import CORPUS_DIR

HOPPER = CORPUS_DIR / "images/good/jpeg_hopper.jpg"


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _bad_tokens() -> dict[str, str]:
    now = int(time.time())
    good = {"sub": "ADM-1", "roles": ["user", "admin"], "exp": now + 600}
    return {
        "expired": jwt.encode({**good, "exp": now - 3600}, JWT_SECRET, algorithm="HS256"),
        "no-exp": jwt.encode({k: v for k, v in good.items() if k != "exp"}, JWT_SECRET, algorithm="HS256"),
        "bad-signature": jwt.encode(good, JWT_SECRET + "x", algorithm="HS256"),
        "alg-none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(good)}.",
        "hs512-not-configured": jwt.encode(good, JWT_SECRET, algorithm="HS512"),
        "garbage": "a.b.c",
    }


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(tmp_path, jwt_secret=JWT_SECRET, dedup_policy="allow")
    migrate.upgrade(settings.database_url)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "123", path).replace("{key:path}", "users/a.jpg")


def _secured_operations(client: TestClient) -> list[tuple[str, str]]:
    spec = client.get("/openapi.json").json()
    return [(method.upper(), _concrete(path)) for path, operations in spec["paths"].items()
            for method, operation in operations.items() if operation.get("security")]


def test_every_bad_token_is_401_on_every_authenticated_operation(client: TestClient) -> None:
    operations = _secured_operations(client)
    assert len(operations) >= 20
    failures = []
    for name, bad in _bad_tokens().items():
        for method, path in operations:
            response = client.request(method, path, headers={"Authorization": f"Bearer {bad}"})
            ok = response.status_code == 401 and bad not in response.text and (
                method == "HEAD" or response.json()["code"] == "invalid_token")  # HEAD answers carry no body
            tally(matrix_checked=1, matrix_failed=int(not ok))
            if not ok:
                failures.append((name, method, path, response.status_code))
    assert failures == []


UPLOAD_ROUTES = [(kind, spec) for kind in KINDS for spec in kind.fields]


def _route(kind, spec) -> str:
    path = f"/v1/media/{kind.plural}/123/{spec.route}"
    if kind.parent:
        parent = get_kind(kind.parent)
        path = f"/v1/media/{parent.plural}/77/{kind.plural}/123/{spec.route}"
    return path


def test_every_upload_route_refuses_anonymous_strangers_and_other_grants(client: TestClient) -> None:
    callers = {
        "anonymous": ({}, 401),
        "stranger": (bearer("USR-STRANGER"), 403),
        "grant-elsewhere": (None, 403),  # a grant for entity 999 of the same kind
        "moderator": (bearer("MOD-1", roles=("user", "moderator")), 403),
    }
    failures = []
    for kind, spec in UPLOAD_ROUTES:
        for caller, (headers, expected) in callers.items():
            if headers is None:
                headers = bearer("USR-9", grants=(f"{kind.name}:999",))
            response = client.post(_route(kind, spec), headers=headers,
                                   files={"file": ("a.jpg", HOPPER.read_bytes(), "image/jpeg")})
            ok = response.status_code == expected
            tally(matrix_checked=1, matrix_failed=int(not ok))
            if not ok:
                failures.append((caller, _route(kind, spec), response.status_code))
    assert failures == []
    assert client.get("/v1/media/entity/property/123").json()["total"] == 0


HOSTILE_IDS = ["..", "%2e%2e", "%2E%2E%2F..", "a%2Fb", "%2Fetc", "..%5C..", "123%0A", "123%0D%0A", "123%00",
               "%20123", ".hidden", "123%2F..%2F..", "~root", "a" * 65]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("security")
    env = server_env(f"sqlite:///{work / 's.db'}", media_root=work / "media", temp_dir=work / "spool")
    with running(env, work / "server") as server:
        yield server


@pytest.mark.parametrize("entity_id", HOSTILE_IDS)
def test_entity_ids_cannot_escape_their_prefix_on_upload_routes(live, entity_id: str) -> None:
    """Sent raw (no client normalises the path): 4xx, and nothing is stored anywhere."""
    body = multipart([("file", HOPPER.read_bytes(), "a.jpg")])
    media = Path(live.env["MEDIA_ROOT"])
    before = _files(media)
    statuses = []
    for path in (f"/v1/media/properties/{entity_id}/photos", f"/v1/media/communities/{entity_id}/amenities/1/photos",
                 f"/v1/media/communities/1/amenities/{entity_id}/photos"):
        response = raw_request(live.port, upload_head(path, admin(), len(body)), body)
        statuses.append(response.status)
        tally(matrix_checked=1, matrix_failed=int(not 400 <= response.status < 500))
    assert all(400 <= s < 500 for s in statuses), statuses
    assert _files(media) == before, "a refused upload left files behind"


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


@pytest.mark.parametrize("entity_id", ["../x", "a/b", "123\n", "/etc", "..", "123\x00"])
def test_entity_ids_cannot_escape_their_prefix_on_batch_upload(client: TestClient, entity_id: str) -> None:
    data = {"entity_type": "property", "entity_id": entity_id, "entity_field": "gallery"}
    files = [("files", ("a.jpg", HOPPER.read_bytes(), "image/jpeg"))]
    response = client.post("/v1/media/batch/upload", headers=admin(), files=files, data=data)
    tally(matrix_checked=1, matrix_failed=int(not 400 <= response.status_code < 500))
    assert 400 <= response.status_code < 500, response.text


@pytest.mark.parametrize("entity_id", ["123%0A", "123%0D", "..", "%2e%2e"])
def test_entity_ids_with_control_characters_are_refused_everywhere(client: TestClient, entity_id: str) -> None:
    """A trailing newline once matched `^...$` and reached memberships and listings."""
    responses = [
        client.put(f"/v1/media/entities/property/{entity_id}/members/USR-X", headers=admin(), json={"role": "owner"}),
        client.get(f"/v1/media/entity/property/{entity_id}"),
    ]
    for response in responses:
        tally(matrix_checked=1, matrix_failed=int(response.status_code not in (404, 405, 422)))
        assert response.status_code in (404, 405, 422), response.text


FILE_KEYS = ["..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "/etc/passwd", "users/..%2f..%2fsecret.jpg",
             "%2e%2e/%2e%2e/etc/passwd", "users%5C..%5C..%5Csecret.jpg", "users/a.jpg%0A", "users/a.jpg%00",
             "users/%2e%2e/x.jpg", "C:%5Cwindows%5Cwin.ini"]


@pytest.mark.parametrize("key", FILE_KEYS)
def test_file_keys_cannot_escape_the_store(live, key: str) -> None:
    response = raw_request(live.port, f"GET /v1/media/files/{key} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    tally(matrix_checked=1, matrix_failed=int(response.status not in (400, 404)))
    assert response.status in (400, 404), response.head
    assert b"root:" not in response.body


def test_batch_upload_is_rate_limited_too(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, jwt_secret=JWT_SECRET, upload_rate_limit=2, dedup_policy="allow")
    migrate.upgrade(settings.database_url)
    data = {"entity_type": "property", "entity_id": "123", "entity_field": "gallery"}
    with TestClient(create_app(settings)) as client:
        statuses = []
        for _ in range(3):
            files = [("files", ("a.jpg", HOPPER.read_bytes(), "image/jpeg"))]
            response = client.post("/v1/media/batch/upload", headers=admin(), files=files, data=data)
            statuses.append(response.status_code)
        tally(matrix_checked=1, matrix_failed=int(statuses != [201, 201, 429]))
        assert statuses == [201, 201, 429]
        assert int(response.headers["retry-after"]) >= 1 and response.json()["code"] == "rate_limited"


def test_tokens_and_the_jwt_secret_never_reach_a_log(live, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The server process' own log (uvicorn, access log, warnings) and, in process, every logger at DEBUG."""
    good = token("ADM-1", roles=("user", "admin"))
    secrets = [JWT_SECRET, good, *_bad_tokens().values()]
    # Through the live server: bad tokens, a good upload, a refused upload, a 404.
    for bad in _bad_tokens().values():
        requests.get(f"{live.url}/v1/media/moderation/queue", headers={"Authorization": f"Bearer {bad}"}, timeout=30)
    headers = {"Authorization": f"Bearer {good}"}
    assert requests.post(f"{live.url}/v1/media/properties/123/photos", headers=headers, timeout=60,
                         files={"file": ("a.jpg", HOPPER.read_bytes())}).status_code == 201
    requests.post(f"{live.url}/v1/media/properties/123/photos", headers=headers, timeout=60,
                  files={"file": ("a.svg", b"<svg/>")})
    requests.get(f"{live.url}/v1/media/999999", headers=headers, timeout=30)
    server_log = live.log()
    assert "POST /v1/media/properties/123/photos" in server_log  # the log was really written

    # In process, with every logger at DEBUG.
    caplog.set_level(logging.DEBUG)
    settings = make_settings(tmp_path, jwt_secret=JWT_SECRET, dedup_policy="allow")
    migrate.upgrade(settings.database_url)
    with TestClient(create_app(settings)) as client:
        for bad in _bad_tokens().values():
            client.get("/v1/media/analytics/storage", headers={"Authorization": f"Bearer {bad}"})
        client.post("/v1/media/properties/123/photos", headers=headers,
                    files={"file": ("a.jpg", HOPPER.read_bytes(), "image/jpeg")})
    in_process = "\n".join(record.getMessage() + str(record.exc_info or "") for record in caplog.records)
    assert caplog.records
    leaked = [s[:20] for s in secrets if s in server_log or s in in_process]
    tally(matrix_checked=len(secrets), matrix_failed=len(leaked))
    assert leaked == []
