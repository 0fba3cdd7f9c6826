"""The library's routes and static files, added to the application in one call."""

from __future__ import annotations

import functools
import gzip
import os

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers
from starlette.responses import FileResponse, Response
from starlette.types import Scope

from mediahub.api.library.pages import analytics, duplicates, entity, home, item, moderation, signin
from mediahub.api.library.web import STATIC_DIR, STATIC_PATH

# Fixed paths before patterns, and entity last: its /library/{entity_type}/{entity_id} would take any
# other page's two-segment path (/library/media/{id}).
PAGES = (signin, home, item, moderation, duplicates, analytics, entity)


STATIC_HEADERS = {"Cache-Control": "public, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff",
                  "Vary": "Accept-Encoding"}
COMPRESSIBLE = (".js", ".css")  # text: the vendor scripts shrink to a quarter; pictures would not


def accepts_gzip(scope: Scope) -> bool:
    for coding in Headers(scope=scope).get("accept-encoding", "").split(","):
        name, _, params = coding.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


@functools.lru_cache(maxsize=64)
def _gzipped(path: str, mtime_ns: int) -> bytes:
    """A static file compressed once per version of it (the mtime is part of the key)."""
    with open(path, "rb") as handle:
        return gzip.compress(handle.read(), compresslevel=9, mtime=0)


class _VersionedStatic(StaticFiles):
    """Static files whose URLs carry their digest (`web.static_url`): a browser may keep each for a year.
    Scripts and styles go gzip-compressed to browsers that accept it."""

    def file_response(self, full_path: str | os.PathLike[str], stat_result: os.stat_result, scope: Scope,
                      status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        if (isinstance(response, FileResponse) and status_code == 200 and str(full_path).endswith(COMPRESSIBLE)
                and accepts_gzip(scope)):
            body = _gzipped(str(full_path), stat_result.st_mtime_ns)
            return Response(body, media_type=response.media_type,
                            headers={**STATIC_HEADERS, "Content-Encoding": "gzip"})
        response.headers.update(STATIC_HEADERS)
        return response


def install_library(app: FastAPI) -> None:
    # The static files first: /library/static/x.js is also an entity page's path, and the first match wins.
    app.mount(STATIC_PATH, _VersionedStatic(directory=STATIC_DIR), name="library-static")
    for module in PAGES:
        app.include_router(module.router)
