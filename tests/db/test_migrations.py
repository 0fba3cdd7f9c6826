"""The migrations build exactly the schema the models describe, on every backend."""

from __future__ import annotations

import importlib
import json

from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, select, text

from mediahub.db import migrate
from mediahub.db.models import Base, MediaItem
from mediahub.db.repositories import Amounts, UsageRepository, VariantRepository
from mediahub.db.session import Database

APP_TABLES = set(Base.metadata.tables)
MIGRATION_0008 = importlib.import_module("mediahub.db.migrations.versions.0008_media_variants")


def _table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _head(url: str) -> str | None:
    return ScriptDirectory.from_config(migrate.alembic_config(url)).get_current_head()


def test_upgrade_downgrade_upgrade(database_url: str) -> None:
    assert migrate.current(database_url) is None

    migrate.upgrade(database_url)
    assert migrate.current(database_url) == _head(database_url)
    # No dialect noise needs filtering: SQLite, PostgreSQL and MariaDB all
    # compare clean (types included), so any difference at all is a real one.
    assert migrate.check_schema_matches_models(database_url) == []

    migrate.downgrade(database_url, "base")
    assert migrate.current(database_url) is None
    # Alembic keeps its own (now empty) bookkeeping table; nothing of ours is left.
    assert _table_names(database_url) <= {"alembic_version"}

    migrate.upgrade(database_url)
    assert APP_TABLES <= _table_names(database_url)
    assert migrate.check_schema_matches_models(database_url) == []


def test_schema_check_reports_drift(database_url: str) -> None:
    """Guards against a check that passes because it compares nothing."""
    migrate.upgrade(database_url)
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            # MariaDB needs the table named; the others reject it.
            on_table = " ON media_items" if engine.dialect.name == "mysql" else ""
            connection.execute(text(f"DROP INDEX ix_media_sha256{on_table}"))
    finally:
        engine.dispose()

    differences = migrate.check_schema_matches_models(database_url)

    assert [(kind, index.name) for kind, index in differences] == [("add_index", "ix_media_sha256")]


def test_percent_in_url_survives_config_interpolation() -> None:
    url = "postgresql+psycopg://user:p%40ss@db.example/media"
    assert migrate.alembic_config(url).get_main_option("sqlalchemy.url") == url


def test_the_migrated_databases_tests_get_are_at_head_and_match_the_models(migrated_database_url: str) -> None:
    """Tests get copies of a database migrated once per session (tests/support/databases.py): the copy
    must be what the migrations make."""
    assert migrate.current(migrated_database_url) == _head(migrated_database_url)
    assert _table_names(migrated_database_url) == APP_TABLES | {"alembic_version"}
    assert migrate.check_schema_matches_models(migrated_database_url) == []


def _insert_items_at_0007(url: str, variants: dict[str, object]) -> None:
    """Rows as 0007 stored them: `variants` maps a public id to its JSON list."""
    columns = ("public_id, entity_type, entity_id, entity_field, position, is_primary, media_type, storage_type, "
               "original_key, variants, content_type, byte_size, tags, metadata, moderation_status, "
               "processing_status, sha256, md5, created_at, updated_at")
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            for public_id, entries in variants.items():
                connection.execute(text(
                    f"INSERT INTO media_items ({columns}) VALUES (:public_id, 'property', 'P-1', 'photos', 0, "
                    "false, 'image', 'local', :key, :variants, 'image/jpeg', 1, '[]', '{}', 'approved', 'ready', "
                    ":sha, :md5, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"),
                    {"public_id": public_id, "key": f"k/{public_id}.jpg", "variants": json.dumps(entries),
                     "sha": "a" * 64, "md5": "b" * 32})
    finally:
        engine.dispose()


def _json_variants(url: str) -> dict[str, object]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT public_id, variants FROM media_items ORDER BY id")).all()
    finally:
        engine.dispose()
    return {public_id: json.loads(value) if isinstance(value, str) else value for public_id, value in rows}


def _entry(name: str, fmt: str, key: str, size: int = 10) -> dict[str, object]:
    return {"name": name, "format": fmt, "key": key, "width": 4, "height": 3, "size": size,
            "content_type": f"image/{fmt}"}


def test_0008_turns_json_variants_into_rows_and_back(database_url: str) -> None:
    migrate.upgrade(database_url, "0007")
    before = {
        "plain": [_entry("small", "jpeg", "k/plain_small.jpg"), _entry("small", "webp", "k/plain_small.webp")],
        # A pair listed twice (a job appended its rendition): the later entry wins.
        "twice": [_entry("small", "webp", "k/twice_old.webp", 1), _entry("large", "jpeg", "k/twice_large.jpg"),
                  _entry("small", "webp", "k/twice_new.webp", 2)],
        "broken": [{"name": "small"}, "junk", _entry("web", "mp4", "k/broken_web.mp4") | {"width": None}],
        "none": [],
    }
    # Past one page of the copy, so the batches are exercised too.
    many = {f"bulk{n:03}": [_entry("small", "jpeg", f"k/bulk{n}_small.jpg")] for n in range(MIGRATION_0008.PAGE + 5)}
    _insert_items_at_0007(database_url, {**before, **many})

    migrate.upgrade(database_url)
    assert migrate.check_schema_matches_models(database_url) == []
    database = Database(database_url)
    try:
        with database.session() as session:
            items = {item.public_id: item for item in session.scalars(select(MediaItem))}
            rows = {public_id: [(v.name, v.format, v.storage_key, v.width, v.height, v.byte_size, v.content_type)
                                for v in item.variants] for public_id, item in items.items()}
            found = VariantRepository(session).find_by_key("k/bulk503_small.jpg")
            assert found is not None and (found[0].public_id, found[1]) == ("bulk503", "image/jpeg")
    finally:
        database.dispose()
    assert rows["plain"] == [("small", "jpeg", "k/plain_small.jpg", 4, 3, 10, "image/jpeg"),
                             ("small", "webp", "k/plain_small.webp", 4, 3, 10, "image/webp")]
    assert rows["twice"] == [("large", "jpeg", "k/twice_large.jpg", 4, 3, 10, "image/jpeg"),
                             ("small", "webp", "k/twice_new.webp", 4, 3, 2, "image/webp")]
    assert rows["broken"] == [("web", "mp4", "k/broken_web.mp4", 0, 3, 10, "image/mp4")]
    assert rows["none"] == []
    assert len(rows) == len(before) + len(many) and all(len(rows[name]) == 1 for name in many)

    migrate.downgrade(database_url, "0007")
    after = _json_variants(database_url)
    assert after["plain"] == before["plain"]
    assert after["twice"] == [before["twice"][1], before["twice"][2]]
    assert after["broken"] == [before["broken"][2] | {"width": 0}]
    assert after["none"] == [] and after["bulk504"] == many["bulk504"]
    assert "media_variants" not in _table_names(database_url)
    migrate.upgrade(database_url)
    assert migrate.check_schema_matches_models(database_url) == []


