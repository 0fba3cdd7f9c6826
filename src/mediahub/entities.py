"""The kind table: every entity kind, its media fields, limits and who may upload.

The HTTP upload routes, key layout, slot rules and permissions are all derived
from this table; adding a kind or a field is a data change, not new handlers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from mediahub.errors import InvalidInput, NotFound
from mediahub.formats import MediaKind

Slot = Literal["single", "gallery"]
OwnerRule = Literal["self", "members"]

# \Z, not $: `$` also matches before a trailing newline ("123\n" would pass).
ENTITY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")


@dataclass(frozen=True)
class FieldSpec:
    name: str  # stored as entity_field, e.g. "avatar"
    folder: str  # key segment, e.g. "avatars"
    route: str  # URL segment after the entity id, e.g. "avatar"
    slot: Slot
    media_kinds: frozenset[MediaKind] = frozenset({"image"})
    max_items: int = 100  # gallery cap; single slots hold one current item
    # Listing photos: its images get machine tags (a room type, objects) from a tagging job after upload.
    room_tags: bool = False


@dataclass(frozen=True)
class EntityKind:
    name: str  # stored as entity_type, e.g. "user"
    plural: str  # URL and key prefix, e.g. "users"
    id_param: str  # path parameter name, e.g. "user_id"
    owner_rule: OwnerRule
    fields: tuple[FieldSpec, ...]
    parent: str | None = None  # kind whose members also own this one (amenity -> community)
    parent_param: str | None = None

    def field(self, name: str) -> FieldSpec:
        """A media field by its name (`gallery`) or by its route segment (`photos`): people use both."""
        for spec in self.fields:
            if name in (spec.name, spec.route):
                return spec
        valid = self.field_names
        raise InvalidInput(f"entity type {self.name!r} has no media field {name!r}; valid: {', '.join(valid)}",
                           code="unknown_field", allowed=valid)

    @property
    def field_names(self) -> list[str]:
        """Every word `field()` accepts: each field's name and route segment."""
        return sorted({word for spec in self.fields for word in (spec.name, spec.route)})


_IMAGE_VIDEO: frozenset[MediaKind] = frozenset({"image", "video"})

KINDS: tuple[EntityKind, ...] = (
    EntityKind(
        "user", "users", "user_id", "self",
        (
            FieldSpec("avatar", "avatars", "avatar", "single"),
            FieldSpec("cover", "covers", "cover", "single"),
        ),
    ),
    EntityKind(
        "property", "properties", "property_id", "members",
        (FieldSpec("gallery", "photos", "photos", "gallery", _IMAGE_VIDEO, max_items=200, room_tags=True),),
    ),
    EntityKind(
        "builder", "builders", "builder_id", "members",
        (
            FieldSpec("portfolio", "portfolio", "portfolio", "gallery", _IMAGE_VIDEO, room_tags=True),
            FieldSpec("logo", "logos", "logo", "single"),
        ),
    ),
    EntityKind(
        "community", "communities", "community_id", "members",
        (FieldSpec("photos", "photos", "photos", "gallery", _IMAGE_VIDEO, room_tags=True),),
    ),
    EntityKind(
        "amenity", "amenities", "amenity_id", "members",
        (FieldSpec("photos", "photos", "photos", "gallery", room_tags=True),),
        parent="community",
        parent_param="community_id",
    ),
    EntityKind(
        "sales_rep", "sales-reps", "rep_id", "self",
        (FieldSpec("avatar", "avatars", "avatar", "single"),),
    ),
    EntityKind(
        "post", "posts", "post_id", "members",
        (FieldSpec("media", "media", "media", "gallery", _IMAGE_VIDEO, max_items=20),),
    ),
)

_BY_NAME = {kind.name: kind for kind in KINDS}
_BY_PLURAL = {kind.plural: kind for kind in KINDS}


def get_kind(name: str) -> EntityKind:
    """Look a kind up by its name (`user`) or plural (`users`)."""
    kind = _BY_NAME.get(name) or _BY_PLURAL.get(name)
    if kind is None:
        raise NotFound(f"unknown entity type {name!r}", code="unknown_entity_type")
    return kind


def nested_kinds(kind: EntityKind) -> tuple[EntityKind, ...]:
    """The kinds nested in `kind` (a community's amenities)."""
    return tuple(nested for nested in KINDS if nested.parent == kind.name)


def check_entity_id(entity_id: str) -> str:
    """Entity ids are short, URL- and key-safe strings (`123`, `USR-123`)."""
    if not ENTITY_ID_RE.match(entity_id):
        raise InvalidInput(
            "entity id must be 1-64 characters of letters, digits, '-' or '_'", code="invalid_entity_id"
        )
    return entity_id


def check_parent(kind: EntityKind, parent_id: str | None) -> str | None:
    """A nested kind is named by its parent's id and its own (amenity AM-1 of community C1 is not
    AM-1 of C2); a top-level kind has no parent."""
    if kind.parent is None:
        if parent_id is not None:
            raise InvalidInput(f"entity type {kind.name!r} has no parent entity", code="unexpected_parent")
        return None
    if parent_id is None:
        raise InvalidInput(f"an {kind.name} belongs to a {kind.parent}: give the {kind.parent}'s id too",
                           code="parent_required", parent_type=kind.parent)
    return check_entity_id(parent_id)


@dataclass(frozen=True)
class Target:
    """Where an upload goes: one media field of one entity (of one parent, for nested kinds)."""

    kind: EntityKind
    entity_id: str
    field: FieldSpec
    parent_id: str | None = None

    @classmethod
    def parse(cls, entity_type: str, entity_id: str, field: str, parent_id: str | None = None) -> Target:
        kind = get_kind(entity_type)
        return cls(kind, check_entity_id(str(entity_id)), kind.field(field), check_parent(kind, parent_id))

    @property
    def label(self) -> str:
        own = f"{self.kind.name}:{self.entity_id}:{self.field.name}"
        return own if self.parent_id is None else f"{self.kind.parent}:{self.parent_id}/{own}"
