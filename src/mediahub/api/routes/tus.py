"""Resumable uploads over tus 1.0.0 at /v1/media/tus/ (core, creation, creation-with-upload,
creation-defer-length, expiration, checksum, termination, concatenation).

The protocol's headers are parsed here; `media/resumable.py` does the work. `Upload-Metadata`
carries a form upload's fields (entity_type, entity_id, entity_field, parent_id, filename,
alt_text, caption, is_primary, tags, allow_duplicate), checked with the form's own model.
The request that delivers the last byte answers with the ingest's outcome: `Media-Id` and a
`Location` of the item, or the form upload's problem; HEAD and GET keep telling it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
from email.utils import format_datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import Field
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mediahub.api.deps import ApiStateDep, MediaServiceDep, PrincipalDep, RuntimeDep, UrlsDep
from mediahub.api.errors import problem_responses
from mediahub.api.multipart import body_chunks
from mediahub.api.presenters import media_out
from mediahub.api.routes.uploads import parse_fields
from mediahub.api.schemas import MediaOut, Name, UploadFields
from mediahub.db.models import Upload
from mediahub.entities import Target
from mediahub.errors import (
    InvalidInput,
    MalformedRequest,
    MediaHubError,
    PreconditionFailed,
    RecordedError,
    RequestTimeout,
    UnsupportedType,
)
from mediahub.media.resumable import CHECKSUM_ALGORITHMS, FINAL, PARTIAL, Appending, Checksum, TusService
from mediahub.media.uploads import Outcome

PREFIX = "/v1/media/tus"
TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,creation-with-upload,creation-defer-length,expiration,checksum,termination,concatenation"
OFFSET_TYPE = "application/offset+octet-stream"
WRITE_BLOCK = 1024 * 1024  # body bytes gathered before each write to the staging store
MAX_OFFSET = 2**62
OVERRIDABLE = frozenset({"PATCH", "DELETE"})  # X-HTTP-Method-Override on a POST, for clients that cannot send them

router = APIRouter(prefix=PREFIX, tags=["resumable uploads"])
UploadId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="the id the creation's Location ends in")]


class TusFields(UploadFields):
    """`Upload-Metadata`: a form upload's fields; the target is absent only for a partial upload."""

    entity_type: Name | None = Field(None, max_length=32)
    entity_id: Name | None = Field(None, max_length=64)
    entity_field: Name | None = Field(None, max_length=32)
    parent_id: Name | None = Field(None, max_length=64)
    filename: str | None = Field(None, max_length=1024)


async def get_tus(runtime: RuntimeDep) -> TusService:
    return runtime.tus


TusDep = Annotated[TusService, Depends(get_tus)]


async def tus_version(request: Request, _caller: PrincipalDep) -> None:
    """Every request but OPTIONS names the protocol version; another one is 412 (once the caller is
    authenticated: a bad token is 401 here as everywhere)."""
    if request.headers.get("tus-resumable") != TUS_VERSION:
        raise PreconditionFailed(f"this server speaks tus {TUS_VERSION}; send Tus-Resumable: {TUS_VERSION}",
                                 code="tus_version")


Versioned = Depends(tus_version)


