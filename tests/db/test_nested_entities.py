"""Nested entities and gallery limits in the metadata store, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import create_engine, text

from mediahub.db import migrate
from mediahub.db.models import MediaItem
from mediahub.db.repositories import MediaRepository, MemberRepository
from mediahub.db.session import Database
from mediahub.errors import Conflict
from tests.db.test_repositories import make_item


def amenity(parent_id: str, **overrides) -> MediaItem:
    return make_item("photos", "amenity", "AM-1", parent_id=parent_id, **overrides)


def test_one_nested_id_under_two_parents_is_two_entities(db: Database) -> None:
    with db.session() as session:
        repo = MediaRepository(session)
        c1 = repo.add(amenity("C1", is_primary=True))
        c2 = repo.add(amenity("C2", is_primary=True))  # does not demote C1's primary
        community = repo.add(make_item("photos", "community", "C1"))

    with db.session() as session:
        repo = MediaRepository(session)
        assert [(i.id, i.is_primary, i.position) for i in repo.list_for_entity("amenity", "AM-1", parent_id="C1")[0]] \
            == [(c1.id, True, 0)]
        assert [(i.id, i.is_primary, i.position) for i in repo.list_for_entity("amenity", "AM-1", parent_id="C2")[0]] \
            == [(c2.id, True, 0)]
        assert repo.list_for_entity("amenity", "AM-1")[1] == 0  # no parentless AM-1
        page, total = repo.list_for_entity("community", "C1", nested_types=("amenity",))
        assert ([i.id for i in page], total) == ([community.id, c1.id], 2)
        with pytest.raises(Conflict):
            repo.reorder("amenity", "AM-1", "photos", [c1.id, c2.id], parent_id="C1")

    with db.session() as session:
        members = MemberRepository(session)
        members.grant("amenity", "AM-1", "alice", parent_id="C1")
        members.grant("amenity", "AM-1", "alice", parent_id="C2", role="editor")  # a second membership
        assert members.is_member("amenity", "AM-1", "alice", parent_id="C1")
        assert not members.is_member("amenity", "AM-1", "alice")
        assert not members.is_member("amenity", "AM-1", "alice", parent_id="C3")
        assert [m.role for m in members.list("amenity", "AM-1", parent_id="C2")] == ["editor"]
        assert members.revoke("amenity", "AM-1", "alice", parent_id="C2") is True
        assert members.is_member("amenity", "AM-1", "alice", parent_id="C1")


def test_a_full_gallery_refuses_the_next_item(db: Database) -> None:
    with db.session() as session:
        repo = MediaRepository(session)
        for _ in range(3):
            repo.add(make_item(), max_items=3)
        with pytest.raises(Conflict) as full:
            repo.add(make_item(), max_items=3)
        assert (full.value.code, full.value.details["limit"]) == ("gallery_full", 3)
        repo.add(make_item(entity_id="L2"), max_items=3)  # another entity's gallery has room
        with pytest.raises(Conflict):
            repo.require_room("listing", "L1", "gallery", 3)
        repo.require_room("listing", "L1", "gallery", 4)


def test_migration_0006_takes_the_parent_recorded_at_upload(database_url: str) -> None:
    migrate.upgrade(database_url, "0005")
    engine = create_engine(database_url)
    columns = ("public_id, entity_type, entity_id, entity_field, position, is_primary, primary_marker, media_type, "
               "storage_type, original_key, variants, content_type, byte_size, tags, metadata, moderation_status, "
               "processing_status, sha256, md5, created_at, updated_at")
    rows = {
        "nested": ("amenity", {"parent": {"entity_type": "community", "entity_id": "C1"}}, True),
        "nested-too": ("amenity", {"parent": {"entity_type": "community", "entity_id": "C2"}}, False),
        "orphan": ("amenity", {}, False),
        "forged": ("amenity", {"parent": {"entity_type": "community", "entity_id": "../x"}}, False),
        "top": ("community", {"parent": {"entity_type": "community", "entity_id": "C9"}}, False),
    }
    try:
        with engine.begin() as connection:
            for public_id, (entity_type, meta, primary) in rows.items():
                connection.execute(text(
                    f"INSERT INTO media_items ({columns}) VALUES (:public_id, :entity_type, 'AM-1', 'photos', 0, "
                    ":primary, :marker, 'image', 'local', :key, '[]', 'image/jpeg', 1, '[]', :meta, 'approved', "
                    "'ready', :sha, :md5, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"),
                    {"public_id": public_id, "entity_type": entity_type, "primary": primary,
                     "marker": True if primary else None, "key": f"k/{public_id}.jpg", "meta": json.dumps(meta),
                     "sha": "a" * 64, "md5": "b" * 32})
            connection.execute(text("INSERT INTO entity_members (entity_type, entity_id, subject, role, created_at) "
                                    "VALUES ('amenity', 'AM-1', 'alice', 'owner', '2026-01-01 00:00:00')"))
    finally:
        engine.dispose()

    migrate.upgrade(database_url)
    assert migrate.check_schema_matches_models(database_url) == []
    database = Database(database_url)
    try:
        with database.session() as session:
            parents = {item.public_id: item.parent_id for item in session.query(MediaItem)}
            assert parents == {"nested": "C1", "nested-too": "C2", "orphan": "", "forged": "", "top": ""}
            members = MemberRepository(session)
            assert members.is_member("amenity", "AM-1", "alice")  # a parentless membership: parentless rows only
            assert not members.is_member("amenity", "AM-1", "alice", parent_id="C1")
    finally:
        database.dispose()
    migrate.downgrade(database_url, "0005")
    migrate.upgrade(database_url)
