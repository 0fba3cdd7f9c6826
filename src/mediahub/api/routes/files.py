"""Serving stored objects through the API (`MediaUrls` points here when the store has no URLs of its own).

Headers follow the media row: its content type (never a guess from the name),
public caching for PUBLIC_CACHE_SECONDS for unsigned reads of approved items
(bounded, not `immutable`: a rejected or deleted item's copies must expire) and
`no-store` for the rest. GET and HEAD; Range with If-Range; If-None-Match and
If-Modified-Since.
"""

from __future__ import annotations

from email.utils import format_datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse

from mediahub.api.deps import FileAccessDep, OptionalPrincipalDep, RuntimeDep
from mediahub.api.errors import problem, problem_responses
from mediahub.api.ranges import (
    RangeNotSatisfiable,
    byte_range,
    not_modified,
    range_still_valid,
)
from mediahub.media.files import ServedObject
from mediahub.media.urls import FILES_PATH
from mediahub.storage.base import PRIVATE_CACHE_CONTROL, ObjectInfo, public_cache_control

router = APIRouter(prefix=FILES_PATH, tags=["files"])

HeaderValue = Annotated[str | None, Header(max_length=2000)]


def _headers(served: ServedObject, info: ObjectInfo, public_cache_seconds: int) -> dict[str, str]:
    name = served.key.rsplit("/", 1)[-1]  # keys are [A-Za-z0-9._-]: safe inside quotes
    headers = {
        "Cache-Control": public_cache_control(public_cache_seconds) if served.public else PRIVATE_CACHE_CONTROL,
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": f'inline; filename="{name}"',
        "Accept-Ranges": "bytes",
    }
    if info.etag:
        headers["ETag"] = info.etag
    if info.last_modified:
        headers["Last-Modified"] = format_datetime(info.last_modified, usegmt=True)
    return headers


@router.head("/{key:path}", operation_id="head_file", summary="A stored object's headers",
             responses={**{s: {"description": "as for GET, without a body"} for s in (200, 206, 304)},
                        **{s: {"description": "as for GET"} for s in (403, 404, 416)}})
@router.get(
    "/{key:path}",
    operation_id="get_file",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "the object's bytes"},
               206: {"description": "the requested byte range"}, 304: {"description": "not modified"},
               **problem_responses(403, 404, 416)},
    summary="Download a stored object",
    description="Approved items' objects are public; others need the `expires` and `signature` of a signed URL, "
                "or the bearer token of a caller who may see the item. HEAD answers the same headers.",
)
async def get_file(
    key: str,
    request: Request,
    runtime: RuntimeDep,
    files: FileAccessDep,
    principal: OptionalPrincipalDep,
    expires: Annotated[int | None, Query(ge=0, le=2**40)] = None,
    signature: Annotated[str | None, Query(max_length=200)] = None,
    if_none_match: HeaderValue = None,
    if_modified_since: HeaderValue = None,
    if_range: HeaderValue = None,
    range_header: Annotated[str | None, Header(alias="range", max_length=200)] = None,
) -> Response:
    served = await run_in_threadpool(files.resolve, key, expires, signature, principal)
    info = await run_in_threadpool(runtime.storage.stat, key)
    headers = _headers(served, info, runtime.settings.public_cache_seconds)
    if not_modified(if_none_match, if_modified_since, info.etag, info.last_modified):
        return Response(status_code=304, headers=headers)
    if not range_still_valid(if_range, info.etag, info.last_modified):
        range_header = None  # the client's partial copy is of another version: send it all
    try:
        wanted = byte_range(range_header, info.size)
    except RangeNotSatisfiable:
        return problem(416, "range_not_satisfiable", f"the object has {info.size} bytes",
                       headers={"Content-Range": f"bytes */{info.size}"})
    first, last = wanted or (0, info.size - 1)
    headers["Content-Length"] = str(last - first + 1)
    status = 200
    if wanted is not None:
        status = 206
        headers["Content-Range"] = f"bytes {first}-{last}/{info.size}"
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=served.content_type)
    body = await run_in_threadpool(runtime.storage.open_range, key, first, last)
    return StreamingResponse(body, status_code=status, headers=headers, media_type=served.content_type)
