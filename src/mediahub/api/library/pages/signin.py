"""Signing in with a platform JWT, and signing out."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from mediahub.api.deps import ApiStateDep
from mediahub.api.library.session import (
    CSRF_FIELD,
    LOGIN_COOKIE,
    MAX_TOKEN_CHARS,
    clear_session,
    csrf_token,
    login_secret,
    session_token,
    set_login_secret,
    set_session,
)
from mediahub.api.library.web import Viewer, ViewerDep, library_url, render, require_csrf
from mediahub.errors import MediaHubError

router = APIRouter(prefix="/library", include_in_schema=False)

NextPath = Annotated[str, Query(max_length=2000)]


def _safe_next(request: Request, target: str) -> str:
    """Where to go after signing in: a library path on this site, never another site (`//host`, `/\\host`)."""
    home = library_url(request, "")
    if target.startswith(home + "/") and not target.startswith(home + "//") and "\\" not in target:
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


@router.get("/login", summary="The sign-in form")
async def login_form(request: Request, api: ApiStateDep, viewer: ViewerDep,
                     next: NextPath = "") -> Response:  # noqa: A002
    if viewer.signed_in:
        return RedirectResponse(_safe_next(request, next), status_code=303)
    return _login_form(request, api.csrf_secret, next)


@router.post("/login", summary="Sign in with a platform JWT")
async def login(
    request: Request,
    api: ApiStateDep,
    token: Annotated[str, Form(max_length=64 * 1024)],
    csrf: Annotated[str, Form(alias=CSRF_FIELD, max_length=128)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",  # noqa: A002
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
    response = RedirectResponse(_safe_next(request, next), status_code=303)
    set_session(response, request, token, max_age=max(1, expires_at - int(time.time())))
    return response


@router.post("/logout", summary="Sign out")
async def logout(request: Request, api: ApiStateDep,
                 csrf: Annotated[str, Form(alias=CSRF_FIELD, max_length=128)] = "") -> Response:
    require_csrf(request, api.csrf_secret, session_token(request), csrf)
    response = RedirectResponse(library_url(request, "/login"), status_code=303)
    clear_session(response, request)
    return response
