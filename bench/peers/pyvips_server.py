"""The bare reference of the delivery section: libvips' thumbnail of a file's bytes, cropped to cover, in
Starlette. `GET /{name}?w=&h=&format=webp|jpeg&q=` over the files of PYVIPS_SERVER_ROOT; no cache, no checks.
Run: `uvicorn bench.peers.pyvips_server:app`."""

from __future__ import annotations

import os
from pathlib import Path

import pyvips
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ROOT = Path(os.environ.get("PYVIPS_SERVER_ROOT", "."))
SAVERS = {"webp": (".webp", "image/webp"), "jpeg": (".jpg", "image/jpeg")}


def render(request: Request) -> Response:  # sync: Starlette runs it in its thread pool, libvips drops the GIL
    suffix, media_type = SAVERS[request.query_params["format"]]
    data = (ROOT / Path(request.path_params["name"]).name).read_bytes()
    image = pyvips.Image.thumbnail_buffer(data, int(request.query_params["w"]),
                                          height=int(request.query_params["h"]), crop="centre")
    return Response(image.write_to_buffer(suffix, Q=int(request.query_params["q"])), media_type=media_type)


app = Starlette(routes=[Route("/{name}", render)])
