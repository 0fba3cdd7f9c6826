"""The library in a real browser: Playwright drives Debian's chromium against a real `mediahub serve`.

One server per test module (SQLite, local storage); each test signs in with its own tokens and uses
entities of its own, so tests share the server without seeing each other's media. Screenshots of the
pages go to test-artifacts/library/ (BROWSER_ARTIFACTS overrides it). Locally a missing chromium or
axe-core skips these tests; with CI=true it fails them.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, Page, expect

from mediahub.api.auth import issue_token
from mediahub.config import Settings
from tests.reliability.harness import JWT_SECRET, ROOT, ServerProcess, running, server_env
from tests.support.services import IN_CI

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
AXE = ROOT / "tests" / "clients" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = Path(os.environ.get("BROWSER_ARTIFACTS", ROOT / "test-artifacts" / "library"))
# Chromium as root, headless, with nothing that reaches out to Google's hosts (refused on this network).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
TIMEOUT_MS = 20_000


def _require(found: bool, what: str) -> None:
    if found:
        return
    if IN_CI:
        pytest.fail(f"{what} is missing: `make test` installs it (CI=true)")
    pytest.skip(f"{what} is missing (make test installs it)")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """pytest-playwright's launch options: Debian's chromium, not a browser Playwright would download."""
    _require(Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is not None, f"chromium ({CHROMIUM})")
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS, "headless": True}


@pytest.fixture(scope="module")
def library_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("library-server")
    env = server_env(f"sqlite:///{workdir / 'media.db'}", media_root=workdir / "media",
                     DEDUP_POLICY="reject", UPLOAD_LEASE_SECONDS="2")
    with running(env, workdir) as server:
        yield server


def mint(sub: str, *roles: str, verified: bool = False, grants: tuple[str, ...] = (), ttl: int = 3600) -> str:
    """A token the test servers accept (their JWT_SECRET)."""
    settings = Settings(_env_file=None, jwt_secret=JWT_SECRET)
    return issue_token(settings, sub, roles=roles or ("user",), verified=verified, grants=grants, ttl=ttl)


@pytest.fixture
def context(browser: Browser, library_server: ServerProcess) -> Iterator[BrowserContext]:
    context = browser.new_context(base_url=library_server.url, viewport=DESKTOP)
    context.set_default_timeout(TIMEOUT_MS)
    if AXE.exists():  # an init script, which the pages' Content-Security-Policy does not stop (a script tag it would)
        context.add_init_script(path=str(AXE))
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.script_errors = errors  # type: ignore[attr-defined]  # checked by `no_script_errors`
    return page


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def sign_in(page: Page, token: str, next_path: str = "") -> None:
    """Through the form, as a person would."""
    page.goto(f"/library/login{'?next=' + next_path if next_path else ''}")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Signed in as")).to_be_visible()


def api(server: ServerProcess, method: str, path: str, token: str, **kwargs: Any) -> requests.Response:
    """Set-up and checks through the API itself, beside the browser."""
    return requests.request(method, f"{server.url}{path}", headers={"Authorization": f"Bearer {token}"},
                            timeout=60, **kwargs)


def upload_file(server: ServerProcess, token: str, path: str, file: Path, **data: str) -> dict[str, Any]:
    with file.open("rb") as handle:
        answer = api(server, "POST", path, token, files={"file": (file.name, handle)}, data=data)
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


def screenshot(page: Page, name: str) -> Path:
    """A full-page screenshot kept as a test artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def serious_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    _require(AXE.exists(), f"axe-core ({AXE})")
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in result["violations"] if v["impact"] in ("serious", "critical")]


def no_script_errors(page: Page) -> None:
    assert page.script_errors == [], page.script_errors  # type: ignore[attr-defined]


__all__ = ["PHONE", "api", "mint", "no_script_errors", "screenshot", "serious_violations", "sign_in",
           "unique", "upload_file"]
