"""Request and response bodies of the HTTP API, with the examples /docs shows."""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from mediahub.entities import MediaKind
from mediahub.media.batch import Action as BatchAction
from mediahub.media.duplicates import MEMBERS_SHOWN
from mediahub.media.manage import TAGS_MAX

ALT_TEXT_MAX = 500  # MediaItem.alt_text is String(500)
CAPTION_MAX = 5000
TAG_MAX = 64
MAX_ID = 2**63 - 1  # BIGINT: larger ids would be a database error, not a missing item
BATCH_IDS_MAX = 100
ORDER_IDS_MAX = 1000

ModerationStatus = Literal["pending", "approved", "rejected", "flagged"]
MediaId = Annotated[int, Field(ge=1, le=MAX_ID)]


# Every text a request carries to the database passes one of these. PostgreSQL refuses NUL in text
# and no driver encodes a lone surrogate, so either would be a 500 there; other C0 controls and DEL
# are refused too, as no caption or name needs them. Free text keeps tab and line breaks; names
# (ids, tags, subjects, fields) are single-line.
CONTROL_CHARACTER = "control_character"
_NOT_IN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_NOT_IN_NAME = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


def has_control_characters(value: str, *, single_line: bool = True) -> bool:
    return (_NOT_IN_NAME if single_line else _NOT_IN_TEXT).search(value) is not None


def _refuse(value: str, single_line: bool) -> str:
    if has_control_characters(value, single_line=single_line):
        raise PydanticCustomError(CONTROL_CHARACTER, "control characters and lone surrogates are not allowed here")
    return value


Text = Annotated[str, AfterValidator(lambda value: _refuse(value, single_line=False))]
Name = Annotated[str, AfterValidator(lambda value: _refuse(value, single_line=True))]


def _split_tags(value: Any) -> Any:
    """Tags arrive as a JSON list or comma-separated text (forms); blanks and repeats are dropped."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except (json.JSONDecodeError, RecursionError):  # RecursionError: "[[[[...": never a list of strings
                raise ValueError("tags must be a JSON list of strings or comma-separated text") from None
        else:
            value = text.split(",")
    if isinstance(value, list) and all(isinstance(tag, str) for tag in value):
        return list(dict.fromkeys(tag.strip() for tag in value if tag.strip()))
    return value


Tag = Annotated[Name, Field(min_length=1, max_length=TAG_MAX)]
Tags = Annotated[list[Tag], BeforeValidator(_split_tags), Field(max_length=TAGS_MAX)]


class Problem(BaseModel):
    """RFC 9457 problem details; `code` is stable, extra members (such as `limit`) depend on it."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "type": "urn:mediahub:problem:too_large", "title": "Content Too Large", "status": 413,
        "detail": "file is larger than the limit of 20971520 bytes", "code": "too_large", "limit": 20971520,
    }]})

    type: str
    title: str
    status: int
    detail: str
    code: str


class UploadFields(BaseModel):
    """The text fields of an upload form (the file itself is the `file` part)."""

    model_config = ConfigDict(extra="ignore")

    alt_text: Text | None = Field(None, max_length=ALT_TEXT_MAX)
    caption: Text | None = Field(None, max_length=CAPTION_MAX)
    is_primary: bool = False
    tags: Tags = Field(default_factory=list)
    allow_duplicate: bool = False  # store even if it duplicates an item in scope (unless the server forbids it)


class BatchUploadFields(UploadFields):
    entity_type: Name = Field(max_length=32)
    entity_id: Name = Field(max_length=64)
    entity_field: Name = Field(max_length=32)
    parent_id: Name | None = Field(None, max_length=64)  # nested kinds: the parent's id


class VariantOut(BaseModel):
    url: str
    width: int
    height: int
    size: int
    content_type: str


class PlaceholdersOut(BaseModel):
    blurhash: str = Field(description="BlurHash (base83), 4 components along the longer side")
    thumbhash: str = Field(description="ThumbHash bytes in standard base64")


