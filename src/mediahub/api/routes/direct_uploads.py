"""Direct-to-S3 upload routes: the Companion endpoints Uppy's `@uppy/aws-s3` calls, under `/v1/media/s3`.

With Uppy's `endpoint: "<API>/v1/media"` and `headers: {Authorization: "Bearer <JWT>"}` the client
creates a multipart upload (its `metadata` carries the target and the form fields), signs and PUTs
its parts to the bucket, lists them to resume, completes (the answer is the item) or aborts; small
files go by a presigned POST form (`/params`), which the client completes with a call of its own
(`/params/complete`), as Uppy calls nothing after a POST. Each creation is authorised and rate-limited
as a form upload to the target; every later call is its creator's only. Only with STORAGE_TYPE=s3;
elsewhere every route answers 404 `direct_uploads_unavailable`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from mediahub.api.deps import ApiStateDep, DirectUploadsDep, MediaServiceDep, PrincipalDep, UrlsDep
from mediahub.api.errors import problem_responses
from mediahub.api.presenters import media_out
from mediahub.api.routes.uploads import counted, parse_fields
from mediahub.api.schemas import (
    DirectUploadMetadata,
    DirectUploadOut,
    MultipartCompleteIn,
    MultipartStartIn,
    MultipartStartOut,
    Name,
    PartOut,
    PresignedPostOut,
    SignedPartOut,
    SignedPartsOut,
)
from mediahub.entities import Target
from mediahub.errors import InvalidInput
from mediahub.media.access import Principal
from mediahub.media.manage import MediaService
from mediahub.storage.s3 import MAX_PARTS

router = APIRouter(prefix="/v1/media/s3", tags=["direct uploads"])

KEY_MAX = 1024  # S3's longest key
UPLOAD_ID_MAX = 1024
METADATA_PARAM = re.compile(r"^metadata\[(\w+)\]$")  # Uppy's query form of the metadata: metadata[name]=value

Key = Annotated[Name, Query(max_length=KEY_MAX, description="the key the upload's creation answered")]
UploadId = Annotated[str, Path(max_length=UPLOAD_ID_MAX, description="the multipart upload's id")]
CREATE_ERRORS = problem_responses(401, 403, 404, 413, 422, 429, 503)
LATER_ERRORS = problem_responses(401, 404, 413, 422, 423, 503)
COMPLETE_ERRORS = problem_responses(401, 404, 409, 413, 415, 422, 423, 460, 503)


async def _announced(principal: Principal, metadata: DirectUploadMetadata, filename: str | None,
                     media: MediaService, api: ApiStateDep) -> tuple[Target, dict[str, Any]]:
    """The target, authorised and counted against the rate limit as a form upload to it; the upload's fields."""
    target = Target.parse(metadata.entity_type, metadata.entity_id, metadata.entity_field,
                          metadata.parent_id or None)
    await run_in_threadpool(media.authorise_upload, principal, target)
    await run_in_threadpool(api.limiter.hit, principal.sub)
    fields = {
        "filename": metadata.filename or filename, "alt_text": metadata.alt_text, "caption": metadata.caption,
        "is_primary": metadata.is_primary, "tags": list(metadata.tags), "allow_duplicate": metadata.allow_duplicate,
        "sha256": metadata.sha256.lower() if metadata.sha256 else None,
    }
    return target, fields


async def _item(result: Any, key: str, principal: Principal, media: MediaService, urls: UrlsDep,
                response: Response) -> DirectUploadOut:
    """The completed upload's item: new (201), or made by an earlier completion (200)."""
    if isinstance(result, int):
        view = await run_in_threadpool(media.get, result, principal)
        response.status_code = 200
    else:
        view = await run_in_threadpool(media.view, principal, result)
    out = await run_in_threadpool(media_out, view, urls)
    return DirectUploadOut(**out.model_dump(), location=f"{urls.base_url}/v1/media/{out.id}", key=key)


def _part_numbers(text: str) -> list[int]:
    """Companion's `partNumbers=1,2,3`."""
    items = [item.strip() for item in text.split(",")]
    if len(items) > MAX_PARTS or not all(item.isascii() and item.isdigit() and 1 <= int(item) <= MAX_PARTS
                                         for item in items):
        raise InvalidInput(f"partNumbers: comma-separated part numbers, 1..{MAX_PARTS}", code="invalid_part_number")
    return [int(item) for item in items]


# Multipart


@router.post("/multipart", status_code=201, response_model=MultipartStartOut, responses=CREATE_ERRORS,
             summary="Start a multipart upload to the bucket",
             description="`metadata` names the target (`entity_type`, `entity_id`, `entity_field` (the route word "
                         "or the field's name), `parent_id` for nested kinds) and carries the form fields "
                         "(`alt_text`, `caption`, `is_primary`, `tags`, `allow_duplicate`, `filename`) and "
                         "optionally the file's `sha256`. Authorised and rate-limited as a form upload; at most "
                         "UPLOAD_MAX_OPEN unfinished uploads per caller (429 `too_many_uploads`).")
async def start_multipart(body: MultipartStartIn, direct: DirectUploadsDep, principal: PrincipalDep,
                          api: ApiStateDep, media: MediaServiceDep) -> MultipartStartOut:
    target, fields = await _announced(principal, body.metadata, body.filename, media, api)
    started = await run_in_threadpool(direct.start_multipart, principal, target, fields)
    assert started.upload_id is not None
    return MultipartStartOut(key=started.key, uploadId=started.upload_id)


