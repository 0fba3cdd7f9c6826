"""`media_usage` follows every write of media rows, in the writer's transaction, and equals a recount."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, update
from sqlalchemy.orm import Session

from mediahub.config import Settings
from mediahub.db.models import MediaItem, MediaUsage, MediaVariant
from mediahub.db.repositories import MediaRepository, UsageRepository, VariantRepository, VariantRow
from mediahub.db.repositories.media import lock_item
from mediahub.db.repositories.usage import USAGE_SHARDS, Amounts
from mediahub.db.session import Database
from mediahub.db.usage_tracking import UntrackedWrite
from mediahub.errors import DatabaseUnavailable
from mediahub.media import moderation
from mediahub.media.audit import OPERATOR
from mediahub.media.cdn import CdnPurge
from mediahub.storage.local import LocalStorage
from tests.db.test_repositories import make_item, run_transaction
from tests.support.concurrency import run_together

NO_CDN = CdnPurge(Settings(_env_file=None), LocalStorage(Path("unused")))  # no CDN_PURGE_URL: queues nothing

STATUSES = ("pending", "approved", "rejected", "flagged")


def _variant(name: str, key: str, size: int, fmt: str = "jpeg") -> MediaVariant:
    return MediaVariant(name=name, format=fmt, storage_key=key, width=10, height=10, byte_size=size,
                        content_type=f"image/{fmt}")


def shared_item(**overrides) -> MediaItem:
    """A property photo: original (1000 B) + thumbnail (100 B) + `large` naming the original + `medium` and
    `small` naming one 300 B object: three objects, 1400 bytes."""
    item = make_item(byte_size=1000, **{"entity_type": "property", **overrides})
    key = item.original_key.removesuffix(".jpg")
    item.variants = [_variant("thumbnail", f"{key}_t.jpg", 100), _variant("large", item.original_key, 1000),
                     _variant("medium", f"{key}_m.jpg", 300), _variant("small", f"{key}_m.jpg", 300)]
    return item


def kept(db: Database) -> dict:
    with db.session() as session:
        return UsageRepository(session).current()


def counted(db: Database) -> dict:
    with db.session() as session:
        return UsageRepository(session).counted()


def assert_in_step(db: Database) -> None:
    assert kept(db) == counted(db)


def test_an_item_counts_its_original_and_each_distinct_object_once(db: Database) -> None:
    with db.session() as session:
        MediaRepository(session).add(shared_item(moderation_status="approved"))
        MediaRepository(session).add(make_item(byte_size=7, storage_type="s3", media_type="video"))

    with db.session() as session:
        totals = UsageRepository(session).totals()
    one_item = Amounts(items=1, bytes=1000, objects=3, object_bytes=1400)
    other = Amounts(items=1, bytes=7, objects=2, object_bytes=107)  # make_item: one 100 B thumbnail
    assert totals.groups == {
        "storage_type": {"local": one_item, "s3": other},
        "entity_type": {"property": one_item, "listing": other},
        "media_type": {"image": one_item, "video": other},
        "moderation_status": {"approved": one_item, "pending": other},
    }
    assert (totals.objects, totals.object_bytes) == (5, 1507)
    assert_in_step(db)


def test_every_write_path_keeps_the_totals_in_step(db: Database) -> None:
    with db.session() as session:
        repo = MediaRepository(session)
        first, second, third = (repo.add(shared_item()) for _ in range(3))
    assert_in_step(db)

    with db.session() as session:  # a moderator's decision: an attribute of a loaded item
        moderation.decide(session, MediaRepository(session).lock(first.id), "approved", None, NO_CDN, OPERATOR)
    assert_in_step(db)

    with db.session() as session:  # a job swapping variants: bulk DELETE and INSERT of variant rows
        variants = VariantRepository(session)
        old = [v.id for v in variants.for_item(second.id) if v.name in {"medium", "small"}]
        variants.replace(second.id, old, [VariantRow("medium", "webp", "new/medium.webp", 8, 8, 55, "image/webp")])
    assert_in_step(db)

    with db.session() as session:  # variant rows added and removed through the item's collection
        item = MediaRepository(session).get(third.id)
        item.variants = [v for v in item.variants if v.name != "thumbnail"] + [_variant("xl", "new/xl.jpg", 9)]
    assert_in_step(db)

    with db.session() as session:  # bulk UPDATE of a grouping column, and of the original's object
        session.execute(update(MediaItem).where(MediaItem.id == second.id).values(moderation_status="rejected"))
        session.execute(update(MediaItem).where(MediaItem.id == third.id)
                        .values(original_key="new/original.jpg", byte_size=2000))
    assert_in_step(db)

    with db.session() as session:  # an ORM change and a bulk statement in one transaction, then a delete
        item = MediaRepository(session).get(third.id)
        item.moderation_status = "flagged"
        session.execute(update(MediaItem).where(MediaItem.id == third.id).values(storage_type="s3"))
        MediaRepository(session).delete(MediaRepository(session).get(first.id))
    assert_in_step(db)

    with db.session() as session:  # bulk DELETE of items (their variants go by cascade)
        session.execute(delete(MediaItem).where(MediaItem.id == second.id))
    assert_in_step(db)
    with db.session() as session:
        totals = UsageRepository(session).totals()
    assert sum(a.items for a in totals.groups["storage_type"].values()) == 1


def test_updates_that_change_no_total_are_not_followed(db: Database) -> None:
    [item] = [make_item()]
    with db.session() as session:
        MediaRepository(session).add(item)
    before = kept(db)

    with db.session() as session:
        session.execute(update(MediaItem).where(MediaItem.id == item.id).values(processing_status="failed"))
        session.get(MediaItem, item.id).caption = "only words"

    assert kept(db) == before == counted(db)


def test_a_rolled_back_transaction_or_savepoint_leaves_the_totals_alone(db: Database) -> None:
    with db.session() as session:
        MediaRepository(session).add(make_item())
    before = kept(db)

    with pytest.raises(RuntimeError), db.session() as session:
        MediaRepository(session).add(make_item())
        session.flush()
        raise RuntimeError("changed my mind")
    assert kept(db) == before

    with db.session() as session:
        with pytest.raises(RuntimeError), session.begin_nested():
            MediaRepository(session).add(make_item(entity_type="dropped"))
            raise RuntimeError("savepoint rolled back")
        with session.begin_nested():
            MediaRepository(session).add(make_item(entity_type="kept"))
    assert ("entity_type", "dropped") not in kept(db)
    assert kept(db)[("entity_type", "kept")].items == 1
    assert_in_step(db)


def test_writes_the_totals_cannot_follow_are_refused(db: Database) -> None:
    [item] = [make_item()]
    with db.session() as session:
        MediaRepository(session).add(item)

    with pytest.raises(UntrackedWrite), db.session() as session:
        session.execute(insert(MediaItem), [{"public_id": "x"}])
    with pytest.raises(UntrackedWrite), db.session() as session:
        session.execute(update(MediaVariant).where(MediaVariant.media_id == item.id).values(media_id=item.id + 1))
    assert_in_step(db)


def test_recount_rebuilds_drifted_totals(db: Database) -> None:
    with db.session() as session:
        for _ in range(3):
            MediaRepository(session).add(shared_item())
    with db.session() as session:  # drift: what a bare connection or a bug would leave
        session.execute(update(MediaUsage).values(items=MediaUsage.items + 5))
        UsageRepository(session).add({("entity_type", "ghost"): Amounts(1, 1, 1, 1)})
    assert kept(db) != counted(db)

    with db.session() as session:
        before, after = UsageRepository(session).recount()

    assert before != after and after == counted(db) == kept(db)
    assert after[("storage_type", "local")] == Amounts(3, 3000, 9, 4200)


def _random_step(rng: random.Random, session: Session, entity: tuple[str, str, str]) -> None:
    """One upload, delete, decision or variant swap on the items of `entity` (type, id, field), as the
    services make them: an upload to a single slot, or its approval, replaces what the slot held."""
    entity_type, entity_id, field = entity
    repo = MediaRepository(session)
    items, _ = repo.list_for_entity(entity_type, entity_id, limit=100)
    action = rng.choice(["upload", "upload", "delete", "decide", "swap"]) if items else "upload"
    if action == "upload":
        item = repo.add(shared_item(entity_type=entity_type, entity_id=entity_id, entity_field=field,
                                    is_primary=field == "avatar", moderation_status=rng.choice(STATUSES),
                                    media_type=rng.choice(["image", "video"])))
        if field == "avatar":
            moderation.replace_in_slot(repo, item, NO_CDN, OPERATOR)
    elif action == "delete":
        repo.delete(rng.choice(items))
    elif action == "decide":
        item = repo.lock(rng.choice(items).id)
        if item is not None:
            moderation.decide(session, item, rng.choice(STATUSES), None, NO_CDN, OPERATOR)
    else:
        item = rng.choice(items)
        replaced = [v.id for v in item.variants if v.name == "thumbnail"]
        key = f"{item.original_key}.{rng.randrange(10**9)}_t.jpg"
        VariantRepository(session).replace(item.id, replaced, [VariantRow("thumbnail", "jpeg", key, 5, 5,
                                                                          rng.randrange(1, 500), "image/jpeg")])


def test_a_random_mix_of_writes_equals_a_recount(db: Database) -> None:
    rng = random.Random(14)
    entities = [("property", "P1", "gallery"), ("property", "P2", "gallery"), ("user", "U1", "avatar"),
                ("user", "U2", "avatar")]
    for step in range(60):
        run_transaction(db, lambda session: _random_step(rng, session, entities[step % len(entities)]))
    assert_in_step(db)
    assert sum(a.items for (column, _), a in kept(db).items() if column == "storage_type") > 0


def retrying(db: Database, work: Callable[[Session], object], attempts: int = 20) -> None:
    """`work` in its own transaction, sent again as ingest does (`COMMIT_ATTEMPTS`) when the database
    gave up on it: SQLite's busy writer lock, a MariaDB deadlock over the gaps of media_items' indexes
    between inserts into neighbouring entities. A transaction given up on is rolled back whole, its
    changes to the totals with it."""
    for attempt in range(attempts):
        try:
            with db.session() as session:
                work(session)
            return
        except DatabaseUnavailable:
            if attempt == attempts - 1:
                raise
            time.sleep(0.01 * (attempt + 1))


def test_concurrent_writers_and_a_recount_keep_the_totals_exact(db: Database) -> None:
    """Writers of one group (every item is `storage_type=local`, `entity_type=property`) at once, one of
    them recounting midway: no update is lost and none is counted twice."""
    writers, steps = 6, 12
    barrier = threading.Barrier(writers)
    failures: list[BaseException] = []

    def writer(number: int) -> Callable[[], None]:
        rng = random.Random(number)

        def run() -> None:
            try:
                barrier.wait()
                for step in range(steps):
                    retrying(db, lambda session: _random_step(rng, session, ("property", f"W{number}", "gallery")))
                    if number == 0 and step == steps // 2:
                        retrying(db, lambda session: UsageRepository(session).recount())
            except BaseException as exc:  # reported below: a thread's exception would be lost
                failures.append(exc)
        return run

    run_together([writer(n) for n in range(writers)])

    assert not failures, failures
    assert_in_step(db)
    assert kept(db)[("entity_type", "property")].items == sum(
        a.items for (column, _), a in counted(db).items() if column == "entity_type")


# A delete that loaded its item before a job swapped the variants deletes the rows it loaded; the
# database's cascade removes the rest, and SQLAlchemy says so.
@pytest.mark.filterwarnings("ignore:DELETE statement on table 'media_variants' expected")
def test_writers_of_the_same_items_at_once_keep_the_totals_exact(db: Database) -> None:
    """Decisions, variant swaps (as a job publishes them) and deletes racing on a dozen items: each reads
    the rows it changes with locks, so none counts from a state another one has just changed."""
    with db.session() as session:
        ids = [MediaRepository(session).add(shared_item(entity_id="SAME")).id for _ in range(12)]
    failures: list[BaseException] = []

    def writer(number: int) -> Callable[[], None]:
        rng = random.Random(100 + number)

        def step(session: Session) -> None:
            repo, media_id = MediaRepository(session), rng.choice(ids)
            action = rng.choice(["decide", "decide", "swap", "swap", "delete"])
            if action == "delete":  # as MediaService.delete: no lock of its own
                item = repo.get(media_id)
                if item is not None:
                    repo.delete(item)
            elif action == "decide" and (item := repo.lock(media_id)) is not None:
                moderation.decide(session, item, rng.choice(STATUSES), None, NO_CDN, OPERATOR)
            elif action == "swap":  # as renditions.publish
                lock_item(session, media_id)
                if repo.get(media_id) is None:
                    return
                variants = VariantRepository(session)
                replaced = [v.id for v in variants.for_item(media_id) if v.name == "thumbnail"]
                variants.replace(media_id, replaced, [VariantRow("thumbnail", "jpeg", f"t/{media_id}/{rng.random()}",
                                                                 1, 1, rng.randrange(1, 99), "image/jpeg")])

        def run() -> None:
            try:
                for _ in range(10):
                    retrying(db, step)
            except BaseException as exc:  # reported below: a thread's exception would be lost
                failures.append(exc)
        return run

    run_together([writer(n) for n in range(6)])

    assert not failures, failures
    assert_in_step(db)


def test_totals_are_spread_over_shards(db: Database) -> None:
    with db.session() as session:
        for shard in range(USAGE_SHARDS):
            UsageRepository(session).add({("entity_type", "x"): Amounts(1, 2, 3, 4)}, shard=shard)
    assert kept(db)[("entity_type", "x")] == Amounts(USAGE_SHARDS, 2 * USAGE_SHARDS, 3 * USAGE_SHARDS,
                                                     4 * USAGE_SHARDS)