MEDIA_EXAMPLE: dict[str, Any] = {
    "id": 42, "public_id": "q3vV0c1b2A9xYzT4kLmN8w", "entity_type": "community", "entity_id": "123",
    "entity_field": "photos", "media_type": "image", "content_type": "image/jpeg", "byte_size": 48213,
    "width": 640, "height": 480, "duration": None,
    "url": "http://localhost:8000/v1/media/files/communities/photos/123/2024-12/photos-20241202101500-a1b2c3.jpg",
    "variants": {"thumbnail": {"jpeg": {
        "url": "http://localhost:8000/v1/media/files/communities/photos/123/2024-12/"
               "photos-20241202101500-a1b2c3_thumbnail.jpg",
        "width": 150, "height": 150, "size": 5120, "content_type": "image/jpeg"}}},
    "image_hash": "c3c3e1e1f0f0b4b4",
    "placeholders": {"blurhash": "LpC*Chbcj=f+byjXbdjsThj]jZju", "thumbhash": "IbYJNYiIeHh5eYiPh1dneZaWYHkJ"},
    "srcset": {"jpeg": "http://localhost:8000/v1/media/files/communities/photos/123/2024-12/"
                       "photos-20241202101500-a1b2c3_small.jpg 400w",
               "auto": "http://localhost:8000/v1/images/q3vV0c1b2A9xYzT4kLmN8w/small 400w"},
    "widths": [400],
    "storage_type": "local", "bucket_name": None, "is_primary": True,
    "position": 0, "tags": ["pool", "summer"], "metadata": {"source_format": "jpeg", "gps_stripped": True},
    "caption": "The pool at dusk", "alt_text": "An outdoor pool lit at dusk", "moderation_status": "approved",
    "moderation_reason": None, "processing_status": "ready", "uploaded_by": "USR-1",
    "created_at": "2024-12-02T10:15:00Z", "updated_at": "2024-12-02T10:15:00Z",
    "machine_tags": [{"id": 7, "label": "exterior", "kind": "room", "score": 0.91, "source": "machine",
                      "model": "efficientnet-lite0@1a2b3c4d/rooms-1", "state": "suggested", "decided_by": None,
                      "decided_at": None}],
}


class FocalPointIn(BaseModel):
    """A point of the upright picture, as fractions of its width and height."""

    model_config = ConfigDict(extra="forbid")

    x: float = Field(ge=0, le=1, allow_inf_nan=False, description="0 = left edge, 1 = right edge")
    y: float = Field(ge=0, le=1, allow_inf_nan=False, description="0 = top edge, 1 = bottom edge")


class FocalPointOut(FocalPointIn):
    source: Literal["faces", "attention", "manual"] = Field(
        description="faces: the centre of the faces found; attention: libvips' most interesting region; "
                    "manual: set by PATCH")


class MediaOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [MEDIA_EXAMPLE]})

    id: int
    public_id: str
    entity_type: str
    entity_id: str
    entity_field: str
    media_type: MediaKind
    content_type: str
    byte_size: int
    width: int | None = Field(description="displayed width (after EXIF orientation)")
    height: int | None = Field(description="displayed height (after EXIF orientation)")
    duration: float | None
    url: str | None = Field(description="the original; null while `pending` holds `variants` and the upload, "
                                        "kept as sent until then, is being re-encoded (HEIC, TIFF...)")
    variants: dict[str, dict[str, VariantOut]] = Field(description="variant name -> format -> rendition")
    image_hash: str | None
    placeholders: PlaceholdersOut | None = Field(
        None, description="shown while the image loads (a video: of its poster); null for rows not yet backfilled")
    srcset: dict[str, str] | None = Field(
        None, description="an image's whole-picture sizes as `srcset` values, per format (the URLs of `variants`), "
                          "and `auto` (approved items): the preset URLs, each answered in the best format the "
                          "client accepts; null for videos")
    widths: list[int] | None = Field(None, description="the widths the srcsets offer, ascending; null for videos")
    storage_type: str
    bucket_name: str | None
    is_primary: bool
    position: int
    tags: list[str]
    metadata: dict[str, Any] = Field(description="how the item was stored; the original filename and EXIF camera "
                                                 "and time only for the uploader, the entity's owners and "
                                                 "moderators; GPS (when kept) for the uploader and owners only")
    caption: str | None
    alt_text: str | None
    moderation_status: ModerationStatus
    moderation_reason: str | None
    processing_status: str
    pending: list[str] = Field(default_factory=list,
                               description="work still to come for this item, by job kind: `variants` (the upload's "
                                           "variants, made by a job for sources decoded in full: HEIC, PNG, WebP...), "
                                           "`renditions` (WebP/AVIF), `video_transcode`, `reprocess`; empty when "
                                           "processing_status is ready")
    uploaded_by: str | None = Field(description="null unless the caller is the uploader, an owner or a moderator")
    created_at: datetime
    updated_at: datetime
    parent_id: str | None = Field(None, description="nested kinds: the parent entity's id (an amenity's community)")
    focal_point: FocalPointOut | None = Field(None, description="where crops (the square thumbnail, fit=cover "
                                                                "transforms) are centred; null when unknown")
    machine_tags: list[MachineTagOut] = Field(
        default_factory=list, description="what the classifier saw (room type, objects) and moderators decided, "
                                          "apart from `tags` (what people typed); rooms first. Empty in answers to "
                                          "uploads (the tagging job comes after) and to moderation and batch actions")


class MachineTagOut(BaseModel):
    """A tag a classifier gave an item (or a moderator's room), with its provenance and review."""

    id: int
    label: str = Field(examples=["kitchen"])
    kind: Literal["room", "object"]
    score: float | None = Field(description="how sure the model was, 0..1; null for a moderator's room")
    source: Literal["machine", "moderator"]
    model: str | None = Field(description="the model (and its class-to-room mapping) that said so; null for a "
                                          "moderator's room")
    state: Literal["suggested", "accepted", "rejected"] = Field(
        description="suggested: the machine's, not reviewed; accepted or rejected by a moderator (a moderator's "
                    "room is accepted)")
    decided_by: str | None = Field(None, description="the moderator who decided; for the uploader, the entity's "
                                                     "owners and moderators only")
    decided_at: datetime | None = None


class MachineTagsOut(BaseModel):
    media_id: int
    machine_tags: list[MachineTagOut]


class RoomRequest(BaseModel):
    label: Name = Field(max_length=64, description="one of the room labels", examples=["bedroom"])


class AuditEventOut(BaseModel):
    id: int
    occurred_at: datetime
    actor: str | None = Field(description="the principal's subject, `system`, or `mediahub-cli`; null on a "
                                           "report for anyone but moderators")
    actor_role: str | None = Field(description="admin, moderator, user, system or operator")
    action: str = Field(examples=["media.approve"])
    media_id: int | None
    media_public_id: str | None
    entity_type: str | None
    entity_id: str | None
    parent_id: str | None
    reason: str | None
    before: dict[str, Any] | None = Field(description="the fields the change changed, as they were; null: the "
                                                      "item was new")
    after: dict[str, Any] | None = Field(description="those fields as the change left them; null: the item was "
                                                     "deleted")
    request_id: str | None = Field(description="the request that made the change (its X-Request-ID)")


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    next: str | None = Field(description="`after` for the next page; null on the last one")


class MediaDetailOut(MediaOut):
    history: list[AuditEventOut] | None = Field(
        None, description="the item's newest changes, newest first (`GET /v1/media/{id}/history` pages through "
                          "all): for the uploader, the entity's owners and moderators; null for anyone else")


class MediaPage(BaseModel):
    items: list[MediaOut]
    total: int
    offset: int
    limit: int
    next: str | None = Field(None, description="the cursor of the next page (send it as `after`); null on the "
                                               "last page, and with `include_nested`, which pages by offset")


class MediaList(BaseModel):
    items: list[MediaOut]