def _insert_items_at_0008(url: str, items: list[tuple[str, str, int, list[tuple[str, int]]]]) -> None:
    """Rows as 0008 stores them: (public id, moderation status, original bytes, [(variant key, bytes)])."""
    columns = ("public_id, entity_type, entity_id, entity_field, position, is_primary, media_type, storage_type, "
               "original_key, content_type, byte_size, tags, metadata, moderation_status, processing_status, "
               "sha256, md5, created_at, updated_at")
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            for public_id, status, size, variant_rows in items:
                connection.execute(text(
                    f"INSERT INTO media_items ({columns}) VALUES (:public_id, 'property', 'P-1', 'gallery', 0, "
                    "false, 'image', 'local', :key, 'image/jpeg', :size, '[]', '{}', :status, 'ready', "
                    ":sha, :md5, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"),
                    {"public_id": public_id, "key": f"k/{public_id}.jpg", "size": size, "status": status,
                     "sha": "a" * 64, "md5": "b" * 32})
                media_id = connection.scalar(text("SELECT id FROM media_items WHERE public_id = :p"), {"p": public_id})
                for n, (key, variant_size) in enumerate(variant_rows):
                    connection.execute(text(
                        "INSERT INTO media_variants (media_id, name, format, storage_key, width, height, byte_size, "
                        "content_type, created_at) VALUES (:media_id, :name, 'jpeg', :key, 1, 1, :size, "
                        "'image/jpeg', '2026-01-01 00:00:00')"),
                        {"media_id": media_id, "name": f"v{n}", "key": key, "size": variant_size})
    finally:
        engine.dispose()


def _indexes(url: str, table: str) -> dict[str, list[str]]:
    engine = create_engine(url)
    try:
        return {index["name"]: index["column_names"] for index in inspect(engine).get_indexes(table)}
    finally:
        engine.dispose()


def test_0010_fills_the_usage_totals_from_the_rows(database_url: str) -> None:
    migrate.upgrade(database_url, "0008")
    _insert_items_at_0008(database_url, [
        # A variant naming the original, two naming one object: 3 objects.
        ("shared", "approved", 1000, [("k/shared.jpg", 1000), ("k/shared_m.jpg", 300), ("k/shared_m.jpg", 300),
                                      ("k/shared_t.jpg", 100)]),
        ("plain", "pending", 50, [("k/plain_t.jpg", 5)]),
        ("bare", "pending", 7, []),
    ])

    migrate.upgrade(database_url)
    database = Database(database_url)
    try:
        with database.session() as session:
            usage = UsageRepository(session)
            kept, counted = usage.current(), usage.counted()
            totals = usage.totals()
    finally:
        database.dispose()
    assert kept == counted
    assert totals.groups["moderation_status"] == {"approved": Amounts(1, 1000, 3, 1400),
                                                  "pending": Amounts(2, 57, 3, 62)}
    assert totals.groups["storage_type"] == {"local": Amounts(3, 1057, 6, 1462)}
    assert (totals.objects, totals.object_bytes) == (6, 1462)

    migrate.downgrade(database_url, "0008")
    assert "media_usage" not in _table_names(database_url)


def test_0009_extends_the_entity_index_and_indexes_the_moderation_queue(database_url: str) -> None:
    migrate.upgrade(database_url, "0008")
    assert _indexes(database_url, "media_items")["ix_media_moderation_status"] == ["moderation_status"]

    migrate.upgrade(database_url, "0009")
    items, reports = _indexes(database_url, "media_items"), _indexes(database_url, "media_reports")
    assert items["ix_media_entity"] == ["entity_type", "parent_id", "entity_id", "entity_field", "position", "id",
                                        "moderation_status"]
    assert items["ix_media_moderation_queue"] == ["moderation_status", "created_at", "id"]
    assert "ix_media_moderation_status" not in items
    assert reports["ix_reports_open"] == ["open_marker", "media_id"]

    migrate.downgrade(database_url, "0008")
    items = _indexes(database_url, "media_items")
    assert items["ix_media_entity"] == ["entity_type", "parent_id", "entity_id", "entity_field", "position"]
    assert items["ix_media_moderation_status"] == ["moderation_status"] and "ix_media_moderation_queue" not in items
    assert "ix_reports_open" not in _indexes(database_url, "media_reports")
