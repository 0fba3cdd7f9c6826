"""The method on the corpus and on generated variants, through the real pipeline."""

from __future__ import annotations

import itertools

import pytest

from bench import dedup_quality as q
from mediahub.config import Settings
from tests.support.corpus import manifest

THRESHOLD = Settings(_env_file=None).dedup_threshold
FLAT_COLLISIONS = ["images/good/jpeg_orientation_8_2x1.jpg", "images/good/gps_malformed_values.jpg",
                   "images/good/heif_minimal_64x64.heif", "images/good/apng_16bit_rgba.png"]


def _by_name():
    return {p.name: p for p in q.corpus_pictures()}


def test_every_pair_in_a_corpus_dedup_group_is_a_duplicate():
    groups: dict[str, list] = {}
    for picture in q.corpus_pictures():
        group = next(e.get("dedup_group") for e in manifest()["files"] if e["path"] == picture.name)
        if group:
            groups.setdefault(group, []).append(picture)
    assert len(groups) >= 9
    missed = [(a.name, b.name) for members in groups.values() for a, b in itertools.combinations(members, 2)
              if not q.is_duplicate(a, b, THRESHOLD)]
    assert missed == []


def test_flat_images_that_collide_under_phash_are_not_duplicates():
    pictures = _by_name()
    for a, b in itertools.combinations(FLAT_COLLISIONS, 2):
        first, second = pictures[a], pictures[b]
        assert (first.phash ^ second.phash).bit_count() <= 1, "the collision this guards against"
        assert first.fingerprint.flat and second.fingerprint.flat
        assert not q.is_duplicate(first, second, THRESHOLD), (a, b)
        assert first.fingerprint.compare(second.fingerprint, 64) is None


def test_the_manifests_avif_png_collision_is_one_picture():
    """The manifest lists avif_transparency vs png_palette_trns with the flat collisions, but they are
    the same picture (Pillow's transparency.avif encodes p_trns_single.png): neither is flat, and
    their thumbnails differ by under one grey level, so they are (correctly) duplicates."""
    pictures = _by_name()
    avif, png = pictures["images/good/avif_transparency.avif"], pictures["images/good/png_palette_trns.png"]
    assert not avif.fingerprint.flat and not png.fingerprint.flat
    diff = [abs(x - y) for x, y in zip(avif.fingerprint.thumb, png.fingerprint.thumb, strict=True)]
    assert sum(diff) / len(diff) < 1.0
    assert q.is_duplicate(avif, png, THRESHOLD)


def test_distinct_corpus_pictures_are_not_duplicates():
    distinct = q.distinct_pictures()
    assert len(distinct) >= 30
    wrong = [(a.name, b.name) for a, b in itertools.combinations(distinct, 2) if q.is_duplicate(a, b, THRESHOLD)]
    assert wrong == []


@pytest.mark.slow
def test_generated_variants_are_found_and_beat_plain_phash():
    distinct = q.distinct_pictures()
    found = total = baseline = 0
    for transform, made in q.generated().items():
        hits = sum(q.is_duplicate(a, b, THRESHOLD) for a, b in zip(distinct, made, strict=True))
        assert hits / len(made) >= 0.95, transform
        found += hits
        total += len(made)
        baseline += sum(q.phash_duplicate(a, b, THRESHOLD) for a, b in zip(distinct, made, strict=True))
    assert found / total >= 0.99
    assert baseline < found, "plain pHash at the same threshold finds fewer"


@pytest.mark.slow
def test_generated_variants_do_not_match_other_pictures():
    distinct = q.distinct_pictures()
    pairs = [(v, other) for made in q.generated().values() for v in made for other in distinct if other.key != v.key]
    false = [(a.name, b.name) for a, b in pairs if q.is_duplicate(a, b, THRESHOLD)]
    assert len(false) <= len(pairs) * 0.001, false
