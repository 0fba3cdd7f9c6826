"""Entity members (owners and editors may upload and manage media); admins only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from mediahub.api.deps import PrincipalDep, SessionDep
from mediahub.api.errors import problem_responses
from mediahub.api.schemas import MemberOut, MemberRequest, Name
from mediahub.db.repositories import MemberRepository
from mediahub.errors import NotFound
from mediahub.media.access import EntityRef, require_admin

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
               session: SessionDep, principal: PrincipalDep, parent_id: ParentId = None) -> MemberOut:
    require_admin(principal)
    entity = EntityRef.parse(entity_type, entity_id, parent_id)
    member = MemberRepository(session).grant(entity.kind.name, entity.entity_id, sub, body.role, entity.parent_id)
    return MemberOut(entity_type=member.entity_type, entity_id=member.entity_id, subject=member.subject,
                     role=member.role, parent_id=member.parent_id or None)


@router.delete("/{entity_type}/{entity_id}/members/{sub}", status_code=204, response_class=Response,
               responses=ERRORS, summary="Remove a member")
def delete_member(entity_type: EntityType, entity_id: EntityId, sub: Subject, session: SessionDep,
                  principal: PrincipalDep, parent_id: ParentId = None) -> Response:
    require_admin(principal)
    entity = EntityRef.parse(entity_type, entity_id, parent_id)
    if not MemberRepository(session).revoke(entity.kind.name, entity.entity_id, sub, entity.parent_id):
        raise NotFound(f"{sub} is not a member of {entity.label}", code="member_not_found")
    return Response(status_code=204)
