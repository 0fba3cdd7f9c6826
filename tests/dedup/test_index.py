"""The band index returns exactly what a linear scan returns, for every threshold it supports."""

from __future__ import annotations

import random
import secrets
from math import comb

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from mediahub.db.models import MediaItem
from mediahub.pipeline.fingerprint import bands
from mediahub.services import dedup

HASH = st.integers(min_value=0, max_value=(1 << 64) - 1)


def _row(whole: int, centre: int, entity_id: str = "E1") -> MediaItem:
    values = {f"hash_w{i}": v for i, v in enumerate(bands(whole))}
    values |= {f"hash_c{i}": v for i, v in enumerate(bands(centre))}
    return MediaItem(public_id=secrets.token_urlsafe(12), entity_type="property", entity_id=entity_id,
                     entity_field="gallery", media_type="image", storage_type="local", original_key="k",
                     variants=[], content_type="image/jpeg", byte_size=1, tags=[], meta={},
                     sha256="0" * 64, md5="0" * 32, **values)


def _flip(value: int, count: int, rng: random.Random) -> int:
    for bit in rng.sample(range(64), count):
        value ^= 1 << bit
    return value


def _store(database, hashes: list[int], entity_ids: list[str] | None = None) -> None:
    with database.session() as session:
        session.execute(delete(MediaItem))
        session.add_all(_row(h, h ^ 0xFFFF, (entity_ids or ["E1"] * len(hashes))[i]) for i, h in enumerate(hashes))


def _compare(database, query: int, threshold: int, conditions=()) -> dict[int, int]:
    with database.session() as session:
        via_index = dedup.index_lookup(session, "w", query, threshold, conditions)
        scanned = dedup.linear_scan(session, "w", query, threshold, conditions)
    assert via_index == scanned
    return via_index


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=HASH, flips=st.lists(st.integers(0, 24), min_size=1, max_size=40), noise=st.lists(HASH, max_size=20),
       threshold=st.integers(0, dedup.INDEX_MAX_THRESHOLD), seed=st.integers(0, 2**32))
def test_index_equals_linear_scan(sqlite_db, query, flips, noise, threshold, seed):
    rng = random.Random(seed)
    # Neighbours at every distance around the threshold, plus unrelated hashes.
    _store(sqlite_db, [_flip(query, min(f, 64), rng) for f in flips] + noise)
    found = _compare(sqlite_db, query, threshold)
    expected_close = sum(1 for f in flips if f <= threshold)
    assert len(found) >= expected_close


@pytest.mark.parametrize("threshold", [0, 3, 4, 7, 8, 12, 14, 15])
def test_index_equals_linear_scan_on_every_database(db, threshold):
    rng = random.Random(threshold)
    query = rng.getrandbits(64)
    hashes = [_flip(query, rng.randint(0, 30), rng) for _ in range(150)] + [rng.getrandbits(64) for _ in range(50)]
    entity_ids = [rng.choice(["E1", "E2"]) for _ in hashes]
    _store(db, hashes, entity_ids)
    found = _compare(db, query, threshold)
    expected = sorted(d for h in hashes if (d := (h ^ query).bit_count()) <= threshold)
    assert sorted(found.values()) == expected and (threshold < 8 or expected)
    # And restricted to one entity (the scope conditions ride along with the band lookups).
    _compare(db, query, threshold, dedup.Scope("entity", "property", "E2").conditions())


def test_band_neighbours_enumerates_the_ball():
    for radius in range(4):
        values = dedup.band_neighbours(0xBEEF, radius)
        assert len(values) == len(set(values)) == sum(comb(16, r) for r in range(radius + 1))
        assert all((v ^ 0xBEEF).bit_count() <= radius for v in values)


def test_index_refuses_thresholds_above_its_maximum_and_lookup_falls_back(sqlite_db):
    _store(sqlite_db, [0, (1 << 20) - 1])
    with sqlite_db.session() as session:
        with pytest.raises(ValueError):
            dedup.index_lookup(session, "w", 0, dedup.INDEX_MAX_THRESHOLD + 1)
        assert set(dedup.lookup(session, "w", 0, 20).values()) == {0, 20}
