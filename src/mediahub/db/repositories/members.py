"""Entity members: who owns or edits an entity."""

from __future__ import annotations

import builtins
from typing import Any

from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mediahub.db.models import NO_PARENT, EntityMember
from mediahub.errors import InvalidInput

MEMBER_ROLES = frozenset({"owner", "editor"})


class MemberRepository:
    """Who owns or edits an entity; a nested kind's entity is named by its `parent_id` too."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def grant(self, entity_type: str, entity_id: str, subject: str, role: str = "owner",
              parent_id: str | None = None) -> EntityMember:
        """Add `subject` with `role`, or change the role of an existing member."""
        if role not in MEMBER_ROLES:
            raise InvalidInput(f"unknown role {role!r}", code="invalid_role", allowed=sorted(MEMBER_ROLES))
        member = (self._find(entity_type, entity_id, subject, parent_id)
                  or self._insert(entity_type, entity_id, subject, role, parent_id))
        member.role = role
        self.session.flush()
        return member

    def revoke(self, entity_type: str, entity_id: str, subject: str, parent_id: str | None = None) -> bool:
        """Remove the membership; False when there was none."""
        result: Any = self.session.execute(
            delete(EntityMember).where(*self._key(entity_type, entity_id, subject, parent_id)))
        return bool(result.rowcount)

    def is_member(self, entity_type: str, entity_id: str, subject: str, parent_id: str | None = None) -> bool:
        return self._find(entity_type, entity_id, subject, parent_id) is not None

    def role_of(self, entity_type: str, entity_id: str, subject: str, parent_id: str | None = None) -> str | None:
        """The member's role; None when `subject` is no member."""
        member = self._find(entity_type, entity_id, subject, parent_id)
        return None if member is None else member.role

    def _find(self, entity_type: str, entity_id: str, subject: str, parent_id: str | None) -> EntityMember | None:
        query = select(EntityMember).where(*self._key(entity_type, entity_id, subject, parent_id))
        return self.session.scalars(query).one_or_none()

    def _insert(self, entity_type: str, entity_id: str, subject: str, role: str,
                parent_id: str | None) -> EntityMember:
        """Insert in a savepoint; if a concurrent grant won the race, use its row."""
        member = EntityMember(entity_type=entity_type, entity_id=entity_id, parent_id=parent_id or NO_PARENT,
                              subject=subject, role=role)
        try:
            with self.session.begin_nested():
                self.session.add(member)
        except IntegrityError:
            existing = self._find(entity_type, entity_id, subject, parent_id)
            if existing is None:
                raise
            return existing
        return member

    @staticmethod
    def _key(entity_type: str, entity_id: str, subject: str,
             parent_id: str | None) -> tuple[ColumnElement[bool], ...]:
        return (*MemberRepository._of(entity_type, entity_id, parent_id), EntityMember.subject == subject)

    @staticmethod
    def _of(entity_type: str, entity_id: str, parent_id: str | None) -> tuple[ColumnElement[bool], ...]:
        return (
            EntityMember.entity_type == entity_type,
            EntityMember.parent_id == (parent_id or NO_PARENT),
            EntityMember.entity_id == entity_id,
        )

    # Defined last: inside the class body the name `list` is this method from here on.
    def list(self, entity_type: str, entity_id: str, parent_id: str | None = None) -> builtins.list[EntityMember]:
        query = (
            select(EntityMember)
            .where(*self._of(entity_type, entity_id, parent_id))
            .order_by(EntityMember.id)
        )
        return builtins.list(self.session.scalars(query))
