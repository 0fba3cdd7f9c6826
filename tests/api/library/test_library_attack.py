"""Attacks on the library's pages and sessions: each test is one attack, and what the library must do instead."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mediahub.media import duplicates
from tests.api.conftest import AppFactory, Tokens, upload
from tests.api.library.conftest import FORM_CSRF, sign_in


@pytest.mark.parametrize("cookie_path", ["/", "/library"])
def test_the_sign_in_form_answers_whatever_session_cookie_the_browser_holds(
        client: TestClient, tokens: Tokens, cookie_path: str) -> None:
    """A session the server refuses (expired, forged, signed with a rotated secret) used to make the sign-in form
    itself redirect to the sign-in form: a cookie the answer cannot clear (another path, or set for the parent
    domain by a sibling site) made the one way out of a bad session a redirect loop."""
    client.cookies.set("mediahub_session", tokens.mint("USR-1", ttl=-120), path=cookie_path)
    form = client.get("/library/login?next=/library/media/1", follow_redirects=False)
    assert form.status_code == 200, form.headers.get("location")
    assert FORM_CSRF.search(form.text) and 'name="next" value="/library/media/1"' in form.text
    assert 'mediahub_session=""' in form.headers["set-cookie"]  # the refused session is cleared where it can be
    client.cookies.clear()
    client.cookies.set("mediahub_session", "not-a-token")
    forged = client.get("/library/login", follow_redirects=False)
    assert forged.status_code == 200


def test_a_valid_session_still_skips_the_sign_in_form(client: TestClient, tokens: Tokens) -> None:
    sign_in(client, tokens.mint("USR-1"))
    answer = client.get("/library/login?next=/library/media/7", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/library/media/7"


@pytest.mark.parametrize("target", [
    "/library/../v1/media/1",  # dot segments leave the library once the browser resolves them
    "/library/..//evil.example",  # ... and give a path starting with // (a host to a proxy that merges slashes)
    "/library/%2e%2e/v1/media/1",  # browsers resolve encoded dot segments too
    "/library/.%2E/.%2e/evil",
    "/library/x/%2F%2Fevil.example",
    "/library/%5Cevil.example",  # an encoded backslash
    "/library/\t/x",  # tabs and line breaks are dropped from URLs by browsers
    "/library/%0d%0aSet-Cookie:%20a=b",
    "/library/\x00",
])
def test_sign_in_sends_the_browser_only_to_a_plain_library_path(
        client: TestClient, tokens: Tokens, target: str) -> None:
    form = client.get("/library/login", params={"next": target})
    assert form.status_code == 200
    assert 'name="next" value="/library"' in form.text, target
    csrf = FORM_CSRF.search(form.text).group(1)
    answer = client.post("/library/login", data={"token": tokens.mint("USR-1"), "csrf_token": csrf, "next": target},
                         follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/library", target
    again = client.get("/library/login", params={"next": target}, follow_redirects=False)
    assert again.headers["location"] == "/library", target


def test_an_overlong_next_shows_the_form_going_home(client: TestClient) -> None:
    """A signed-out visitor of a long library URL is sent to the sign-in form with that URL as `next`: the form
    must still answer (going home afterwards), not a 422 page without a way to sign in."""
    form = client.get("/library/login", params={"next": "/library/" + "a" * 5000})
    assert form.status_code == 200 and 'name="next" value="/library"' in form.text


@pytest.mark.parametrize("target", ["/library/media/12", "/library/property/P-1?field=gallery&after=abc%3D",
                                    "/library/amenity/A1?parent_id=C1", "/library/duplicates?kind=near&after=near:5"])
def test_sign_in_still_goes_to_the_library_page_asked_for(client: TestClient, tokens: Tokens, target: str) -> None:
    form = client.get("/library/login", params={"next": target})
    csrf = FORM_CSRF.search(form.text).group(1)
    answer = client.post("/library/login", data={"token": tokens.mint("USR-1"), "csrf_token": csrf, "next": target},
                         follow_redirects=False)
    assert answer.headers["location"] == target


def test_cookies_are_secure_when_the_site_is_served_over_https(app_factory: AppFactory, tokens: Tokens) -> None:
    """Behind a TLS proxy uvicorn does not trust (FORWARDED_ALLOW_IPS), every request looks like http and the
    session cookie, a bearer token for the whole API, went without Secure: a browser then sends it over any plain
    http request to the host, for anyone on the network to read. PUBLIC_BASE_URL says how the site is reached."""
    with TestClient(app_factory(public_base_url="https://media.example")) as client:
        form = client.get("/library/login")
        assert "Secure" in form.headers["set-cookie"]
        login_cookie = form.headers["set-cookie"].split(";")[0]
        csrf = FORM_CSRF.search(form.text).group(1)
        answer = client.post("/library/login", data={"token": tokens.mint("USR-1"), "csrf_token": csrf},
                             headers={"Cookie": login_cookie}, follow_redirects=False)
        assert answer.status_code == 303
        session = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("mediahub_session="))
        assert "Secure" in session and "HttpOnly" in session


def test_cookies_over_plain_http_stay_usable_in_development(client: TestClient) -> None:
    assert "Secure" not in client.get("/library/login").headers["set-cookie"]


def test_the_duplicates_page_shows_a_bounded_part_of_a_large_group_and_says_so(
        client: TestClient, tokens: Tokens, monkeypatch: pytest.MonkeyPatch) -> None:
    """1,900 copies of one picture made one group a 2.5 MB page of 600 px pictures whose buttons the API refused
    (more ids than one request takes): the page shows part of such a group, and how much."""
    monkeypatch.setattr(duplicates, "MEMBERS_SHOWN", 3)
    copies = [upload(client, f"/v1/media/properties/C{n}/photos", tokens.admin()).json()["id"] for n in range(5)]
    sign_in(client, tokens.mint("MOD-1", roles=("user", "moderator")))
    page = client.get("/library/duplicates")
    assert page.status_code == 200
    shown = [int(found) for found in re.findall(r'class="dup-member" data-id="(\d+)"', page.text)]
    assert shown == [copies[0], copies[1], copies[4]]
    assert "5 items" in page.text and "Showing 3 of 5" in page.text


def _behind_prefix(app: Any, prefix: str) -> Any:
    """The app as uvicorn serves it with --root-path behind a proxy that strips `prefix`: the browser's path, and
    the prefix as the root path."""
    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await app({**scope, "root_path": prefix} if scope["type"] == "http" else scope, receive, send)
    return asgi


def test_the_library_works_behind_a_path_prefix(app_factory: AppFactory, tokens: Tokens) -> None:
    """Served under a prefix (PUBLIC_BASE_URL takes one), the pages named their URLs with it but the cookies and the
    error pages did not: the sign-in form's cookie had Path=/library, so the browser never sent it back to
    /media/library/login and every sign-in failed (csrf_failed, as JSON); signed-out visitors and errors got JSON
    problems instead of pages; and the session cookie, a bearer token for the whole API, went to every path of
    the host, other applications' too."""
    with TestClient(_behind_prefix(app_factory(), "/media")) as client:
        signed_out = client.get("/media/library/moderation", follow_redirects=False)
        assert signed_out.status_code == 303
        assert signed_out.headers["location"] == "/media/library/login?next=%2Fmedia%2Flibrary%2Fmoderation"
        form = client.get("/media/library/login")
        assert "Path=/media/library;" in form.headers["set-cookie"]
        csrf = FORM_CSRF.search(form.text).group(1)
        answer = client.post("/media/library/login", follow_redirects=False, data={
            "token": tokens.mint("USR-1"), "csrf_token": csrf, "next": "/media/library/media/1"})
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == "/media/library/media/1"
        session = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("mediahub_session="))
        assert "Path=/media;" in session
        assert client.get("/media/library").status_code == 200
        missing = client.get("/media/library/media/1")
        assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in missing.headers["content-security-policy"]
        assert client.get("/media/v1/media/1").headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("sent", ["é" * 64, "\u2603", "0" * 63 + "ÿ"])
