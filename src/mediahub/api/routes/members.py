"""Entity members (owners and editors may upload and manage media); admins only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from mediahub.api.deps import MemberServiceDep, PrincipalDep
from mediahub.api.errors import problem_responses
from mediahub.api.schemas import MemberOut, MemberRequest, Name
from mediahub.media.access import EntityRef

router = APIRouter(prefix="/v1/media/entities", tags=["members"])

EntityType = Annotated[Name, Path(max_length=32, examples=["community"])]
EntityId = Annotated[Name, Path(max_length=200, examples=["123"])]
Subject = Annotated[Name, Path(min_length=1, max_length=128, examples=["USR-1"])]
ParentId = Annotated[Name | None, Query(max_length=200, description="nested kinds: the parent's id (an amenity's "
                                                                   "community)")]
ERRORS = problem_responses(401, 403, 404, 422)


@router.put("/{entity_type}/{entity_id}/members/{sub}", response_model=MemberOut, responses=ERRORS,
            summary="Add a member or change their role")
def put_member(entity_type: EntityType, entity_id: EntityId, sub: Subject, body: MemberRequest,
               members: MemberServiceDep, principal: PrincipalDep, parent_id: ParentId = None) -> MemberOut:
    member = members.grant(principal, EntityRef.parse(entity_type, entity_id, parent_id), sub, body.role)
    return MemberOut(entity_type=member.entity_type, entity_id=member.entity_id, subject=member.subject,
                     role=member.role, parent_id=member.parent_id or None)


@router.delete("/{entity_type}/{entity_id}/members/{sub}", status_code=204, response_class=Response,
               responses=ERRORS, summary="Remove a member")
def delete_member(entity_type: EntityType, entity_id: EntityId, sub: Subject, members: MemberServiceDep,
                  principal: PrincipalDep, parent_id: ParentId = None) -> Response:
    members.revoke(principal, EntityRef.parse(entity_type, entity_id, parent_id), sub)
    return Response(status_code=204)
