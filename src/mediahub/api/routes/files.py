"""Serving stored objects through the API (`MediaUrls` points here when the store has no URLs of its own).

Headers follow the media row: its content type (never a guess from the name),
public caching for PUBLIC_CACHE_SECONDS for unsigned reads of approved items
(bounded, not `immutable`: a rejected or deleted item's copies must expire) and
`no-store` for the rest. GET and HEAD; Range with If-Range; If-None-Match and
If-Modified-Since.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse

from mediahub.api.deps import FileAccessDep, OptionalPrincipalDep, RuntimeDep
from mediahub.api.errors import problem_responses
from mediahub.api.sending import SENT_CODES, HeaderValue, RangeHeader, send_stored
from mediahub.media.files import ServedObject
from mediahub.media.urls import FILES_PATH
from mediahub.storage.base import PRIVATE_CACHE_CONTROL, public_cache_control

router = APIRouter(prefix=FILES_PATH, tags=["files"])


def _headers(served: ServedObject, public_cache_seconds: int) -> dict[str, str]:
    name = served.key.rsplit("/", 1)[-1]  # keys are [A-Za-z0-9._-]: safe inside quotes
    return {
        "Cache-Control": public_cache_control(public_cache_seconds) if served.public else PRIVATE_CACHE_CONTROL,
        "Content-Disposition": f'inline; filename="{name}"',
    }


@router.head("/{key:path}", operation_id="head_file", summary="A stored object's headers",
             responses={**{s: {"description": "as for GET, without a body"} for s in (200, 206, 304)},
                        **{s: {"description": "as for GET"} for s in (403, 404, 416)}})
@router.get(
    "/{key:path}",
    operation_id="get_file",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}, "description": SENT_CODES[200]},
               206: {"description": SENT_CODES[206]}, 304: {"description": SENT_CODES[304]},
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
    range_header: RangeHeader = None,
) -> Response:
    served = await run_in_threadpool(files.resolve, key, expires, signature, principal)
    return await send_stored(request, runtime.storage, key, served.content_type,
                             _headers(served, runtime.settings.public_cache_seconds),
                             if_none_match=if_none_match, if_modified_since=if_modified_since, if_range=if_range,
                             range_header=range_header)