class TusHeadersMiddleware:
    """For the tus paths: every answer (errors included) names the protocol, and a POST with
    X-HTTP-Method-Override is the method it names."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        override = dict(scope["headers"]).get(b"x-http-method-override", b"").decode("latin-1").upper()
        if scope["method"] == "POST" and override in OVERRIDABLE:
            scope = {**scope, "method": override}

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"tus-resumable", TUS_VERSION.encode()),
                           (b"tus-version", TUS_VERSION.encode())]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def streams_its_body(scope: Scope) -> bool:
    """Creation-with-upload and PATCH bodies are streamed into the staging store under their own caps."""
    return scope["method"] in ("POST", "PATCH") and any(
        route.matches(scope)[0] is Match.FULL for route in router.routes)


def _number(request: Request, name: str) -> int | None:
    value = request.headers.get(name)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 19 or int(value) > MAX_OFFSET:
        raise MalformedRequest(f"{name} must be a non-negative integer", code="invalid_header", header=name)
    return int(value)


def _metadata(request: Request) -> dict[str, str]:
    """`Upload-Metadata`: comma-separated `key base64(value)` pairs (a value may be absent)."""
    header = request.headers.get("upload-metadata")
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in (header or "").split(","))):
        key, _, encoded = item.partition(" ")
        if not key or " " in encoded.strip() or key in pairs:
            raise MalformedRequest("Upload-Metadata is `key base64,key base64,...` with distinct keys",
                                   code="invalid_metadata")
        try:
            pairs[key] = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise MalformedRequest(f"Upload-Metadata {key[:64]!r} is not base64 of UTF-8 text",
                                   code="invalid_metadata") from None
    return pairs


def _checksum(request: Request) -> Checksum | None:
    header = request.headers.get("upload-checksum")
    if header is None:
        return None
    algorithm, _, encoded = header.strip().partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise MalformedRequest(f"checksums: {', '.join(CHECKSUM_ALGORITHMS)}", code="unsupported_checksum")
    try:
        return Checksum(algorithm, base64.b64decode(encoded.strip(), validate=True))
    except binascii.Error:
        raise MalformedRequest("Upload-Checksum is `algorithm base64(digest)`", code="invalid_checksum") from None


def _upload_url(urls: UrlsDep, public_id: str) -> str:
    return f"{urls.base_url}{PREFIX}/{public_id}"


def _upload_headers(upload: Upload, urls: UrlsDep) -> dict[str, str]:
    headers = {"Upload-Offset": str(upload.offset), "Cache-Control": "no-store",
               "Upload-Expires": format_datetime(upload.expires_at, usegmt=True)}
    if upload.length is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(upload.length)
    if upload.fields.get("metadata"):
        headers["Upload-Metadata"] = upload.fields["metadata"]
    if upload.concat == PARTIAL:
        headers["Upload-Concat"] = PARTIAL
    elif upload.concat == FINAL:
        headers["Upload-Concat"] = "final;" + " ".join(_upload_url(urls, p) for p in upload.fields.get("parts", []))
    return headers


def _outcome_headers(outcome: Outcome | None, urls: UrlsDep) -> dict[str, str]:
    if outcome is None:
        return {}
    if outcome.error is not None:
        return {"Media-Error": outcome.error.code}
    return {"Media-Id": str(outcome.media_id), "Location": f"{urls.base_url}/v1/media/{outcome.media_id}"}


def _count_outcome(api: ApiStateDep, outcome: Outcome | None) -> Outcome | None:
    """An ingest that ended counts as an upload, as a form upload does: `ok` or its code."""
    if outcome is not None:
        api.metrics.uploads.labels(outcome.error.code if outcome.error else "ok").inc()
    return outcome


def _answer(status: int, upload: Upload, outcome: Outcome | None, urls: UrlsDep,
            extra: dict[str, str] | None = None) -> Response:
    """A tus answer; a finished ingest that failed is the form upload's problem instead, with one change:
    tus clients take 409 for an offset conflict and resume (then report success), so a refusal a form
    upload answers 409 (a duplicate, a full gallery) is 422 here, with the same code."""
    if outcome is not None and outcome.error is not None:
        error = outcome.error
        if error.category == "conflict":
            raise RecordedError(error.message, category="invalid", code=error.code, **error.details)
        raise error
    return Response(status_code=status, headers={**_upload_headers(upload, urls), **_outcome_headers(outcome, urls),
                                                 **(extra or {})})


async def _append(request: Request, appending: Appending, tus: TusService,
                  read_timeout: float) -> tuple[Upload, Outcome | None]:
    """Stream the body into the upload under its lease; ingest when it was the last byte."""
    try:
        declared = _number(request, "content-length")
        if declared is not None:
            appending.expect(declared)
        pending = bytearray()
        whole = True
        try:
            async for chunk in body_chunks(request, read_timeout):
                pending += chunk
                # Every piece keeps the lease renewed; after a quiet spell the write takes it back first, or
                # stops this request at once (423) if a newer one has the upload now.
                if len(pending) >= WRITE_BLOCK or not appending.lease.arrived():
                    await run_in_threadpool(appending.write, bytes(pending))
                    pending.clear()
        except ClientDisconnect:  # keep what arrived: the client resumes from there
            whole = False
            stopped: MediaHubError = MalformedRequest("the client went away mid-upload", code="client_disconnected")
        except RequestTimeout as exc:  # the same, for a client gone quiet
            whole = False
            stopped = exc
        if pending:
            await run_in_threadpool(appending.write, bytes(pending))
        upload = await run_in_threadpool(appending.close, whole=whole)
        if not whole:
            raise stopped
        return upload, await run_in_threadpool(tus.finish_if_complete, appending)
    except BaseException:
        await run_in_threadpool(appending.abandon)
        raise
    finally:
        await run_in_threadpool(appending.end)


def _has_body(request: Request) -> bool:
    return request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers


@router.options("/", status_code=204, include_in_schema=False)
@router.options("/{upload_id}", status_code=204, include_in_schema=False)
async def discover(tus: TusDep) -> Response:
    return Response(status_code=204, headers={
        "Tus-Extension": EXTENSIONS, "Tus-Max-Size": str(tus.max_size),
        "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
    })


@router.post("/", status_code=201, dependencies=[Versioned], responses=problem_responses(400, 401, 403, 404, 409, 412,
                                                                                         413, 415, 422, 429, 460, 503),
             summary="Create a resumable upload (tus)",
             description="tus 1.0.0 creation: `Upload-Length` (or `Upload-Defer-Length: 1`), `Upload-Metadata` with "
                         "the form upload's fields (base64 values), optionally the first bytes as an "
                         "`application/offset+octet-stream` body; `Upload-Concat: partial` or `final;<urls>` to join "
                         "partial uploads. Answers 201 with the upload's `Location`.")
async def create(request: Request, principal: PrincipalDep, runtime: RuntimeDep, api: ApiStateDep,
                 media: MediaServiceDep, tus: TusDep, urls: UrlsDep) -> Response:
    concat = (request.headers.get("upload-concat") or "").strip()
    metadata = _metadata(request)
    fields = parse_fields(TusFields, metadata)
    values = {**fields.model_dump(), "metadata": request.headers.get("upload-metadata")}
    partial = concat == PARTIAL
    named = any((fields.entity_type, fields.entity_id, fields.entity_field))
    target = None if partial and not named else _target(fields)  # a partial upload may name its target
    if target is not None:
        await run_in_threadpool(media.authorise_upload, principal, target)
    await run_in_threadpool(api.limiter.hit, principal.sub)
    if concat.startswith(FINAL + ";"):
        assert target is not None
        part_ids = [url.rstrip("/").rsplit("/", 1)[-1] for url in concat[len(FINAL) + 1:].split()]
        upload, outcome = await run_in_threadpool(tus.create_final, principal, target, values, part_ids)
        location = {"Location": _upload_url(urls, upload.public_id)}
        return _answer(201, upload, _count_outcome(api, outcome), urls, location)
    if concat and not partial:
        raise MalformedRequest("Upload-Concat is `partial` or `final;<upload urls>`", code="invalid_concat")
    length = _number(request, "upload-length")
    deferred = request.headers.get("upload-defer-length")
    if (length is None) == (deferred is None) or deferred not in (None, "1"):
        raise MalformedRequest("send Upload-Length, or Upload-Defer-Length: 1", code="missing_length")
    with_bytes = length != 0 and _has_body(request)
    if with_bytes and request.headers.get("content-type") != OFFSET_TYPE:
        raise UnsupportedType(f"the upload's bytes are sent as {OFFSET_TYPE}", code="tus_content_type")
    checksum = _checksum(request) if with_bytes else None
    upload = await run_in_threadpool(tus.create, principal, target, values, length, partial=partial)
    location = {"Location": _upload_url(urls, upload.public_id)}
    if length == 0:  # complete as created: ingested (and refused as empty) now
        upload, outcome = await run_in_threadpool(tus.status, principal, upload.public_id)
        return _answer(201, upload, _count_outcome(api, outcome), urls, location)
    if not with_bytes:
        return _answer(201, upload, None, urls, location)
    try:
        appending = await run_in_threadpool(tus.start_append, principal, upload.public_id, 0, checksum=checksum)
        upload, outcome = await _append(request, appending, tus, runtime.settings.upload_read_timeout_seconds)
    except BaseException:
        # An error answer names no upload, so nobody could continue this one: it goes rather than hold one of
        # the caller's open uploads until it expires (what cannot go now, the sweeper removes).
        with contextlib.suppress(MediaHubError):
            await run_in_threadpool(tus.terminate, principal, upload.public_id)
        raise
    return _answer(201, upload, _count_outcome(api, outcome), urls, location)


def _target(fields: TusFields) -> Target:
    if not (fields.entity_type and fields.entity_id and fields.entity_field):
        raise InvalidInput("Upload-Metadata needs entity_type, entity_id and entity_field", code="missing_target")
    return Target.parse(fields.entity_type, fields.entity_id, fields.entity_field, fields.parent_id)


@router.head("/{upload_id}", dependencies=[Versioned], responses=problem_responses(401, 404, 412),
             summary="An upload's offset (tus)")
async def status(upload_id: UploadId, principal: PrincipalDep, tus: TusDep, urls: UrlsDep) -> Response:
    # Never an error for a passing fault: a tus client answers a failed HEAD by starting the upload over.
    upload, outcome = await run_in_threadpool(functools.partial(tus.status, principal, upload_id, quiet=True))
    headers = {**_upload_headers(upload, urls), **_outcome_headers(outcome, urls)}
    return Response(status_code=200, headers=headers)


@router.get("/{upload_id}", response_model=MediaOut, dependencies=[Versioned],
            responses={**problem_responses(401, 404, 409, 412, 413, 415, 422), 202: {"description": "not finished"}},
            summary="What became of an upload",
            description="The item (200) once the upload was ingested, the ingest's problem if it was refused, or 202 "
                        "with the upload's state while bytes are still arriving or being ingested.")
async def outcome(upload_id: UploadId, principal: PrincipalDep, tus: TusDep, media: MediaServiceDep,
                  urls: UrlsDep) -> Response | MediaOut:
    upload, finished = await run_in_threadpool(tus.status, principal, upload_id)
    headers = {**_upload_headers(upload, urls), **_outcome_headers(finished, urls)}
    if finished is None:
        state = "receiving" if upload.length is None or upload.offset < upload.length else "processing"
        return JSONResponse({"state": state, "offset": upload.offset, "length": upload.length}, status_code=202,
                            headers={**headers, "Retry-After": "1"})
    if finished.error is not None:
        raise finished.error
    assert finished.media_id is not None
    view = await run_in_threadpool(media.get, finished.media_id, principal)
    out = await run_in_threadpool(media_out, view, urls)
    return JSONResponse(out.model_dump(mode="json"), headers=headers)


@router.patch("/{upload_id}", status_code=204, dependencies=[Versioned],
              responses=problem_responses(400, 401, 403, 404, 408, 409, 412, 413, 415, 422, 423, 460, 503),
              summary="Append bytes at Upload-Offset (tus)")
async def append(upload_id: UploadId, request: Request, principal: PrincipalDep, runtime: RuntimeDep,
                 api: ApiStateDep, tus: TusDep, urls: UrlsDep) -> Response:
    if request.headers.get("content-type") != OFFSET_TYPE:
        raise UnsupportedType(f"PATCH bodies are {OFFSET_TYPE}", code="tus_content_type")
    offset = _number(request, "upload-offset")
    if offset is None:
        raise MalformedRequest("PATCH needs Upload-Offset", code="missing_offset")
    if not _has_body(request):
        settled = await run_in_threadpool(tus.settled, principal, upload_id, offset)
        if settled is not None:  # a client asking again for the answer it lost: the upload's outcome
            return _answer(204, *settled, urls)
    appending = await run_in_threadpool(tus.start_append, principal, upload_id, offset,
                                        checksum=_checksum(request), length=_number(request, "upload-length"))
    upload, finished = await _append(request, appending, tus, runtime.settings.upload_read_timeout_seconds)
    return _answer(204, upload, _count_outcome(api, finished), urls)


@router.delete("/{upload_id}", status_code=204, dependencies=[Versioned],
               responses=problem_responses(401, 404, 412, 423), summary="Terminate an upload (tus)")
async def terminate(upload_id: UploadId, principal: PrincipalDep, tus: TusDep) -> Response:
    await run_in_threadpool(tus.terminate, principal, upload_id)
    return Response(status_code=204)