class SimilarItem(BaseModel):
    distance: int = Field(description="Hamming distance of the perceptual hashes (0 = same picture)", examples=[3])
    item: MediaOut


class SimilarList(BaseModel):
    items: list[SimilarItem]


class BatchFileError(BaseModel):
    code: str
    message: str


class BatchFileResult(BaseModel):
    index: int
    filename: str | None
    ok: bool
    item: MediaOut | None = None
    error: BatchFileError | None = None


class BatchUploadOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "stored": 1, "failed": 1,
        "results": [
            {"index": 0, "filename": "kitchen.jpg", "ok": True, "item": MEDIA_EXAMPLE},
            {"index": 1, "filename": "plan.pdf", "ok": False,
             "error": {"code": "unsupported_type", "message": "PDF files are not accepted"}},
        ],
    }]})

    stored: int
    failed: int
    results: list[BatchFileResult]


class MediaUpdateRequest(BaseModel):
    """Only the fields sent change; `null` clears caption and alt text and is ignored elsewhere."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"is_primary": True, "tags": ["kitchen", "renovated"], "caption": "New kitchen"},
        {"moderation_status": "approved"},
    ]})

    is_primary: bool | None = None
    tags: Tags | None = None
    moderation_status: ModerationStatus | None = Field(None, description="moderators and admins only")
    caption: Text | None = Field(None, max_length=CAPTION_MAX)
    alt_text: Text | None = Field(None, max_length=ALT_TEXT_MAX)
    focal_point: FocalPointIn | None = Field(None, description="where crops are centred: re-renders the thumbnail "
                                                               "and drops derived transforms")

    def changes(self) -> dict[str, Any]:
        sent = self.model_dump(exclude_unset=True)
        return {name: value for name, value in sent.items() if value is not None or name in {"caption", "alt_text"}}


class BatchDeleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"ids": [41, 42, 43]}]})

    ids: list[MediaId] = Field(min_length=1, max_length=BATCH_IDS_MAX)


class BatchDeleteResult(BaseModel):
    id: int
    ok: bool
    error: BatchFileError | None = None


class BatchDeleteOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"results": [
        {"id": 41, "ok": True},
        {"id": 99, "ok": False, "error": {"code": "media_not_found", "message": "no such media item"}},
    ]}]})

    results: list[BatchDeleteResult]


class ReorderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"field": "gallery", "ids": [7, 5, 6]},
        {"field": "gallery", "ids": [9, 8], "partial": True},
    ]})

    field: Name = Field(max_length=32)
    ids: list[MediaId] = Field(max_length=ORDER_IDS_MAX)
    partial: bool = Field(False, description="false: `ids` names every item of the field once. true: some of "
                                             "them (each once), put in this order in the places they hold now; "
                                             "the others keep theirs (a page showing the first items of a long "
                                             "gallery reorders what it shows)")


class BatchActionRequest(BaseModel):
    """One action on many items; `reason` for reject, `tags` (added to each item's) for tag."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"action": "approve", "ids": [41, 42, 43]},
        {"action": "reject", "ids": [44], "reason": "shows a licence plate"},
        {"action": "tag", "ids": [41, 42], "tags": ["kitchen"]},
    ]})

    action: BatchAction
    ids: list[MediaId] = Field(min_length=1, max_length=BATCH_IDS_MAX)
    reason: Text | None = Field(None, min_length=1, max_length=500, description="reject: why (required)")
    tags: Tags | None = Field(None, description="tag: the tags to add (required)")

    @model_validator(mode="after")
    def _needs(self) -> BatchActionRequest:
        if self.action == "reject" and not (self.reason or "").strip():
            raise PydanticCustomError("reason_required", "a rejection needs a reason")
        if self.action == "tag" and not self.tags:
            raise PydanticCustomError("tags_required", "tag needs the tags to add")
        return self


class BatchActionResult(BaseModel):
    id: int
    ok: bool
    item: MediaOut | None = Field(None, description="the item as the action left it (not for delete)")
    error: BatchFileError | None = None


class BatchActionOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"action": "approve", "succeeded": 1, "failed": 1,
                                                               "results": [
        {"id": 41, "ok": True, "item": MEDIA_EXAMPLE},
        {"id": 99, "ok": False, "error": {"code": "media_not_found", "message": "no such media item"}},
    ]}]})

    action: BatchAction
    succeeded: int
    failed: int
    results: list[BatchActionResult]


class ModerationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"status": "rejected", "reason": "shows a licence plate"},
    ]})

    status: ModerationStatus
    reason: Text | None = Field(None, max_length=500)


class FlagRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reason": "not this property"}]})

    reason: Text | None = Field(None, max_length=500)


class FlagOut(BaseModel):
    id: int
    moderation_status: ModerationStatus


class UsageOut(BaseModel):
    count: int
    bytes: int


class StorageUsageOut(BaseModel):
    objects: int
    bytes: int


class StorageAnalyticsOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "by_storage_type": {"local": {"count": 3, "bytes": 120000}},
        "by_entity_type": {"property": {"count": 2, "bytes": 80000}, "user": {"count": 1, "bytes": 40000}},
        "by_media_type": {"image": {"count": 3, "bytes": 120000}},
        "by_moderation_status": {"approved": {"count": 1, "bytes": 40000}, "pending": {"count": 2, "bytes": 80000}},
        "storage": {"objects": 27, "bytes": 410000},
    }]})

    by_storage_type: dict[str, UsageOut]
    by_entity_type: dict[str, UsageOut]
    by_media_type: dict[str, UsageOut]
    by_moderation_status: dict[str, UsageOut]
    storage: StorageUsageOut = Field(
        description="the objects the items are stored as, originals and every variant, each counted once")


class UploadBucketOut(BaseModel):
    start: date = Field(description="the first day of the period (UTC): a day, a Monday or the 1st of a month")
    count: int = Field(description="items uploaded in the period (those deleted since are not counted)")
    bytes: int = Field(description="their originals' bytes")


class UploadsOverTimeOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "interval": "day", "since": "2026-11-09", "until": "2026-11-11", "count": 5, "bytes": 2100000,
        "buckets": [{"start": "2026-11-09", "count": 2, "bytes": 900000},
                    {"start": "2026-11-10", "count": 0, "bytes": 0},
                    {"start": "2026-11-11", "count": 3, "bytes": 1200000}],
    }]})

    interval: Literal["day", "week", "month"]
    since: date = Field(description="the first day counted (UTC); the first period may start before it")
    until: date = Field(description="the last day counted: today (UTC)")
    count: int
    bytes: int
    buckets: list[UploadBucketOut] = Field(description="every period from `since` to `until`, oldest first, "
                                                       "empty ones included")


DUPLICATE_GROUP = Field(max_length=80, description="the group's key, as listed: `pixels:<digest>`, "
                                                  "`file:<digest>` or `near:<id>`", examples=["near:41"])


class DuplicateMemberOut(BaseModel):
    distance: int = Field(description="perceptual distance to the group's first item (0: an exact copy)")
    can_delete: bool = Field(description="whether the caller may delete the item")
    item: MediaOut


class DuplicateGroupOut(BaseModel):
    key: str = Field(description="`pixels:<digest>` (the same pixels), `file:<digest>` (the same file, among "
                                 "items without a pixel digest) or `near:<id>` (item id and the newer items "
                                 "that look like it)")
    kind: Literal["pixels", "file", "near"]
    keep: int = Field(description="the item resolve-all-exact keeps (the primary, else the oldest approved, "
                                  "else the oldest)")
    size: int = Field(description=f"members in the group now; `items` lists at most {MEMBERS_SHOWN} of them (the "
                                  "first, `keep` and the newest among them): the others once those are resolved")
    items: list[DuplicateMemberOut]


class DuplicateGroupPage(BaseModel):
    groups: list[DuplicateGroupOut]
    next: str | None = Field(description="`after` for the next page; null on the last. A page of near groups "
                                         "may be short (its work is bounded) and still have a next one")


