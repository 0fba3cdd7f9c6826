"""Who may see, edit, upload and moderate: pure rules over a Principal and the member list.

Nothing here knows about HTTP. The `require_*` helpers raise the errors the API
shows: a caller who may not even see an item gets `NotFound` (ids cannot be
probed), one who sees it but may not change it gets `Forbidden`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from mediahub.db.models import MediaItem
from mediahub.entities import EntityKind, Target, check_entity_id, check_parent, get_kind
from mediahub.errors import Forbidden, InvalidInput, NotFound

ADMIN = "admin"
MODERATOR = "moderator"


@dataclass(frozen=True)
class Principal:
    """The verified caller: subject, roles, whether verified, and grants (entity labels, see `EntityRef.label`)."""

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

    def is_member(self, entity_type: str, entity_id: str, subject: str, parent_id: str | None = None) -> bool: ...


class RememberedMembers:
    """A member list that asks the table each question once: every item of a page of one entity asks
    the same one (one query per page, not one per item). For one transaction that grants nothing."""

    def __init__(self, members: Members) -> None:
        self.members = members
        self.answers: dict[tuple[str, str, str, str | None], bool] = {}

    def is_member(self, entity_type: str, entity_id: str, subject: str, parent_id: str | None = None) -> bool:
        question = (entity_type, entity_id, subject, parent_id or None)
        if question not in self.answers:
            self.answers[question] = self.members.is_member(entity_type, entity_id, subject, parent_id)
        return self.answers[question]


@dataclass(frozen=True)
class EntityRef:
    """An entity: for nested kinds, named by its parent's id too (AM-1 of C1 is not AM-1 of C2)."""

    kind: EntityKind
    entity_id: str
    parent_id: str | None = None  # None for top-level kinds (and for nested rows stored without a parent)

    @classmethod
    def parse(cls, entity_type: str, entity_id: str, parent_id: str | None = None) -> EntityRef:
        """From URL parts: unknown type -> NotFound, malformed id or parent -> InvalidInput."""
        kind = get_kind(entity_type)
        return cls(kind, check_entity_id(entity_id), check_parent(kind, parent_id))

    @classmethod
    def parse_label(cls, label: str) -> EntityRef:
        """From `type:id`, or `parent_type:parent_id/type:id` for nested kinds (grants, the CLI)."""
        parts = [part.partition(":") for part in label.split("/")]
        if len(parts) == 1:
            return cls.parse(parts[0][0], parts[0][2])
        if len(parts) == 2:
            (parent_type, _, parent_id), (entity_type, _, entity_id) = parts
            ref = cls.parse(entity_type, entity_id, parent_id)
            if get_kind(parent_type).name == ref.kind.parent:
                return ref
        raise InvalidInput(f"expected TYPE:ID or PARENT_TYPE:PARENT_ID/TYPE:ID, not {label[:200]!r}",
                           code="invalid_entity")

    @classmethod
    def of_item(cls, item: MediaItem) -> EntityRef:
        return cls(get_kind(item.entity_type), item.entity_id, item.parent_id or None)

    @classmethod
    def of_target(cls, target: Target) -> EntityRef:
        return cls(target.kind, target.entity_id, target.parent_id)

    @property
    def parent(self) -> EntityRef | None:
        if self.kind.parent is None or self.parent_id is None:
            return None
        return EntityRef(get_kind(self.kind.parent), self.parent_id)

    @property
    def label(self) -> str:
        """`community:C1`, `community:C1/amenity:AM-1`: how grants name an entity."""
        own = f"{self.kind.name}:{self.entity_id}"
        return own if self.parent is None else f"{self.parent.label}/{own}"


def _holds(principal: Principal, entity: EntityRef, members: Members) -> bool:
    """A membership of the entity (in the database) or a grant of it (in the token): the same right."""
    return entity.label in principal.grants or members.is_member(
        entity.kind.name, entity.entity_id, principal.sub, entity.parent_id)


def owns(principal: Principal | None, entity: EntityRef, members: Members) -> bool:
    """Owner-level rights over an entity's media: upload, manage, delete, reorder.

    "self" kinds (users, sales reps) belong to the subject with the same id;
    every kind also belongs to its members and grant holders, and a nested kind
    to those of its parent. Members of a user entity exist only if an admin added them.
    """
    if principal is None:
        return False
    if entity.kind.owner_rule == "self" and principal.sub == entity.entity_id:
        return True
    parent = entity.parent
    return _holds(principal, entity, members) or (parent is not None and _holds(principal, parent, members))


def manages(principal: Principal | None, entity: EntityRef, members: Members) -> bool:
    """The one rule for uploading to an entity and managing its media: admins and its owners."""
    return principal is not None and (principal.is_admin or owns(principal, entity, members))


def can_upload(principal: Principal, target: Target, members: Members) -> bool:
    return manages(principal, EntityRef.of_target(target), members)


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
    return is_uploader(principal, item) or manages(principal, EntityRef.of_item(item), members)


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


def moderates(principal: Principal | None) -> bool:
    """Approving and rejecting items: moderators and admins."""
    return principal is not None and principal.is_moderator


def require_moderator(principal: Principal | None) -> Principal:
    if principal is None or not principal.is_moderator:
        raise Forbidden("moderators and admins only", code="moderator_required")
    return principal


def require_admin(principal: Principal | None) -> Principal:
    if principal is None or not principal.is_admin:
        raise Forbidden("admins only", code="admin_required")
    return principal


def require_upload(principal: Principal, target: Target, members: Members) -> None:
    if not can_upload(principal, target, members):
        raise Forbidden(f"you may not upload to {EntityRef.of_target(target).label}", code="upload_forbidden")


def require_entity_edit(principal: Principal, entity: EntityRef, members: Members) -> None:
    if not manages(principal, entity, members):
        raise Forbidden(f"you may not change the media of {entity.label}")


def starts_approved(principal: Principal | None, verified: bool, *, auto_approve_verified: bool) -> bool:
    """Admins' and moderators' uploads need no moderator; verified uploaders' when the setting says so."""
    return (principal is not None and principal.is_moderator) or (verified and auto_approve_verified)
