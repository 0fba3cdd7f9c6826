"""What every library page shares: templates, the signed-in viewer, CSRF checks on forms, error pages.

Pages are rendered on the server; their scripts call the public API with the session cookie and the
CSRF token (`api/deps.py`), so the library can do nothing the API would refuse the same person.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from mediahub.api.deps import ApiStateDep
from mediahub.api.library.session import (
    CSRF_FIELD,
    CSRF_HEADER,
    clear_session,
    csrf_matches,
    csrf_token,
    session_token,
)
from mediahub.entities import KINDS
from mediahub.errors import Forbidden, Unauthenticated
from mediahub.media import access
from mediahub.media.access import Principal

LIBRARY_PATH = "/library"
STATIC_PATH = f"{LIBRARY_PATH}/static"
STATIC_DIR = Path(__file__).resolve().parent / "static"
TEMPLATES = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")  # autoescapes .html

# Scripts and styles come from this server only (no inline script runs); images and videos may come from
# the store itself (presigned S3 URLs, a CDN). Nothing may frame a page, nor post a form elsewhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src * data: blob:; "
    "media-src * blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cache-Control": "no-store",  # pages show what one viewer may see
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@dataclass(frozen=True)
class Viewer:
    """Who looks at a page: a signed-in principal with the CSRF token of their session, or a stranger."""

    principal: Principal | None
    csrf: str | None = None

    @property
    def signed_in(self) -> bool:
        return self.principal is not None

    @property
    def is_moderator(self) -> bool:
        return access.moderates(self.principal)


async def get_viewer(request: Request, api: ApiStateDep) -> Viewer:
    """The session's principal; an expired or forged session is 401 (the error page signs the browser out)."""
    token = session_token(request)
    if token is None:
        return Viewer(None)
    return Viewer(api.verifier.principal(token), csrf_token(api.csrf_secret, token))


async def get_signed_in_viewer(viewer: Annotated[Viewer, Depends(get_viewer)]) -> Viewer:
    if viewer.principal is None:
        raise Unauthenticated("sign in to see this page", code="missing_session")
    return viewer


ViewerDep = Annotated[Viewer, Depends(get_viewer)]
SignedInViewerDep = Annotated[Viewer, Depends(get_signed_in_viewer)]


def require_csrf(request: Request, secret: bytes, session_value: str | None, sent: str | None) -> None:
    """A form post (or a script's call) must send back the token bound to the session it comes with."""
    if not csrf_matches(secret, session_value, sent or request.headers.get(CSRF_HEADER)):
        raise Forbidden("the form has expired or did not come from this site; reload the page and try again",
                        code="csrf_failed")


@functools.cache
def _static_version(name: str) -> str:
    """A digest of a static file, so its URL changes when it does and browsers may keep it long."""
    return hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]


def static_url(request: Request, name: str) -> str:
    return f"{request.scope.get('root_path', '')}{STATIC_PATH}/{name}?v={_static_version(name)}"


def library_url(request: Request, path: str = "") -> str:
    """A library path under the root path the application is served at."""
    return f"{request.scope.get('root_path', '')}{LIBRARY_PATH}{path}"


def api_path(request: Request, path: str) -> str:
    """An API path under the root path the application is served at (for page scripts to call)."""
    return f"{request.scope.get('root_path', '')}{path}"


def render(request: Request, viewer: Viewer, template: str, context: dict[str, Any] | None = None,
           status: int = 200) -> HTMLResponse:
    page = {"request": request, "viewer": viewer, "csrf_field": CSRF_FIELD, "kinds": KINDS,
            "static": functools.partial(static_url, request), "lib": functools.partial(library_url, request),
            **(context or {})}
    return TEMPLATES.TemplateResponse(request, template, page, status_code=status, headers=PAGE_HEADERS)


def redirect(url: str) -> RedirectResponse:
    """A library redirect (303), with the pages' headers: the one after signing in sets the session cookie."""
    return RedirectResponse(url, status_code=303, headers=PAGE_HEADERS)


def is_library_page(request: Request) -> bool:
    path, root = request.url.path, request.scope.get("root_path", "")
    if root and path.startswith(f"{root}/"):
        path = path[len(root):]  # the path within the application
    return (path == LIBRARY_PATH or path.startswith(f"{LIBRARY_PATH}/")) and not path.startswith(f"{STATIC_PATH}/")


def error_page(request: Request, status: int, code: str, detail: str) -> Response | None:
    """Errors of library pages as pages: a missing or expired session goes to the sign-in form."""
    if not is_library_page(request):
        return None
    if status == 401:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        response: Response = redirect(f"{library_url(request, '/login')}?next={quote(target, safe='')}")
        clear_session(response, request)
        return response
    viewer = Viewer(None)  # the error page shows no one's data
    return render(request, viewer, "error.html", {"status": status, "code": code, "detail": detail}, status)
