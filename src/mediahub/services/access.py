"""Who may see, edit, upload and moderate: pure rules over a Principal and the member list.

Nothing here knows about HTTP. The `require_*` helpers raise the errors the API
shows: a caller who may not even see an item gets `NotFound` (ids cannot be
probed), one who sees it but may not change it gets `Forbidden`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from mediahub.db.models import MediaItem
from mediahub.entities import EntityKind, Target, check_entity_id, get_kind
from mediahub.errors import Forbidden, NotFound

ADMIN = "admin"
MODERATOR = "moderator"


@dataclass(frozen=True)
class Principal:
    """The verified caller: subject, roles, whether verified, and upload grants ("type:id")."""

    sub: str
    roles: frozenset[str] = field(default_factory=frozenset)
    verified: bool = False
    grants: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles

    @property
    def is_moderator(self) -> bool:
        return MODERATOR in self.roles or self.is_admin


class Members(Protocol):
    """The one question the rules ask the member table (MemberRepository answers it)."""

    def is_member(self, entity_type: str, entity_id: str, subject: str) -> bool: ...


@dataclass(frozen=True)
class EntityRef:
    """An entity and, for nested kinds, the parent whose members own it too."""

    kind: EntityKind
    entity_id: str
    parent_id: str | None = None

    @classmethod
    def parse(cls, entity_type: str, entity_id: str) -> EntityRef:
        """From URL parts: unknown type -> NotFound, malformed id -> InvalidInput."""
        return cls(get_kind(entity_type), check_entity_id(entity_id))

    @classmethod
    def of_item(cls, item: MediaItem) -> EntityRef:
        kind = get_kind(item.entity_type)
        parent = (item.meta or {}).get("parent") or {}
        parent_id = parent.get("entity_id") if parent.get("entity_type") == kind.parent else None
        return cls(kind, item.entity_id, parent_id)


def grant_label(entity_type: str, entity_id: str) -> str:
    return f"{entity_type}:{entity_id}"


def owns(principal: Principal | None, entity: EntityRef, members: Members) -> bool:
    """Owner-level rights over an entity's media.

    "self" kinds (users, sales reps) belong to the subject with the same id;
    every kind also belongs to its members, and nested kinds to their parent's
    members. Members of a user entity exist only if an admin added them.
    """
    if principal is None:
        return False
    if entity.kind.owner_rule == "self" and principal.sub == entity.entity_id:
        return True
    if members.is_member(entity.kind.name, entity.entity_id, principal.sub):
        return True
    return bool(
        entity.kind.parent
        and entity.parent_id
        and members.is_member(entity.kind.parent, entity.parent_id, principal.sub)
    )


def can_upload(principal: Principal, target: Target, parent_id: str | None, members: Members) -> bool:
    if principal.is_admin or grant_label(target.kind.name, target.entity_id) in principal.grants:
        return True
    return owns(principal, EntityRef(target.kind, target.entity_id, parent_id), members)


def is_uploader(principal: Principal | None, item: MediaItem) -> bool:
    return principal is not None and item.uploaded_by is not None and item.uploaded_by == principal.sub


def sees_private_metadata(principal: Principal | None, item: MediaItem, members: Members) -> bool:
    """GPS and the like: only for the uploader and the entity's owners."""
    return is_uploader(principal, item) or owns(principal, EntityRef.of_item(item), members)


def sees_private_details(principal: Principal | None, item: MediaItem, members: Members) -> bool:
    """Who uploaded an item, its original filename, camera and capture time: the uploader, the
    entity's owners and moderators (who judge it); anonymous callers and strangers never."""
    return principal is not None and (principal.is_moderator or sees_private_metadata(principal, item, members))


def can_view(principal: Principal | None, item: MediaItem, members: Members) -> bool:
    if item.moderation_status == "approved":
        return True
    if principal is None:
        return False
    return principal.is_moderator or sees_private_metadata(principal, item, members)


def can_edit(principal: Principal | None, item: MediaItem, members: Members) -> bool:
    if principal is None:
        return False
    return principal.is_admin or sees_private_metadata(principal, item, members)


def sees_all_of_entity(principal: Principal | None, entity: EntityRef, members: Members) -> bool:
    """Whether a listing shows this caller pending, rejected and flagged items too."""
    if principal is None:
        return False
    return principal.is_moderator or owns(principal, entity, members)


def require_view(principal: Principal | None, item: MediaItem | None, members: Members) -> MediaItem:
    if item is None or not can_view(principal, item, members):
        raise NotFound("no such media item", code="media_not_found")
    return item


def require_edit(principal: Principal | None, item: MediaItem | None, members: Members) -> MediaItem:
    item = require_view(principal, item, members)
    if not can_edit(principal, item, members):
        raise Forbidden("only the uploader, the entity's members or an admin may change this item")
    return item


def require_moderator(principal: Principal | None) -> Principal:
    if principal is None or not principal.is_moderator:
        raise Forbidden("moderators and admins only", code="moderator_required")
    return principal


def require_admin(principal: Principal | None) -> Principal:
    if principal is None or not principal.is_admin:
        raise Forbidden("admins only", code="admin_required")
    return principal


def require_upload(principal: Principal, target: Target, parent_id: str | None, members: Members) -> None:
    if not can_upload(principal, target, parent_id, members):
        raise Forbidden(f"you may not upload to {target.kind.name} {target.entity_id}", code="upload_forbidden")


def require_entity_edit(principal: Principal, entity: EntityRef, members: Members) -> None:
    if not (principal.is_admin or owns(principal, entity, members)):
        raise Forbidden(f"you may not change the media of {entity.kind.name} {entity.entity_id}")
