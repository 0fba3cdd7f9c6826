"""Attacks on the tagging job's writes: a re-run that says the same thing keeps the rows a moderator is looking
at, so a review made from the page they saw still applies."""

from __future__ import annotations

import pytest

from mediahub.media import tagging
from mediahub.media.access import Principal
from tests.media.conftest import make_runtime
from tests.media.helpers import upload
from tests.support.corpus import CORPUS_DIR
from tests.support.taggers import FixedTagger, room, thing

FLOWER = CORPUS_DIR / "images/good/jpeg_flower.jpg"
MODERATOR = Principal(sub="MOD-1", roles=frozenset({"user", "moderator"}))


@pytest.fixture
def tagger() -> FixedTagger:
    return FixedTagger()


@pytest.fixture
def tagged(db, local_storage, tmp_path, tagger):
    runtime = make_runtime(db, local_storage, tmp_path, tagger=tagger, make_webp=False, dedup_policy="allow")
    yield runtime
    runtime.jobs.close()


def test_a_rerun_saying_the_same_keeps_the_tag_a_moderator_is_reviewing(tagged, tagger):
    item = upload(tagged, FLOWER)
    service = tagging.TagService(tagged.database)
    seen = {row.label: row.id for row in service.of_item(item.id, MODERATOR)}  # the item page as rendered
    # A retry or `tags backfill --redo` runs meanwhile: the same opinion, one score a little different.
    tagger.tags = [room("kitchen", 0.85), thing("dishwasher", 0.7), thing("sink", 0.6)]
    assert tagging.record_machine_tags(tagged.database, item.id, tagger.tags)
    rows = service.accept(item.id, seen["kitchen"], MODERATOR)  # the click on the page's Accept
    assert {(row.label, row.state, row.score) for row in rows} == {
        ("kitchen", "accepted", 0.85), ("dishwasher", "suggested", 0.7), ("sink", "suggested", 0.6)}
    assert {row.label: row.id for row in rows}["dishwasher"] == seen["dishwasher"]


ODD_TAGS = ["küche", "厨房", "🍳", 'say "hi"', "back\\slash", "50%", "a_b", "kitchenette", "O'Brien"]


def test_typed_tags_match_exactly_whatever_their_characters_on_every_database(tagged):
    from mediahub.db.repositories import MediaRepository
    from mediahub.db.repositories.tags import TagFilter

    item = upload(tagged, FLOWER, tags=ODD_TAGS)  # machine: kitchen 0.9

    def listed(*labels: str) -> set[int]:
        with tagged.database.session() as session:
            items, total = MediaRepository(session).list_for_entity("property", "P-1", limit=10,
                                                                    having=TagFilter(labels, 0.5))
        assert total == len(items)
        return {row.id for row in items}

    for tag in ODD_TAGS:
        assert listed(tag) == {item.id}, tag
    for near in ["kitchenett", "%", "_", "5_%", "a%", "Küche", "küche ", '"hi"', "back", "\\", "O''Brien"]:
        assert listed(near) == set(), near
