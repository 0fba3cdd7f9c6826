"""The library's routes and static files, added to the application in one call."""

from __future__ import annotations

import os

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

from mediahub.api.library.pages import analytics, duplicates, entity, home, item, moderation, signin
from mediahub.api.library.web import STATIC_DIR, STATIC_PATH

# Fixed paths before patterns, and entity last: its /library/{entity_type}/{entity_id} would take any
# other page's two-segment path (/library/media/{id}).
PAGES = (signin, home, item, moderation, duplicates, analytics, entity)


class _VersionedStatic(StaticFiles):
    """Static files whose URLs carry their digest (`web.static_url`): a browser may keep each for a year."""

    def file_response(self, full_path: str | os.PathLike[str], stat_result: os.stat_result, scope: Scope,
                      status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def install_library(app: FastAPI) -> None:
    # The static files first: /library/static/x.js is also an entity page's path, and the first match wins.
    app.mount(STATIC_PATH, _VersionedStatic(directory=STATIC_DIR), name="library-static")
    for module in PAGES:
        app.include_router(module.router)