@router.get("/multipart/{upload_id}/batch", response_model=SignedPartsOut, responses=LATER_ERRORS,
            summary="Sign several parts' uploads")
async def sign_parts(upload_id: UploadId, key: Key,
                     part_numbers: Annotated[str, Query(alias="partNumbers", max_length=6 * MAX_PARTS)],
                     direct: DirectUploadsDep, principal: PrincipalDep) -> SignedPartsOut:
    urls = await run_in_threadpool(direct.sign_parts, principal, key, upload_id, _part_numbers(part_numbers))
    return SignedPartsOut(presignedUrls={str(number): url for number, url in urls.items()})


@router.get("/multipart/{upload_id}/{part_number}", response_model=SignedPartOut, responses=LATER_ERRORS,
            summary="Sign one part's upload",
            description="A URL to PUT the part to, for DIRECT_UPLOAD_URL_SECONDS. Part numbers past what the "
                        "target's byte cap needs (5 MiB parts) are 413 `too_many_parts`.")
async def sign_part(upload_id: UploadId, part_number: Annotated[int, Path(ge=1, le=MAX_PARTS)], key: Key,
                    direct: DirectUploadsDep, principal: PrincipalDep) -> SignedPartOut:
    urls = await run_in_threadpool(direct.sign_parts, principal, key, upload_id, [part_number])
    return SignedPartOut(url=urls[part_number], expires=direct.settings.direct_upload_url_seconds)


@router.get("/multipart/{upload_id}", response_model=list[PartOut], responses=LATER_ERRORS,
            summary="The parts uploaded so far (to resume)")
async def list_parts(upload_id: UploadId, key: Key, direct: DirectUploadsDep,
                     principal: PrincipalDep) -> list[PartOut]:
    parts = await run_in_threadpool(direct.list_parts, principal, key, upload_id)
    return [PartOut(PartNumber=part.number, ETag=part.etag, Size=part.size) for part in parts]


@router.post("/multipart/{upload_id}/complete", status_code=201, response_model=DirectUploadOut,
             responses=COMPLETE_ERRORS, summary="Complete a multipart upload: the item",
             description="The named parts must be listed by S3 with these ETags, each but the last at least "
                         "5 MiB (else 422 `part_mismatch` / `part_too_small`, and the upload stays), all within "
                         "the byte cap (else 413 and the upload is refused). The file then goes through the ingest "
                         "of a form upload and gets its answers: 201 with the item, or its problem (and the bytes "
                         "are removed). Completing again answers the same outcome (200 with the item).")
async def complete_multipart(upload_id: UploadId, key: Key, body: MultipartCompleteIn, response: Response,
                             direct: DirectUploadsDep, principal: PrincipalDep, api: ApiStateDep,
                             media: MediaServiceDep, urls: UrlsDep) -> DirectUploadOut:
    parts = [(part.PartNumber, part.ETag) for part in body.parts]
    with counted(api):
        result = await run_in_threadpool(direct.complete_multipart, principal, key, upload_id, parts)
    return await _item(result, key, principal, media, urls, response)


@router.delete("/multipart/{upload_id}", responses=LATER_ERRORS, summary="Abort a multipart upload",
               description="Removes the uploaded parts and the upload; answers `{}` (Uppy reads a JSON body).")
async def abort_multipart(upload_id: UploadId, key: Key, direct: DirectUploadsDep,
                          principal: PrincipalDep) -> dict[str, Any]:
    await run_in_threadpool(direct.abort, principal, key, upload_id)
    return {}


# Presigned POST


@router.get("/params", response_model=PresignedPostOut, responses=CREATE_ERRORS,
            summary="A presigned POST form for one small file",
            description="Query: `filename`, `type` (ignored) and the metadata of `POST /multipart` as "
                        "`metadata[name]=value`. The form takes 1 byte up to the target's byte cap, to exactly "
                        "`key`, for DIRECT_UPLOAD_URL_SECONDS; then complete with `POST /params/complete?key=`.")
async def presigned_post(request: Request, direct: DirectUploadsDep, principal: PrincipalDep, api: ApiStateDep,
                         media: MediaServiceDep,
                         filename: Annotated[str | None, Query(max_length=1024)] = None) -> PresignedPostOut:
    given = {match.group(1): value for name, value in request.query_params.items()
             if (match := METADATA_PARAM.match(name))}
    metadata = parse_fields(DirectUploadMetadata, given, "query", "metadata")
    target, fields = await _announced(principal, metadata, filename, media, api)
    started = await run_in_threadpool(direct.start_post, principal, target, fields)
    assert started.post is not None
    return PresignedPostOut(url=started.post.url, fields=started.post.fields,
                            expires=direct.settings.direct_upload_url_seconds, key=started.key)


@router.post("/params/complete", status_code=201, response_model=DirectUploadOut, responses=COMPLETE_ERRORS,
             summary="Complete a presigned POST upload: the item",
             description="The file the form sent goes through the ingest of a form upload (409 "
                         "`upload_incomplete` while nothing was sent). Answers as a multipart completion.")
async def complete_post(key: Key, response: Response, direct: DirectUploadsDep, principal: PrincipalDep,
                        api: ApiStateDep, media: MediaServiceDep, urls: UrlsDep) -> DirectUploadOut:
    with counted(api):
        result = await run_in_threadpool(direct.complete_post, principal, key)
    return await _item(result, key, principal, media, urls, response)
