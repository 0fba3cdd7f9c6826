"""The library's pages through the application (TestClient): sessions, CSRF, what each viewer sees."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import Tokens

CSRF_META = re.compile(r'<meta name="csrf-token" content="([0-9a-f]{64})">')
FORM_CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


def sign_in(client: TestClient, token: str, next_path: str = "") -> str:
    """Sign `client` in through the form; the session's CSRF token (from the home page)."""
    form = client.get("/library/login")
    assert form.status_code == 200, form.text
    login_csrf = FORM_CSRF.search(form.text)
    assert login_csrf, form.text
    answer = client.post("/library/login", data={"token": token, "csrf_token": login_csrf.group(1),
                                                 "next": next_path}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    home = client.get("/library")
    assert home.status_code == 200, home.text
    meta = CSRF_META.search(home.text)
    assert meta, home.text
    return meta.group(1)


@pytest.fixture
def signed_in(client: TestClient, tokens: Tokens):  # type: ignore[no-untyped-def]
    """Sign the test client in as `sub` with `roles`; returns the session's CSRF token."""
    def sign(sub: str, roles: tuple[str, ...] = ("user",), **claims: object) -> str:
        return sign_in(client, tokens.mint(sub, roles=roles, **claims))
    return sign
