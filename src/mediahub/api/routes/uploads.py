"""Upload routes: one per media field of the kind table, plus batch upload.

The per-field routes are generated from `entities.KINDS` in a loop; each
authorises before reading the body, streams it through `api.uploads` with the
field's byte cap, and ingests in a worker thread so the event loop stays free.
(No `from __future__ import annotations`: FastAPI reads the generated
signatures' annotations as real objects.)
"""

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.routing import Match
from starlette.types import Scope

from mediahub.api.deps import ApiStateDep, MediaServiceDep, PrincipalDep, RuntimeDep, SettingsDep, UrlsDep
from mediahub.api.errors import PROBLEM_TYPE, problem, problem_responses, public_detail
from mediahub.api.multipart import FORM_ALLOWANCE, FormLimits, ReceivedFile, ReceivedForm, read_multipart
from mediahub.api.presenters import media_out
from mediahub.api.ratelimit import RateLimiter
from mediahub.api.schemas import (
    BatchFailedProblem,
    BatchFileError,
    BatchFileResult,
    BatchUploadFields,
    BatchUploadOut,
    MediaOut,
    UploadFields,
)
from mediahub.entities import KINDS, EntityKind, FieldSpec, Target, get_kind
from mediahub.errors import InvalidInput, MediaHubError
from mediahub.media.access import Principal
from mediahub.media.ingest import UploadRequest

router = APIRouter(prefix="/v1/media", tags=["uploads"])
Fields = TypeVar("Fields", bound=BaseModel)

ERRORS = problem_responses(400, 401, 403, 409, 413, 415, 422, 429, 503)


def _form_schema(file_field: str, many: bool, extra: dict[str, Any] | None = None,
                 optional: dict[str, Any] | None = None) -> dict[str, Any]:
    """The multipart body for the OpenAPI document (the route reads the stream itself)."""
    binary = {"type": "string", "format": "binary"}
    properties: dict[str, Any] = {
        file_field: {"type": "array", "items": binary} if many else binary,
        **(extra or {}),
        **(optional or {}),
        "alt_text": {"type": "string", "maxLength": 500, "example": "My profile photo"},
        "caption": {"type": "string"},
        "is_primary": {"type": "boolean", "default": False},
        "allow_duplicate": {"type": "boolean", "default": False,
                            "description": "store even when the same picture is already in scope"},
        "tags": {"type": "string", "description": "comma-separated or a JSON list", "example": "kitchen,sunny"},
    }
    schema = {"type": "object", "required": [file_field, *(extra or {})], "properties": properties}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


