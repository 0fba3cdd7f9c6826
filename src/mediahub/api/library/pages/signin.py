"""Signing in with a platform JWT, and signing out."""

from __future__ import annotations

import time
from typing import Annotated
from urllib.parse import unquote

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from mediahub.api.deps import ApiState, ApiStateDep
from mediahub.api.library.session import (
    CSRF_FIELD,
    LOGIN_COOKIE,
    MAX_TOKEN_CHARS,
    SESSION_COOKIE,
    clear_session,
    csrf_token,
    login_secret,
    session_token,
    set_login_secret,
    set_session,
)
from mediahub.api.library.web import Viewer, library_url, redirect, render, require_csrf
from mediahub.errors import MediaHubError

router = APIRouter(prefix="/library", include_in_schema=False)

MAX_NEXT_CHARS = 2000  # a longer `next` is no page of the library: home instead


def _safe_next(request: Request, target: str) -> str:
    """Where to go after signing in: a plain library path on this site, else the library's home.

    Judged as a browser reads it: decoded (`%2e%2e` is `..`), and with nothing a browser drops or rewrites (tabs,
    line breaks, backslashes), no `.` or `..` segment (which would leave the library) and no empty one (`//host`)."""
    home = library_url(request, "")
    path = unquote(target.partition("?")[0].partition("#")[0])
    segments = path.removeprefix(home + "/").split("/")
    if (len(target) <= MAX_NEXT_CHARS and target.startswith(home + "/") and target.isprintable()
            and path.isprintable() and "\\" not in path and not {".", ".."} & set(segments)
            and "" not in segments[:-1]):
        return target
    return home


def _login_form(request: Request, csrf_secret: bytes, next_path: str, error: str | None = None,
                status: int = 200) -> Response:
    secret = login_secret(request)
    response = render(request, Viewer(None), "login.html", {
        "next": _safe_next(request, next_path), "error": error, "login_csrf": csrf_token(csrf_secret, secret),
    }, status)
    set_login_secret(response, request, secret)
    return response


def _has_valid_session(request: Request, api: ApiState) -> bool:
    token = session_token(request)
    if token is None:
        return False
    try:
        api.verifier.principal(token)
    except MediaHubError:
        return False
    return True


@router.get("/login", summary="The sign-in form")
async def login_form(request: Request, api: ApiStateDep, next: str = "") -> Response:  # noqa: A002
    """A valid session goes on to `next`; any other answers the form, a session the server refuses too (and it is
    cleared): the way out of a bad session must never depend on the browser dropping its cookie."""
    if _has_valid_session(request, api):
        return redirect(_safe_next(request, next))
    response = _login_form(request, api.csrf_secret, next)
    if SESSION_COOKIE in request.cookies:
        clear_session(response, request)
    return response


@router.post("/login", summary="Sign in with a platform JWT")
async def login(
    request: Request,
    api: ApiStateDep,
    token: Annotated[str, Form(max_length=64 * 1024)],
    csrf: Annotated[str, Form(alias=CSRF_FIELD, max_length=128)] = "",
    next: Annotated[str, Form(max_length=MAX_NEXT_CHARS)] = "",  # noqa: A002
) -> Response:
    require_csrf(request, api.csrf_secret, request.cookies.get(LOGIN_COOKIE), csrf)
    token = token.strip()
    if len(token) > MAX_TOKEN_CHARS:
        return _login_form(request, api.csrf_secret, next, f"That token is longer than a browser keeps in a "
                           f"cookie ({MAX_TOKEN_CHARS} characters at most); ask for one with fewer grants.", 400)
    try:
        _principal, expires_at = api.verifier.session(token)
    except MediaHubError as exc:
        return _login_form(request, api.csrf_secret, next, f"That token was not accepted: {exc.message}.", status=401)
    response = redirect(_safe_next(request, next))
    set_session(response, request, token, max_age=max(1, expires_at - int(time.time())))
    return response


@router.post("/logout", summary="Sign out")
async def logout(request: Request, api: ApiStateDep,
                 csrf: Annotated[str, Form(alias=CSRF_FIELD, max_length=128)] = "") -> Response:
    require_csrf(request, api.csrf_secret, session_token(request), csrf)
    response = redirect(library_url(request, "/login"))
    clear_session(response, request)
    return response