def test_a_csrf_token_that_is_not_ascii_is_refused_not_a_500(client: TestClient, tokens: Tokens, sent: str) -> None:
    """hmac.compare_digest raises TypeError on a str with a non-ASCII character: any visitor could make the sign-in
    and sign-out forms answer 500 (and log a traceback) with one such character in csrf_token."""
    client.get("/library/login")
    login = client.post("/library/login", data={"token": tokens.mint("USR-1"), "csrf_token": sent})
    assert login.status_code == 403 and "csrf_failed" in login.text
    sign_in(client, tokens.mint("USR-1"))
    logout = client.post("/library/logout", data={"csrf_token": sent})
    assert logout.status_code == 403 and "csrf_failed" in logout.text


def test_every_library_redirect_carries_the_page_headers(client: TestClient, tokens: Tokens) -> None:
    """The pages carried no-store and the CSP, but the library's redirects only sometimes: the one answering the
    sign-in form sets the session cookie (a bearer token) with no Cache-Control at all, for any cache that keeps
    303s to decide about."""
    def checked(answer: Any) -> Any:
        assert answer.status_code == 303, answer.text
        assert answer.headers["cache-control"] == "no-store", answer.headers
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
        assert answer.headers["x-content-type-options"] == "nosniff"
        return answer

    checked(client.get("/library/moderation", follow_redirects=False))  # signed out: to the sign-in form
    form = client.get("/library/login")
    csrf = FORM_CSRF.search(form.text).group(1)
    signed = checked(client.post("/library/login", data={"token": tokens.mint("ADM-1", roles=("user", "admin")),
                                                           "csrf_token": csrf}, follow_redirects=False))
    assert "mediahub_session=" in signed.headers["set-cookie"]
    checked(client.get("/library/login", follow_redirects=False))  # signed in already
    checked(client.get("/library/open?label=property:P1", follow_redirects=False))
    session_csrf = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', client.get("/library").text).group(1)
    checked(client.post("/library/logout", data={"csrf_token": session_csrf}, follow_redirects=False))