class DuplicateSummaryOut(BaseModel):
    groups: int = Field(description="exact groups listed now that resolve-all-exact would change (not those "
                                    "whose every member is a primary)")
    deletes: int = Field(description="items resolve-all-exact would delete: every member but the primaries "
                                     "(or one member in a group without one)")


class DuplicateResolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"group": "near:41", "keep": 41, "delete": [57, 63]}]})

    group: Name = DUPLICATE_GROUP
    keep: MediaId
    delete: list[MediaId] = Field(min_length=1, max_length=BATCH_IDS_MAX,
                                  description="the members to delete (those no longer in the group are not)")


class DuplicateResolveOut(BaseModel):
    group: str
    kept: list[int]
    results: list[BatchDeleteResult]


class DuplicateKeepAllRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"group": "near:41", "ids": [41, 57, 63]}]})

    group: Name = DUPLICATE_GROUP
    ids: list[MediaId] = Field(min_length=1, max_length=ORDER_IDS_MAX,
                               description="the members the moderator saw: a newer one shows the group again")


class DuplicateKeepAllOut(BaseModel):
    group: str
    up_to_id: int = Field(description="the newest member kept; the group is listed again when a newer one joins")


class DuplicateResolveAllRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"after": None, "limit": 50}]})

    after: Name | None = Field(None, max_length=80, description="`next` of the previous answer; null: from the start")
    limit: int = Field(50, ge=1, le=100, description="groups resolved by this request")


class DuplicateResolveAllOut(BaseModel):
    groups: list[DuplicateResolveOut]
    next: str | None = Field(description="`after` for the next request; null when every exact group was done")


class MemberRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"role": "owner"}]})

    role: Literal["owner", "editor"] = "owner"


class MemberOut(BaseModel):
    entity_type: str
    entity_id: str
    subject: str
    role: str
    parent_id: str | None = None


class Health(BaseModel):
    status: str


class Readiness(Health):
    features: dict[str, str] = Field(
        description="each optional feature's state: `off`, `ok`, or the code of what keeps it from working")


class BatchFailedProblem(Problem):
    """422 `batch_failed`: no file of a batch was stored; each file's result says why."""

    stored: int
    failed: int
    results: list[BatchFileResult]
# Moderation reports and the queue.
class ReportOut(BaseModel):
    reporter: str
    reason: str | None
    created_at: datetime


class ItemReportOut(ReportOut):
    resolution: str | None = Field(description="null while open; then the decision that closed it (`approved`, "
                                               "`rejected`...) or `dismissed`")
    closed_at: datetime | None


class ReportHistoryOut(BaseModel):
    items: list[ItemReportOut] = Field(description="newest first, at most 100")
    total: int = Field(description="every report the item has had")


class CheckResultOut(BaseModel):
    check: str = Field(description="which of MODERATION_CHECKS: `nsfw`, `hook`")
    verdict: Literal["pass", "flag"]
    code: str = Field(description="stable: `nsfw_score`, `hook_accepted`, `hook_rejected`, `hook_timeout`...")
    detail: str
    score: float | None = Field(None, description="0..1, for checks that score (nsfw)")


class ChecksOut(BaseModel):
    awaiting: bool = Field(description="the checks have not decided yet (a moderator's decision ends their say)")
    risk: float | None = Field(None, description="the highest score of the results; a flag without one counts as 1")
    results: list[CheckResultOut] = Field(default_factory=list)


class ModerationQueueItem(MediaOut):
    open_reports: int = Field(description="users with an open report on the item (one report each)")
    reports: list[ReportOut] = Field(description="the oldest open reports (at most 10)")
    checks: ChecksOut | None = Field(None, description="the automated checks' results (MODERATION_CHECKS); null "
                                                       "for items uploaded while none were configured")


class ModerationQueuePage(BaseModel):
    items: list[ModerationQueueItem]
    total: int
    offset: int
    limit: int


