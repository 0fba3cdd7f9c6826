"""Signing in and out of the library, the session cookie, and CSRF on forms and on API calls."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.conftest import Tokens, assert_problem
from tests.api.library.conftest import FORM_CSRF, sign_in


def test_home_needs_a_session_and_goes_to_the_sign_in_form(client: TestClient) -> None:
    answer = client.get("/library", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/library/login?next=%2Flibrary"


def test_signing_in_sets_an_httponly_strict_cookie_and_goes_where_asked(client: TestClient, tokens: Tokens) -> None:
    form = client.get("/library/login?next=/library/property/P1")
    assert "Content-Security-Policy" in form.headers and "script-src 'self'" in form.headers["content-security-policy"]
    csrf = FORM_CSRF.search(form.text).group(1)
    answer = client.post("/library/login", data={"token": tokens.mint("USR-1"), "csrf_token": csrf,
                                                 "next": "/library/property/P1"}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/library/property/P1"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("mediahub_session=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Max-Age=3" in cookie  # the token's own lifetime (3600 s, less the seconds since it was minted)
    home = client.get("/library")
    assert home.status_code == 200 and "USR-1" in home.text


def test_sign_in_refuses_a_form_without_its_csrf_token(client: TestClient, tokens: Tokens) -> None:
    client.get("/library/login")
    answer = client.post("/library/login", data={"token": tokens.mint("USR-1"), "csrf_token": "0" * 64})
    assert answer.status_code == 403 and "csrf_failed" in answer.text
    assert "mediahub_session" not in answer.headers.get("set-cookie", "")


def test_a_bad_token_is_refused_with_the_reason(client: TestClient, tokens: Tokens) -> None:
    form = client.get("/library/login")
    csrf = FORM_CSRF.search(form.text).group(1)
    answer = client.post("/library/login", data={"token": tokens.mint("USR-1", ttl=-120), "csrf_token": csrf})
    assert answer.status_code == 401 and "expired" in answer.text
    assert "mediahub_session" not in answer.headers.get("set-cookie", "")


def test_a_token_too_long_for_a_cookie_is_refused_at_sign_in(client: TestClient, tokens: Tokens) -> None:
    form = client.get("/library/login")
    csrf = FORM_CSRF.search(form.text).group(1)
    grants = tuple(f"property:P{n:05d}" for n in range(300))
    answer = client.post("/library/login", data={"token": tokens.mint("USR-1", grants=grants), "csrf_token": csrf})
    assert answer.status_code == 400 and "longer than a browser keeps" in answer.text
    assert "mediahub_session" not in answer.headers.get("set-cookie", "")


def test_sign_in_never_sends_the_browser_to_another_site(client: TestClient, tokens: Tokens) -> None:
    for target in ("https://evil.example/", "//evil.example/library", "/library//evil.example", "/v1/media/1",
                   "/library\\..\\evil"):
        client.cookies.clear()
        form = client.get("/library/login")
        csrf = FORM_CSRF.search(form.text).group(1)
        answer = client.post("/library/login", data={"token": tokens.mint("USR-1"), "csrf_token": csrf,
                                                     "next": target}, follow_redirects=False)
        assert answer.headers["location"] == "/library", target


def test_signing_out_needs_the_csrf_token_and_ends_the_session(client: TestClient, tokens: Tokens) -> None:
    csrf = sign_in(client, tokens.mint("USR-1"))
    assert client.post("/library/logout", data={"csrf_token": "f" * 64}).status_code == 403
    assert client.get("/library", follow_redirects=False).status_code == 200
    answer = client.post("/library/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/library/login"
    assert client.get("/library", follow_redirects=False).status_code == 303


def test_an_expired_session_goes_back_to_the_sign_in_form(client: TestClient, tokens: Tokens) -> None:
    client.cookies.set("mediahub_session", tokens.mint("USR-1", ttl=-120))
    answer = client.get("/library", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/library/login")
    assert 'mediahub_session=""' in answer.headers["set-cookie"]


def test_the_api_takes_the_session_for_reads_and_with_its_csrf_token_for_changes(
        client: TestClient, tokens: Tokens) -> None:
    csrf = sign_in(client, tokens.mint("ADM-1", roles=("user", "admin")))
    assert client.get("/v1/media/analytics/storage").status_code == 200
    refused = client.post("/v1/media/batch/delete", json={"ids": [1]})
    assert_problem(refused, 403, "csrf_failed")
    wrong = client.post("/v1/media/batch/delete", json={"ids": [1]}, headers={"X-CSRF-Token": "0" * 64})
    assert_problem(wrong, 403, "csrf_failed")
    accepted = client.post("/v1/media/batch/delete", json={"ids": [1]}, headers={"X-CSRF-Token": csrf})
    assert accepted.status_code == 200, accepted.text


def test_a_forged_session_cookie_on_the_api_is_401_not_anonymous(client: TestClient) -> None:
    client.cookies.set("mediahub_session", "not-a-token")
    assert_problem(client.get("/v1/media/entity/property/P1"), 401, "invalid_token")


def test_a_bearer_token_wins_over_the_cookie(client: TestClient, tokens: Tokens) -> None:
    sign_in(client, tokens.mint("ADM-1", roles=("user", "admin")))
    answer = client.get("/v1/media/analytics/storage", headers=tokens.user())
    assert_problem(answer, 403)


def test_open_goes_to_an_entity_page_and_refuses_bad_names(client: TestClient, tokens: Tokens) -> None:
    sign_in(client, tokens.mint("USR-1", grants=("community:C1/amenity:A1",)))
    answer = client.get("/library/open?label=community:C1/amenity:A1", follow_redirects=False)
    assert answer.headers["location"] == "/library/amenity/A1?parent_id=C1"
    answer = client.get("/library/open?entity_type=properties&entity_id=P-9", follow_redirects=False)
    assert answer.headers["location"] == "/library/property/P-9"
    bad = client.get("/library/open?entity_type=property&entity_id=../x")
    assert bad.status_code == 422 and "text/html" in bad.headers["content-type"]


def test_static_files_are_served_with_long_caching(client: TestClient) -> None:
    answer = client.get("/library/static/library.js")
    assert answer.status_code == 200 and "immutable" in answer.headers["cache-control"]
    assert client.get("/library/static/vendor/uppy.min.js").status_code == 200
    assert client.get("/library/static/../app.py").status_code == 404


def test_scripts_go_compressed_to_browsers_that_accept_it(client: TestClient) -> None:
    plain = client.get("/library/static/vendor/uppy.min.js", headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200 and "content-encoding" not in plain.headers
    packed = client.get("/library/static/vendor/uppy.min.js", headers={"Accept-Encoding": "gzip, deflate"})
    assert packed.headers["content-encoding"] == "gzip" and packed.headers["vary"] == "Accept-Encoding"
    assert int(packed.headers["content-length"]) < len(plain.content) / 2
    assert packed.content == plain.content  # httpx undoes the gzip: the same bytes
    refused = client.get("/library/static/library.css", headers={"Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in refused.headers
