"""An app per test on SQLite and local storage in tmp_path, a TestClient, a live uvicorn, and tokens."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mediahub.api.app import create_app
from mediahub.api.auth import issue_token
from mediahub.config import Settings
from mediahub.db import migrate
from mediahub.pipeline.tagging import Tagger
from tests.support.audit_guard import AuditGuard
from tests.support.corpus import CORPUS_DIR

JWT_SECRET = "test-secret-that-is-long-enough-for-hs256!"
HOPPER = CORPUS_DIR / "images/good/jpeg_hopper.jpg"  # 128x128, small: the default upload

AppFactory = Callable[..., FastAPI]


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'api.db'}",
        "media_root": tmp_path / "media",
        "temp_dir": tmp_path / "spool",
        "jwt_secret": JWT_SECRET,
        "image_sizes": "thumbnail:150x150:crop,small:400",  # fewer variants: faster tests
        # No background rendition jobs: every variant exists when the upload answers (jobs have their own tests).
        "make_webp": False,
        "defer_slow_variants": False,
        "video_transcode": False,
        "upload_rate_limit": 0,
        # The default upload is one file sent again and again: duplicates are allowed here
        # (DEDUP_POLICY has its own tests in tests/dedup; override to test it over HTTP).
        "dedup_policy": "allow",
        # No bundled classifier: a test that wants machine tags gives its app a tagger (tests/support/taggers.py).
        "tagging_enabled": False,
        # Jobs after a short lull in uploads (JOB_LULL_SECONDS; tests/media/test_tagging.py tests the wait).
        "job_lull_seconds": 0.05,
        **overrides,
    }
    return Settings(_env_file=None, **values)


@pytest.fixture(autouse=True)
def _no_change_escapes_the_trail(audit_guard: AuditGuard) -> AuditGuard:
    """Every API test also proves that each audited change it makes commits with its audit event."""
    return audit_guard


@pytest.fixture
def app_factory(tmp_path: Path, migrated_sqlite: Callable[[Path], str]) -> AppFactory:
    """Build a migrated app; keyword arguments override settings, `tagger` is its classifier (tests/support/taggers.py)."""
    default_database = tmp_path / "api.db"

    def build(tagger: Tagger | None = None, **overrides: Any) -> FastAPI:
        settings = make_settings(tmp_path, **overrides)
        if "database_url" not in overrides and not default_database.exists():
            migrated_sqlite(default_database)  # a copy: faster than migrating
        migrate.upgrade(settings.database_url)
        return create_app(settings, tagger)

    return build


@pytest.fixture
def app(app_factory: AppFactory) -> FastAPI:
    return app_factory()


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    port: int
    app: FastAPI


@contextmanager
def serving(app: FastAPI, port: int, **options: Any) -> Iterator[LiveServer]:
    """Run uvicorn in a thread until the block ends (should_exit, then join); `options` go to its Config."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
                                           **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", port, app)
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@pytest.fixture
def live_server(app_factory: AppFactory) -> Iterator[LiveServer]:
    """The app under a real uvicorn on a free loopback port; its URLs name that port (taken from each request)."""
    port = free_port()
    with serving(app_factory(), port) as server:
        yield server


class Tokens:
    """Bearer headers for the standard callers of the permission tests."""

    def mint(self, sub: str, *, roles: tuple[str, ...] = ("user",), verified: bool = False,
             grants: tuple[str, ...] = (), ttl: int = 3600) -> str:
        settings = Settings(_env_file=None, jwt_secret=JWT_SECRET)
        return issue_token(settings, sub, roles=roles, verified=verified, grants=grants, ttl=ttl)

    def header(self, sub: str, **kwargs: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.mint(sub, **kwargs)}"}

    def anonymous(self) -> dict[str, str]:
        return {}

    def user(self, sub: str = "USR-STRANGER") -> dict[str, str]:
        return self.header(sub)

    def owner(self, sub: str = "USR-OWNER") -> dict[str, str]:
        return self.header(sub)

    def moderator(self) -> dict[str, str]:
        return self.header("MOD-1", roles=("user", "moderator"))

    def admin(self) -> dict[str, str]:
        return self.header("ADM-1", roles=("user", "admin"))


@pytest.fixture
def tokens() -> Tokens:
    return Tokens()


def upload(client: TestClient, path: str, headers: dict[str, str], file: Path = HOPPER,
           data: dict[str, str] | None = None, filename: str | None = None) -> Any:
    """POST one file as multipart to an upload route."""
    files = {"file": (filename or file.name, file.read_bytes(), "application/octet-stream")}
    return client.post(path, headers=headers, files=files, data=data or {})


def add_member(client: TestClient, tokens: Tokens, entity: str, sub: str, role: str = "owner") -> None:
    entity_type, entity_id = entity.split(":")
    response = client.put(f"/v1/media/entities/{entity_type}/{entity_id}/members/{sub}",
                          headers=tokens.admin(), json={"role": role})
    assert response.status_code == 200, response.text


def assert_problem(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"] and "detail" in body
    if code is not None:
        assert body["code"] == code, body
    return body
