"""Serving stored objects through the API (local storage's URLs point here).

Headers follow the media row: its content type (never a guess from the name),
public immutable caching for approved items and `no-store` for the rest.
"""

from __future__ import annotations

from email.utils import format_datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse

from mediahub.api.deps import FileAccessDep, RuntimeDep
from mediahub.api.errors import problem
from mediahub.api.ranges import RangeNotSatisfiable, byte_range, etag_matches
from mediahub.api.schemas import Problem
from mediahub.services.files import ServedObject
from mediahub.storage.base import ObjectInfo

router = APIRouter(prefix="/v1/media/files", tags=["files"])

PUBLIC_CACHE = "public, max-age=31536000, immutable"  # keys are never reused, so objects never change
PRIVATE_CACHE = "private, no-store"


def _headers(served: ServedObject, info: ObjectInfo) -> dict[str, str]:
    name = served.key.rsplit("/", 1)[-1]  # keys are [A-Za-z0-9._-]: safe inside quotes
    headers = {
        "Cache-Control": PUBLIC_CACHE if served.public else PRIVATE_CACHE,
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": f'inline; filename="{name}"',
        "Accept-Ranges": "bytes",
    }
    if info.etag:
        headers["ETag"] = info.etag
    if info.last_modified:
        headers["Last-Modified"] = format_datetime(info.last_modified, usegmt=True)
    return headers


@router.get(
    "/{key:path}",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "the object's bytes"},
               206: {"description": "the requested byte range"}, 304: {"description": "not modified"},
               **{s: {"model": Problem, "content": {"application/problem+json": {}}} for s in (403, 404, 416)}},
    summary="Download a stored object",
    description="Approved items' objects are public; others need the `expires` and `signature` of a signed URL.",
)
async def get_file(
    key: str,
    runtime: RuntimeDep,
    files: FileAccessDep,
    expires: Annotated[int | None, Query(ge=0, le=2**40)] = None,
    signature: Annotated[str | None, Query(max_length=200)] = None,
    if_none_match: Annotated[str | None, Header(max_length=2000)] = None,
    range_header: Annotated[str | None, Header(alias="range", max_length=200)] = None,
) -> Response:
    served = await run_in_threadpool(files.resolve, key, expires, signature)
    info = await run_in_threadpool(runtime.storage.stat, key)
    headers = _headers(served, info)
    if info.etag and etag_matches(if_none_match, info.etag):
        return Response(status_code=304, headers=headers)
    try:
        wanted = byte_range(range_header, info.size)
    except RangeNotSatisfiable:
        return problem(416, "range_not_satisfiable", f"the object has {info.size} bytes",
                       headers={"Content-Range": f"bytes */{info.size}"})
    first, last = wanted or (0, info.size - 1)
    body = await run_in_threadpool(runtime.storage.open_range, key, first, last)
    headers["Content-Length"] = str(last - first + 1)
    status = 200
    if wanted is not None:
        status = 206
        headers["Content-Range"] = f"bytes {first}-{last}/{info.size}"
    return StreamingResponse(body, status_code=status, headers=headers, media_type=served.content_type)