def parse_fields(model: type[Fields], fields: dict[str, Any], *where: str) -> Fields:
    """Text fields read by the route itself, validated as FastAPI validates a body: 422 `validation_error`
    with each error's place (`where`, default the body)."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        raise RequestValidationError([{**err, "loc": (*(where or ("body",)), *err["loc"])}
                                      for err in errors]) from None


@contextmanager
def counted(api: ApiStateDep) -> Iterator[None]:
    """Count an upload attempt by its result: `ok` or the error code."""
    try:
        yield
    except MediaHubError as exc:
        api.metrics.uploads.labels(exc.code).inc()
        raise
    api.metrics.uploads.labels("ok").inc()


def _upload_request(target: Target, principal: Principal, fields: UploadFields,
                    received: ReceivedFile) -> UploadRequest:
    return UploadRequest(
        target,
        uploaded_by=principal.sub,
        verified=principal.verified,
        is_primary=fields.is_primary,
        alt_text=fields.alt_text,
        caption=fields.caption,
        tags=list(fields.tags),
        filename=received.filename,
        allow_duplicate=fields.allow_duplicate,
        principal=principal,
    )


def _only_file(form: ReceivedForm) -> ReceivedFile:
    if not form.files:
        raise InvalidInput("the form has no 'file' part", code="missing_file")
    return form.files[0]


async def _upload_one(request: Request, principal: Principal, runtime: RuntimeDep, api: ApiStateDep,
                      media: MediaServiceDep, urls: UrlsDep, kind: EntityKind, spec: FieldSpec,
                      ids: dict[str, str]) -> MediaOut:
    with counted(api):
        parent_id = ids[kind.parent_param] if kind.parent_param else None
        target = Target.parse(kind.name, ids[kind.id_param], spec.name, parent_id)
        await run_in_threadpool(media.authorise_upload, principal, target)
        await run_in_threadpool(api.limiter.hit, principal.sub)
        cap = runtime.ingest.size_cap(target)

        async def file_cap(_fields: dict[str, str]) -> int:
            return cap

        limits = FormLimits("file", 1, cap + FORM_ALLOWANCE, file_cap, False, runtime.settings.temp_dir,
                            runtime.settings.upload_read_timeout_seconds)
        form = await read_multipart(request, limits)
        try:
            fields = parse_fields(UploadFields, form.fields)
            received = _only_file(form)
            upload = _upload_request(target, principal, fields, received)
            item = await run_in_threadpool(runtime.ingest.ingest_spooled, received.spooled, upload)
        finally:
            form.discard()
    view = await run_in_threadpool(media.view, principal, item)
    return await run_in_threadpool(media_out, view, urls)


def _route_path(kind: EntityKind, spec: FieldSpec) -> str:
    own = f"/{kind.plural}/{{{kind.id_param}}}/{spec.route}"
    if kind.parent is None:
        return own
    return f"/{get_kind(kind.parent).plural}/{{{kind.parent_param}}}{own}"


def _id_parameters(kind: EntityKind) -> list[inspect.Parameter]:
    names = [name for name in (kind.parent_param, kind.id_param) if name]
    return [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                          annotation=Annotated[str, Path(description="1-64 letters, digits, '-' or '_'",
                                                         examples=["123"])])
        for name in names
    ]


def _endpoint(kind: EntityKind, spec: FieldSpec):  # noqa: ANN202 - the signature is rewritten below
    async def upload(request: Request, principal: PrincipalDep, runtime: RuntimeDep, api: ApiStateDep,
                     media: MediaServiceDep, urls: UrlsDep, **ids: str) -> MediaOut:
        return await _upload_one(request, principal, runtime, api, media, urls, kind, spec, ids)

    fixed = [p for p in inspect.signature(upload).parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    upload.__signature__ = inspect.Signature([*fixed, *_id_parameters(kind)], return_annotation=MediaOut)
    upload.__name__ = f"upload_{kind.name}_{spec.name}"
    return upload


def _register(kind: EntityKind, spec: FieldSpec) -> None:
    kinds = " or ".join(sorted(spec.media_kinds))
    slot = ("replaces the current one once approved" if spec.slot == "single"
            else f"adds to the gallery (at most {spec.max_items})")
    router.add_api_route(
        _route_path(kind, spec),
        _endpoint(kind, spec),
        methods=["POST"],
        status_code=201,
        response_model=MediaOut,
        responses=ERRORS,
        summary=f"Upload {kind.name} {spec.name} ({kinds})",
        description=f"Multipart upload of one {kinds} file; {slot}. New items are `pending` unless the "
                    "uploader is verified and auto-approval is on; a pending item takes the primary (`is_primary`) "
                    "from an approved one only when it is approved.",
        openapi_extra=_form_schema("file", many=False),
    )


for _kind in KINDS:
    for _spec in _kind.fields:
        _register(_kind, _spec)


BATCH_TARGET_FIELDS = {
    "entity_type": {"type": "string", "example": "property"},
    "entity_id": {"type": "string", "example": "123"},
    "entity_field": {"type": "string", "example": "gallery"},
}
BATCH_PARENT_FIELD = {"parent_id": {"type": "string", "example": "77",
                                    "description": "the parent's id, for nested kinds (an amenity's community)"}}


def streams_its_body(scope: Scope) -> bool:
    """The upload routes read their multipart bodies as streams, under their own caps."""
    return any(route.matches(scope)[0] is Match.FULL for route in router.routes)


class _BatchTarget:
    """The batch's target, authorised from its three fields before the first file's bytes are read."""

    def __init__(self, principal: Principal, runtime: RuntimeDep, media: MediaServiceDep,
                 limiter: RateLimiter) -> None:
        self.principal = principal
        self.runtime = runtime
        self.media = media
        self.limiter = limiter
        self.target: Target | None = None

    async def authorise(self, fields: dict[str, str]) -> Target:
        target = Target.parse(fields["entity_type"], fields["entity_id"], fields["entity_field"],
                              fields.get("parent_id") or None)
        if target != self.target:
            await run_in_threadpool(self.media.authorise_upload, self.principal, target)
            self.target = target
        return target

    async def file_cap(self, fields: dict[str, str]) -> int:
        """Called as each file begins: the target must be known and allowed, and each file is one upload
        against the rate limit, so an unauthorised or limited caller's bytes are never spooled."""
        if not all(name in fields for name in BATCH_TARGET_FIELDS):
            raise InvalidInput("send entity_type, entity_id and entity_field before the first file",
                               code="target_fields_first", fields=list(BATCH_TARGET_FIELDS))
        target = await self.authorise(fields)
        await run_in_threadpool(self.limiter.hit, self.principal.sub)
        return self.runtime.ingest.size_cap(target)


