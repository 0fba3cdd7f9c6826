"""Entity members: who owns or edits an entity (and so may upload to it and manage its media).

Admins change them over the API, the operator with `mediahub grant`; every change is recorded in the audit
trail in its own transaction.
"""

from __future__ import annotations

from mediahub.db.models import NO_PARENT, AuditEvent, EntityMember
from mediahub.db.repositories import MemberRepository
from mediahub.db.session import Database
from mediahub.errors import NotFound
from mediahub.media import access, audit
from mediahub.media.access import EntityRef, Principal
from mediahub.media.audit import Actor


def _event(action: str, entity: EntityRef, subject: str, before: str | None, after: str | None) -> AuditEvent:
    """The membership as it was and as it is, named by its subject (None: no membership)."""
    return AuditEvent(action=action, entity_type=entity.kind.name, entity_id=entity.entity_id,
                      parent_id=entity.parent_id or NO_PARENT,
                      before=None if before is None else {"subject": subject, "role": before},
                      after=None if after is None else {"subject": subject, "role": after})


class MemberService:
    def __init__(self, database: Database) -> None:
        self.database = database

    def grant(self, principal: Principal | None, entity: EntityRef, subject: str, role: str) -> EntityMember:
        """Make `subject` a member of `entity` with `role` (or change their role): admins, and the operator
        (`principal` None, the CLI)."""
        if principal is not None:
            access.require_admin(principal)
        with self.database.session() as session:
            members = MemberRepository(session)
            was = members.role_of(entity.kind.name, entity.entity_id, subject, entity.parent_id)
            member = members.grant(entity.kind.name, entity.entity_id, subject, role, entity.parent_id)
            if was != member.role:
                audit.record_event(session, Actor.of(principal), _event("member.grant", entity, subject, was,
                                                                        member.role))
            return member

    def revoke(self, principal: Principal | None, entity: EntityRef, subject: str) -> None:
        """Remove `subject`'s membership; 404 `member_not_found` when there is none."""
        if principal is not None:
            access.require_admin(principal)
        with self.database.session() as session:
            members = MemberRepository(session)
            was = members.role_of(entity.kind.name, entity.entity_id, subject, entity.parent_id)
            if was is None or not members.revoke(entity.kind.name, entity.entity_id, subject, entity.parent_id):
                raise NotFound(f"{subject} is not a member of {entity.label}", code="member_not_found")
            audit.record_event(session, Actor.of(principal), _event("member.revoke", entity, subject, was, None))
