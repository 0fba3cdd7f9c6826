"""Duplicate review (moderators and admins): groups of duplicates, and keeping one, keeping all, or
resolving every exact group at once. Deletes follow the rules of `DELETE /v1/media/{id}` item by item."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from mediahub.api.deps import DuplicateReviewDep, PrincipalDep, UrlsDep
from mediahub.api.errors import problem_responses
from mediahub.api.presenters import duplicate_group_out, resolved_out
from mediahub.api.schemas import (
    DuplicateGroupPage,
    DuplicateKeepAllOut,
    DuplicateKeepAllRequest,
    DuplicateResolveAllOut,
    DuplicateResolveAllRequest,
    DuplicateResolveOut,
    DuplicateResolveRequest,
    DuplicateSummaryOut,
    Name,
)

router = APIRouter(prefix="/v1/media/duplicates", tags=["duplicates"])

ERRORS = problem_responses(401, 403, 422)


@router.get("", response_model=DuplicateGroupPage, responses=ERRORS, summary="Groups of duplicates",
            description="`kind=exact`: items with the same pixels, or the same file (among items without a pixel "
                        "digest), in key order. `kind=near`: an item and the newer items that look like it "
                        "(within DEDUP_THRESHOLD), in id order; each page looks at a bounded number of items, "
                        "so it may be short and still have a `next`. Groups kept whole are left out until a newer "
                        "member joins them.")
def list_duplicates(review: DuplicateReviewDep, urls: UrlsDep, principal: PrincipalDep,
                    kind: Literal["exact", "near"] = "exact",
                    after: Annotated[Name | None, Query(max_length=80, description="`next` of the last page")] = None,
                    limit: Annotated[int, Query(ge=1, le=50)] = 20) -> DuplicateGroupPage:
    page = review.groups(principal, kind, after, limit)
    return DuplicateGroupPage(groups=[duplicate_group_out(group, urls) for group in page.groups], next=page.next)


@router.get("/summary", response_model=DuplicateSummaryOut, responses=problem_responses(401, 403),
            summary="What resolving every exact group would do",
            description="How many exact groups are listed, and how many items resolve-all-exact would delete.")
def duplicates_summary(review: DuplicateReviewDep, principal: PrincipalDep) -> DuplicateSummaryOut:
    groups, deletes = review.summary(principal)
    return DuplicateSummaryOut(groups=groups, deletes=deletes)


@router.post("/resolve", response_model=DuplicateResolveOut, responses=problem_responses(401, 403, 409, 422),
             summary="Keep one item of a group and delete others",
             description="Deletes the items of `delete` that are in the group now, each on its own (a result per "
                         "item); 409 `keep_not_in_group` (nothing deleted) when `keep` is not in it.")
def resolve_duplicates(body: DuplicateResolveRequest, review: DuplicateReviewDep,
                       principal: PrincipalDep) -> DuplicateResolveOut:
    return resolved_out(review.resolve(principal, body.group, body.keep, body.delete))


@router.post("/keep-all", response_model=DuplicateKeepAllOut, responses=problem_responses(401, 403, 409, 422),
             summary="Keep every item of a group",
             description="The group is no longer listed, until an item newer than those in `ids` joins it.")
def keep_all_duplicates(body: DuplicateKeepAllRequest, review: DuplicateReviewDep,
                        principal: PrincipalDep) -> DuplicateKeepAllOut:
    return DuplicateKeepAllOut(group=body.group, up_to_id=review.keep_all(principal, body.group, body.ids))


@router.post("/resolve-all-exact", response_model=DuplicateResolveAllOut, responses=ERRORS,
             summary="Resolve the exact groups, `limit` at a time",
             description="In each exact group listed: keeps its primaries (never deleted here), else its oldest "
                         "approved item, else its oldest, and deletes the rest (a result per item). Call again "
                         "with `after` = `next` until `next` is null.")
def resolve_all_exact(body: DuplicateResolveAllRequest, review: DuplicateReviewDep,
                      principal: PrincipalDep) -> DuplicateResolveAllOut:
    resolved, cursor = review.resolve_all_exact(principal, body.after, body.limit)
    return DuplicateResolveAllOut(groups=[resolved_out(group) for group in resolved], next=cursor)
