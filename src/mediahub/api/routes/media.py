"""Managing media: list an entity's media, get, public get, change, delete, reorder, usage."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response

from mediahub.api.deps import (
    AnalyticsDep,
    BatchServiceDep,
    MediaServiceDep,
    OptionalPrincipalDep,
    PrincipalDep,
    SettingsDep,
    UrlsDep,
)
from mediahub.api.errors import problem_responses, public_detail
from mediahub.api.presenters import media_detail_out, media_out
from mediahub.api.schemas import (
    MAX_ID,
    BatchActionOut,
    BatchActionRequest,
    BatchActionResult,
    BatchDeleteOut,
    BatchDeleteRequest,
    BatchDeleteResult,
    BatchFileError,
    MediaDetailOut,
    MediaList,
    MediaOut,
    MediaPage,
    MediaUpdateRequest,
    ModerationStatus,
    Name,
    ReorderRequest,
    SimilarItem,
    SimilarList,
    StorageAnalyticsOut,
    StorageUsageOut,
    Tag,
    UploadBucketOut,
    UploadsOverTimeOut,
    UsageOut,
)
from mediahub.media.access import EntityRef
from mediahub.media.analytics import MAX_DAYS
from mediahub.media.tagging import TAG_FILTERS_MAX

router = APIRouter(prefix="/v1/media", tags=["media"])

MediaIdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="the item's numeric id")]
EntityType = Annotated[Name, Path(max_length=32, description="kind name or plural", examples=["property"])]
EntityId = Annotated[Name, Path(max_length=200, examples=["123"])]
ParentId = Annotated[Name | None, Query(max_length=200, description="nested kinds: the parent's id (an amenity's "
                                                                   "community)")]


TAG_FILTER = ("repeatable: only items carrying every one of these tags: one of its own `tags` (as typed), an "
              "accepted machine tag or a moderator's room, or a suggested machine room scored MACHINE_TAG_MIN_SCORE "
              "or more on an item whose room no moderator settled (and not rejected for it)")


@router.get("/entity/{entity_type}/{entity_id}", response_model=MediaPage, responses=problem_responses(401, 404, 422),
            summary="List an entity's media",
            description="In display order (each field's primary first). Strangers see approved items (and their "
                        "own uploads); owners, moderators and admins see every status. A nested kind (amenity) "
                        "needs `parent_id`; `include_nested` adds the media of the entities nested in this one (its "
                        "amenities). Page with `after` (the previous page's `next`: as fast deep in a large "
                        "gallery as at its start) or `offset`; a cursor that no listing gave is 422 "
                        "`invalid_cursor`.")
def list_entity_media(
    entity_type: EntityType,
    entity_id: EntityId,
    media: MediaServiceDep,
    urls: UrlsDep,
    principal: OptionalPrincipalDep,
    field: Annotated[Name | None, Query(max_length=32, description="one media field, e.g. gallery")] = None,
    moderation_status: ModerationStatus | None = None,
    is_primary: bool | None = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    parent_id: ParentId = None,
    include_nested: bool = False,
    after: Annotated[str | None, Query(max_length=200, description="the `next` cursor of the previous page")] = None,
    tag: Annotated[list[Tag] | None, Query(max_length=TAG_FILTERS_MAX, description=TAG_FILTER)] = None,
) -> MediaPage:
    page = media.list_entity(
        EntityRef.parse(entity_type, entity_id, parent_id), principal, field=field,
        moderation_status=moderation_status, is_primary=is_primary, offset=offset, limit=limit,
        include_nested=include_nested, after=after, tags=tag,
    )
    return MediaPage(items=[media_out(v, urls) for v in page.items], total=page.total, offset=offset, limit=limit,
                     next=page.next)


@router.put("/entity/{entity_type}/{entity_id}/order", response_model=MediaList,
            responses=problem_responses(401, 403, 404, 409, 422),
            summary="Reorder a gallery",
            description="`ids` must name every item of the field exactly once, or with `partial` some of them, "
                        "which are put in that order in the places they hold (the others keep theirs). The primary "
                        "stays first whatever the order. Answers the named items in their new order.")
def reorder_media(entity_type: EntityType, entity_id: EntityId, body: ReorderRequest, media: MediaServiceDep,
                  urls: UrlsDep, principal: PrincipalDep, parent_id: ParentId = None) -> MediaList:
    views = media.reorder(EntityRef.parse(entity_type, entity_id, parent_id), body.field, body.ids, principal,
                          partial=body.partial)
    return MediaList(items=[media_out(v, urls) for v in views])


@router.get("/public/{public_id}", response_model=MediaOut, responses=problem_responses(404),
            summary="Get an approved item by its public id", description="No authentication; 404 unless approved.")
def get_public_media(public_id: Annotated[Name, Path(max_length=64)], media: MediaServiceDep,
                     urls: UrlsDep) -> MediaOut:
    return media_out(media.get_public(public_id), urls)


@router.get("/analytics/storage", response_model=StorageAnalyticsOut, responses=problem_responses(401, 403),
            summary="Storage usage", description="Moderators and admins: counts and original bytes by group, "
                                                 "and the stored objects (originals and variants) of every item.")
def storage_analytics(media: MediaServiceDep, principal: PrincipalDep) -> StorageAnalyticsOut:
    analytics = media.storage_analytics(principal)
    groups = {f"by_{name}": {value: UsageOut(count=usage["count"], bytes=usage["bytes"])
                             for value, usage in rows.items()}
              for name, rows in analytics.by_group.items()}
    storage = StorageUsageOut(objects=analytics.storage.objects, bytes=analytics.storage.bytes)
    return StorageAnalyticsOut(**groups, storage=storage)


@router.get("/analytics/uploads", response_model=UploadsOverTimeOut, responses=problem_responses(401, 403, 422),
            summary="Uploads over time",
            description="Moderators and admins: items uploaded per UTC day, week (from Monday) or month in the "
                        "last `days` days, empty periods included. `interval` defaults to days up to 92 days, "
                        "weeks up to 366, months beyond. Deleted items are not counted.")
def uploads_over_time(analytics: AnalyticsDep, principal: PrincipalDep,
                      days: Annotated[int, Query(ge=1, le=MAX_DAYS)] = 30,
                      interval: Literal["day", "week", "month"] | None = None) -> UploadsOverTimeOut:
    found = analytics.uploads(principal, days, interval)
    return UploadsOverTimeOut(interval=found.interval, since=found.since, until=found.until, count=found.count,
                              bytes=found.bytes, buckets=[UploadBucketOut(start=b.start, count=b.count, bytes=b.bytes)
                                                          for b in found.buckets])


@router.post("/batch/delete", response_model=BatchDeleteOut, responses=problem_responses(401, 422),
             summary="Delete several items", description="Each id succeeds or fails on its own.")
def batch_delete(body: BatchDeleteRequest, media: MediaServiceDep, principal: PrincipalDep) -> BatchDeleteOut:
    results = [
        BatchDeleteResult(id=media_id, ok=error is None, error=None if error is None else BatchFileError(
            code=error.code, message=public_detail(error)))
        for media_id, error in zip(body.ids, media.delete_many(body.ids, principal), strict=True)
    ]
    return BatchDeleteOut(results=results)


@router.post("/batch", response_model=BatchActionOut, responses=problem_responses(401, 422),
             summary="One action on several items",
             description="approve or reject (moderators and admins; a rejection needs a `reason`), delete, tag "
                         "(adds `tags`), set_primary (the uploader, owners, admins), on at most 100 ids. Each item "
                         "succeeds or fails on its own, with the error its single-item request would answer.")
def batch_action(body: BatchActionRequest, batch: BatchServiceDep, urls: UrlsDep,
                 principal: PrincipalDep) -> BatchActionOut:
    outcomes = batch.run(body.action, body.ids, principal, reason=body.reason, tags=body.tags)
    results = [
        BatchActionResult(
            id=outcome.media_id, ok=outcome.error is None,
            item=None if outcome.view is None else media_out(outcome.view, urls),
            error=None if outcome.error is None else BatchFileError(code=outcome.error.code,
                                                                    message=public_detail(outcome.error)))
        for outcome in outcomes
    ]
    failed = sum(not result.ok for result in results)
    return BatchActionOut(action=body.action, succeeded=len(results) - failed, failed=failed, results=results)


@router.get("/{media_id}", response_model=MediaDetailOut, responses=problem_responses(401, 404, 422),
            summary="Get an item",
            description="404 for items the caller may not see (pending, rejected or flagged ones of others). "
                        "`history`: the item's newest recorded changes, for its uploader, its entity's owners and "
                        "moderators.")
def get_media(media_id: MediaIdPath, media: MediaServiceDep, urls: UrlsDep,
              principal: OptionalPrincipalDep) -> MediaDetailOut:
    detail = media.detail(media_id, principal)
    return media_detail_out(detail, urls)


@router.patch("/{media_id}", response_model=MediaOut, responses=problem_responses(401, 403, 404, 409, 422),
              summary="Change an item",
              description="Caption, alt text, tags and primary: uploader, owners, admins (an unapproved item "
                          "takes the primary from an approved one only when it is approved). "
                          "Moderation status: moderators and admins.")
def update_media(media_id: MediaIdPath, body: MediaUpdateRequest, media: MediaServiceDep, urls: UrlsDep,
                 principal: PrincipalDep) -> MediaOut:
    return media_out(media.update(media_id, principal, body.changes()), urls)


@router.delete("/{media_id}", status_code=204, response_class=Response, responses=problem_responses(401, 403, 404),
               summary="Delete an item and all its stored objects")
def delete_media(media_id: MediaIdPath, media: MediaServiceDep, principal: PrincipalDep) -> Response:
    media.delete(media_id, principal)
    return Response(status_code=204)


@router.get("/{media_id}/similar", response_model=SimilarList, responses=problem_responses(401, 403, 404, 422),
            summary="Items that look like this one",
            description="Nearest items by perceptual hash (exact copies first), among those the caller may see. "
                        "`scope`: entity, uploader, or global (default: duplicates across entities show here).")
def similar_media(
    media_id: MediaIdPath,
    media: MediaServiceDep,
    urls: UrlsDep,
    settings: SettingsDep,
    principal: OptionalPrincipalDep,
    scope: Annotated[Literal["entity", "uploader", "global"], Query()] = "global",
    threshold: Annotated[int | None, Query(ge=0, le=15, description="at most this many bits apart")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> SimilarList:
    matches = media.similar(media_id, principal, scope=scope, limit=limit,
                            threshold=settings.dedup_threshold if threshold is None else threshold)
    return SimilarList(items=[SimilarItem(distance=distance, item=media_out(view, urls)) for view, distance in matches])