class TransformUrlRequest(BaseModel):
    """What a signed transform URL makes of the item; at least a width or a height."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"width": 800, "height": 600, "fit": "cover", "gravity": "focal", "format": "auto"},
        {"width": 400, "format": "webp", "quality": 75, "dpr": 2, "expires_in": 86400},
    ]})

    width: int | None = Field(None, ge=1, le=16384)
    height: int | None = Field(None, ge=1, le=16384)
    fit: Literal["cover", "contain", "inside", "fill"] = "cover"
    gravity: Literal["focal", "smart", "center", "face"] = "focal"
    format: Literal["auto", "jpeg", "webp", "avif", "png"] = Field(
        "auto", description="auto: AVIF or WebP when the client's Accept names it, else JPEG (PNG with alpha)")
    quality: int | None = Field(None, ge=1, le=100, description="unset: the format's default")
    dpr: float = Field(1.0, ge=1.0, le=4.0, multiple_of=0.01, description="device pixel ratio: multiplies the size")
    expires_in: int | None = Field(None, ge=1, le=366 * 24 * 3600, description="seconds; unset: never expires")


class TransformUrlOut(BaseModel):
    url: str = Field(description="the transform in the requested format (negotiated for auto, with Vary: Accept)")
    urls: dict[str, str] = Field(description="one URL per format, for CDNs that ignore Vary")
    width: int = Field(description="the result's width (never larger than the picture)")
    height: int
    format: str | None = Field(description="null: negotiated")
    expires_at: datetime | None


# Direct-to-S3 uploads: the shapes of the Companion endpoints that Uppy's @uppy/aws-s3 calls, in their names.

SHA256_HEX = r"^[0-9a-fA-F]{64}$"
FILENAME_MAX = 1024  # a hint kept (shortened) for the record; see pipeline.intake.safe_filename


class DirectUploadMetadata(BatchUploadFields):
    """The target and the form fields of a direct upload, in Uppy's `metadata` (values may all be text)."""

    filename: Name | None = Field(None, max_length=FILENAME_MAX)
    sha256: str | None = Field(None, pattern=SHA256_HEX,
                               description="the file's SHA-256 (hex): completion refuses other bytes (460)")


class MultipartStartIn(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "filename": "walkthrough.mp4", "type": "video/mp4",
        "metadata": {"entity_type": "property", "entity_id": "123", "entity_field": "gallery", "caption": "Hall"},
    }]})

    filename: Name | None = Field(None, max_length=FILENAME_MAX, description="used when metadata has none")
    type: str | None = Field(None, max_length=255, description="ignored: the type is sniffed from the bytes")
    metadata: DirectUploadMetadata


class MultipartStartOut(BaseModel):
    key: str = Field(description="the object key the parts go to; name it (`?key=`) in every later call")
    uploadId: str


class SignedPartOut(BaseModel):
    url: str = Field(description="PUT the part's bytes here; the answer's ETag header names the part")
    expires: int = Field(description="seconds the URL is valid")


class SignedPartsOut(BaseModel):
    presignedUrls: dict[str, str] = Field(description="part number -> URL")


class PartOut(BaseModel):
    PartNumber: int
    ETag: str
    Size: int


class PartIn(BaseModel):
    PartNumber: int = Field(ge=1, le=10_000)
    ETag: Name = Field(max_length=128)


class MultipartCompleteIn(BaseModel):
    parts: list[PartIn] = Field(min_length=1, max_length=10_000, description="ascending part numbers")


class PresignedPostOut(BaseModel):
    method: Literal["POST"] = "POST"
    url: str
    fields: dict[str, str] = Field(description="the form's fields, before the file (the last part, named `file`)")
    expires: int = Field(description="seconds the form is valid")
    key: str = Field(description="where the file goes; complete with POST /v1/media/s3/params/complete?key=")


class DirectUploadOut(MediaOut):
    """The item a completed direct upload made."""

    location: str = Field(description="the item's URL (GET /v1/media/{id})")
    key: str = Field(description="the key the upload was staged at (removed once ingested)")