@router.post(
    "/batch/upload",
    status_code=201,
    response_model=BatchUploadOut,
    responses={
        **ERRORS,
        207: {"model": BatchUploadOut, "description": "some files stored, some failed (see each result)"},
        422: {"model": BatchFailedProblem, "content": {PROBLEM_TYPE: {}},
              "description": "no file stored: `batch_failed` with each file's result; or a bad form "
                             "(`target_fields_first`, `validation_error`, ...)"},
    },
    summary="Upload several files to one entity field",
    description="Send `entity_type`, `entity_id`, `entity_field` (and `parent_id` for nested kinds) first, then repeat the `files` part (a file "
                "before the target fields is 422 `target_fields_first`). Each file succeeds or fails on its own: "
                "201 when all were stored, 207 when some were, 422 `batch_failed` when none was; each counts "
                "against UPLOAD_RATE_LIMIT. More than MAX_BATCH_FILES files is 413 `too_many_files`, a body over "
                "MAX_BATCH_BYTES 413 `too_large`, more than MAX_CONCURRENT_BATCHES at once 429 `too_many_batches`.",
    openapi_extra=_form_schema("files", many=True, extra=BATCH_TARGET_FIELDS, optional=BATCH_PARENT_FIELD),
)
async def batch_upload(request: Request, response: Response, principal: PrincipalDep, settings: SettingsDep,
                       runtime: RuntimeDep, api: ApiStateDep, media: MediaServiceDep,
                       urls: UrlsDep) -> Response | BatchUploadOut:
    with api.batches.hold(principal.sub):
        batch = _BatchTarget(principal, runtime, media, api.limiter)
        limits = FormLimits("files", settings.max_batch_files, settings.max_batch_bytes + FORM_ALLOWANCE,
                            batch.file_cap, True, settings.temp_dir, settings.upload_read_timeout_seconds)
        form = await read_multipart(request, limits)
        try:
            fields = parse_fields(BatchUploadFields, form.fields)
            target = await batch.authorise(form.fields)
            if not form.files:
                raise InvalidInput("the form has no 'files' part", code="missing_file")
            results = [await _batch_file(index, received, target, principal, fields, runtime, api, media, urls)
                       for index, received in enumerate(form.files)]
        finally:
            form.discard()
    stored = sum(result.ok for result in results)
    out = BatchUploadOut(stored=stored, failed=len(results) - stored, results=results)
    if stored == 0:
        return problem(422, "batch_failed", f"none of the {len(results)} files was stored; see each result",
                       **out.model_dump(mode="json"))
    if stored < len(results):
        response.status_code = 207
    return out


async def _batch_file(index: int, received: ReceivedFile, target: Target, principal: Principal,
                      fields: UploadFields, runtime: RuntimeDep, api: ApiStateDep, media: MediaServiceDep,
                      urls: UrlsDep) -> BatchFileResult:
    try:
        with counted(api):
            if received.error is not None:
                raise received.error
            upload = _upload_request(target, principal, fields, received)
            item = await run_in_threadpool(runtime.ingest.ingest_spooled, received.spooled, upload)
    except MediaHubError as exc:
        error = BatchFileError(code=exc.code, message=public_detail(exc))
        return BatchFileResult(index=index, filename=received.filename, ok=False, error=error)
    view = await run_in_threadpool(media.view, principal, item)
    out = await run_in_threadpool(media_out, view, urls)
    return BatchFileResult(index=index, filename=received.filename, ok=True, item=out)
