"""Sending a stored object: validators, conditional requests, byte ranges, HEAD; for every route that serves bytes."""

from __future__ import annotations

from dataclasses import replace
from email.utils import format_datetime
from typing import Annotated

from fastapi import Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse

from mediahub.api.errors import problem
from mediahub.api.ranges import RangeNotSatisfiable, byte_range, not_modified, range_still_valid
from mediahub.storage.base import ObjectInfo, Storage

HeaderValue = Annotated[str | None, Header(max_length=2000)]
RangeHeader = Annotated[str | None, Header(alias="range", max_length=200)]
SENT_CODES = {200: "the object's bytes", 206: "the requested byte range", 304: "not modified"}
WHOLE_READ_BYTES = 1024 * 1024  # objects up to this size are read in one call and sent in one piece


def whole_body(storage: Storage, known: ObjectInfo, method: str, if_none_match: str | None,
               if_modified_since: str | None, range_header: str | None) -> bytes | None:
    """The bytes `send_stored` will send whole, read now (in the caller's worker thread, saving a hop), or None
    when it will send a 304, a head, a range or a stream, or does not know the object from rows."""
    if (method == "HEAD" or range_header or known.last_modified is None or known.size > WHOLE_READ_BYTES
            or not_modified(if_none_match, if_modified_since, known.etag, known.last_modified)):
        return None
    return storage.get(known.key)


async def send_stored(request: Request, storage: Storage, key: str, content_type: str, headers: dict[str, str], *,
                      known: ObjectInfo | None = None, if_none_match: str | None = None,
                      if_modified_since: str | None = None, if_range: str | None = None,
                      range_header: str | None = None, body: bytes | None = None) -> Response:
    """The object `key` (or the part of it asked for, or 304), with `headers` and its validators.

    `known`: what the caller's rows record of the object. With its time (and size), the store is not asked
    before the bytes are read, and not at all for a 304; its ETag (from the content) wins over the store's.
    `body`: the whole object, read already (`whole_body`).
    """
    info = known
    if info is None or info.last_modified is None:
        stat = await run_in_threadpool(storage.stat, key)
        info = replace(stat, etag=known.etag if known is not None and known.etag else stat.etag)
    etag = info.etag
    if etag:
        headers["ETag"] = etag
    if info.last_modified:
        headers["Last-Modified"] = format_datetime(info.last_modified, usegmt=True)
    headers.setdefault("Accept-Ranges", "bytes")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    if not_modified(if_none_match, if_modified_since, etag, info.last_modified):
        return Response(status_code=304, headers=headers)
    if not range_still_valid(if_range, etag, info.last_modified):
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
        return Response(status_code=status, headers=headers, media_type=content_type)
    if wanted is None and info.size <= WHOLE_READ_BYTES:
        data = body if body is not None else await run_in_threadpool(storage.get, key)
        return Response(data, status_code=status, headers=headers, media_type=content_type)
    body = await run_in_threadpool(storage.open_range, key, first, last)
    return StreamingResponse(body, status_code=status, headers=headers, media_type=content_type)
