"""The library's session: a platform JWT in an HttpOnly, SameSite=Strict cookie, and CSRF tokens.

The cookie holds the token the user signed in with, so the session ends when the token does and a
session grants exactly what the token grants, through the same verifier as the API. A CSRF token is
an HMAC of the session cookie (a signed double submit): a page embeds it, and every state-changing
request, a form post or a script's call to the API, sends it back. Before sign-in, a random cookie of
its own protects the sign-in form (login CSRF).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from starlette.requests import HTTPConnection
from starlette.responses import Response

SESSION_COOKIE = "mediahub_session"
LOGIN_COOKIE = "mediahub_login"  # the sign-in form's own CSRF secret, before there is a session
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Browsers keep a cookie of at most 4096 bytes (name, value and attributes) and drop a longer one without a
# word: a token that would not fit is refused at sign-in instead.
MAX_TOKEN_CHARS = 3800
LOGIN_COOKIE_SECONDS = 3600


def session_token(request: HTTPConnection) -> str | None:
    """The JWT the session cookie holds, or None."""
    value = request.cookies.get(SESSION_COOKIE)
    return value if value and len(value) <= MAX_TOKEN_CHARS else None


def csrf_token(secret: bytes, session_value: str) -> str:
    """The CSRF token bound to one session (or to one sign-in form's cookie)."""
    return hmac.new(secret, b"mediahub-library-csrf\0" + session_value.encode(), hashlib.sha256).hexdigest()


def csrf_matches(secret: bytes, session_value: str | None, sent: str | None) -> bool:
    if not session_value or not sent:
        return False
    # As bytes: compare_digest refuses a str with a non-ASCII character (TypeError), which anyone can send.
    return hmac.compare_digest(csrf_token(secret, session_value).encode(), sent.encode("utf-8", "surrogatepass"))


def _secure(request: HTTPConnection) -> bool:
    """Over https, or on a site served over https (PUBLIC_BASE_URL): behind a TLS proxy uvicorn does not trust
    (FORWARDED_ALLOW_IPS) the request looks like http, and a cookie without Secure would also go out over plain http."""
    return request.url.scheme == "https" or request.app.state.api.https


def _session_path(request: HTTPConnection) -> str:
    """The application's root path (the library and the API under it), not the whole host."""
    return request.scope.get("root_path") or "/"


def _login_path(request: HTTPConnection) -> str:
    return f"{request.scope.get('root_path', '')}/library"


def set_session(response: Response, request: HTTPConnection, token: str, max_age: int) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=max_age, path=_session_path(request), httponly=True,
                        samesite="strict", secure=_secure(request))
    response.delete_cookie(LOGIN_COOKIE, path=_login_path(request))


def clear_session(response: Response, request: HTTPConnection) -> None:
    response.delete_cookie(SESSION_COOKIE, path=_session_path(request), httponly=True, samesite="strict",
                           secure=_secure(request))


def login_secret(request: HTTPConnection) -> str:
    """The sign-in form's cookie value: the one the browser holds, else a new one (`set_login_secret`)."""
    value = request.cookies.get(LOGIN_COOKIE)
    return value if value and 32 <= len(value) <= 64 else secrets.token_urlsafe(32)


def set_login_secret(response: Response, request: HTTPConnection, value: str) -> None:
    response.set_cookie(LOGIN_COOKIE, value, max_age=LOGIN_COOKIE_SECONDS, path=_login_path(request), httponly=True,
                        samesite="strict", secure=_secure(request))
