"""Delivery routes: presets by name, negotiated or per format; signed transforms; minting transform URLs.

Approved items' answers are public (shared caches keep them for PUBLIC_CACHE_SECONDS, a signed
URL's no longer than it lives); other items' answers need the bearer token of someone who may see
them and are never stored by caches. A negotiated answer says `Vary: Accept`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse

from mediahub.api.deps import OptionalPrincipalDep, PrincipalDep, RuntimeDep, UrlsDep
from mediahub.api.errors import problem_responses
from mediahub.api.schemas import MAX_ID, TransformUrlOut, TransformUrlRequest
from mediahub.api.sending import SENT_CODES, HeaderValue, RangeHeader, send_stored, whole_body
from mediahub.errors import Busy, NotFound
from mediahub.media.delivery import Delivered
from mediahub.media.urls import IMAGES_PATH
from mediahub.pipeline.transform import Transform
from mediahub.runtime import Runtime
from mediahub.storage.base import PRIVATE_CACHE_CONTROL, public_cache_control

router = APIRouter(tags=["images"])

PublicId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
SENT = {**{status: {"description": text} for status, text in SENT_CODES.items()},
        200: {"content": {"image/*": {}}, "description": SENT_CODES[200]}}


def _headers(delivered: Delivered, public_cache_seconds: int) -> dict[str, str]:
    headers = {"Cache-Control": PRIVATE_CACHE_CONTROL}
    if delivered.public and delivered.provisional:
        headers["Cache-Control"] = "no-cache"
    elif delivered.public:
        lifetime = public_cache_seconds
        if delivered.expires is not None:
            lifetime = max(0, min(lifetime, delivered.expires - int(time.time())))
        headers["Cache-Control"] = public_cache_control(lifetime)
    if delivered.negotiated:
        headers["Vary"] = "Accept"
    return headers


@dataclass(frozen=True)
class Conditions:
    """What the request says about the answer it wants: formats, validators, range."""

    method: str
    accept: str | None
    if_none_match: str | None
    if_modified_since: str | None
    if_range: str | None
    range: str | None


async def _conditions(request: Request, accept: HeaderValue = None, if_none_match: HeaderValue = None,
                if_modified_since: HeaderValue = None, if_range: HeaderValue = None,
                range_header: RangeHeader = None) -> Conditions:
    return Conditions(request.method, accept, if_none_match, if_modified_since, if_range, range_header)


ConditionsDep = Annotated[Conditions, Depends(_conditions)]


async def _deliver(request: Request, runtime: Runtime, find: Callable[[], Delivered], conditions: Conditions) -> Response:
    """`find` the object and, when it will be sent whole, read it, in one trip to a worker thread."""
    def read(delivered: Delivered) -> bytes | None:
        return whole_body(runtime.storage, delivered.info, conditions.method, conditions.if_none_match,
                          conditions.if_modified_since, conditions.range)

    def work() -> tuple[Delivered, bytes | None]:
        delivered = find()
        try:
            return delivered, read(delivered)
        except NotFound:
            delivered = find()  # replaced, its object deleted, between the lookup and the read: the replacement
        try:
            return delivered, read(delivered)
        except NotFound:
            raise Busy("the image is being replaced; try again shortly", code="not_ready", retry_after=1) from None

    delivered, body = await run_in_threadpool(work)
    return await send_stored(request, runtime.storage, delivered.key, delivered.content_type,
                             _headers(delivered, runtime.settings.public_cache_seconds), known=delivered.info,
                             if_none_match=conditions.if_none_match, if_modified_since=conditions.if_modified_since,
                             if_range=conditions.if_range, range_header=conditions.range, body=body)


@router.head(IMAGES_PATH + "/{public_id}/t/{signature}/{spec}", operation_id="head_transform",
             summary="A signed transform's headers", responses=SENT)
@router.get(IMAGES_PATH + "/{public_id}/t/{signature}/{spec}", operation_id="get_transform",
            response_class=StreamingResponse, responses={**SENT, **problem_responses(403, 404, 416, 422, 503)},
            summary="A signed transform of an image",
            description="The URL comes from `POST /v1/media/{media_id}/transform-url`; any change to it answers "
                        "403. Rendered on the first request, stored, then served from the store.")
async def get_transform(
    public_id: PublicId,
    signature: Annotated[str, Path(max_length=100)],
    spec: Annotated[str, Path(max_length=200, description="`{options}.{ext}`, as signed")],
    request: Request,
    runtime: RuntimeDep,
    principal: OptionalPrincipalDep,
    # One spelling per expiry: every other (a sign, leading zeros, a fraction) would be another cache key.
    conditions: ConditionsDep,
    expires: Annotated[str | None, Query(pattern=r"^[1-9][0-9]{0,12}$")] = None,
) -> Response:
    text, _, extension = spec.rpartition(".")
    return await _deliver(request, runtime, functools.partial(runtime.delivery.transform, public_id, signature, text,
                                                              extension, expires and int(expires), conditions.accept,
                                                              principal), conditions)


@router.head(IMAGES_PATH + "/{public_id}/{preset}", operation_id="head_preset", summary="A preset's headers",
             responses=SENT)
@router.get(IMAGES_PATH + "/{public_id}/{preset}", operation_id="get_preset", response_class=StreamingResponse,
            responses={**SENT, **problem_responses(404, 416, 422, 503)},
            summary="An image in a preset size",
            description="`{preset}` is `original` or a configured size (thumbnail, small, medium, large). Without an "
                        "extension: AVIF or WebP when `Accept` names it, else the preset's JPEG (PNG with alpha), "
                        "with `Vary: Accept`; with `.jpg`, `.png`, `.webp` or `.avif`: that format. A format not "
                        "stored yet is made on the first request. Videos: their stored poster sizes and original.")
async def get_preset(
    public_id: PublicId,
    preset: Annotated[str, Path(max_length=70, pattern=r"^[a-z][a-z0-9_]{0,63}(\.[a-z0-9]{1,5})?$")],
    request: Request,
    runtime: RuntimeDep,
    principal: OptionalPrincipalDep,
    conditions: ConditionsDep,
) -> Response:
    name, _, extension = preset.partition(".")
    return await _deliver(request, runtime, functools.partial(runtime.delivery.preset, public_id, name,
                                                              extension or None, conditions.accept, principal),
                          conditions)


@router.post("/v1/media/{media_id}/transform-url", response_model=TransformUrlOut, tags=["images"],
             responses=problem_responses(401, 404, 422), summary="Sign a transform URL for an image",
             description="For a signed-in caller who may see the item. The URL may be handed to anyone; it carries an "
                         "HMAC-SHA256 over the item and the options (and the expiry, when `expires_in` is set). "
                         "Pending and rejected items' transforms still answer only their viewers.")
def create_transform_url(
    media_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    body: TransformUrlRequest,
    runtime: RuntimeDep,
    urls: UrlsDep,
    principal: PrincipalDep,
) -> TransformUrlOut:
    options = Transform(body.width, body.height, body.fit, body.gravity, body.quality or 0, round(body.dpr, 2))
    signed = runtime.delivery.transform_url(media_id, options, None if body.format == "auto" else body.format,
                                            body.expires_in, principal, urls)
    expires_at = datetime.fromtimestamp(signed.expires_at, timezone.utc) if signed.expires_at else None
    return TransformUrlOut(url=signed.url, urls=signed.urls, width=signed.width, height=signed.height,
                           format=signed.format, expires_at=expires_at)
