"""Hostile bytes at the sniff/strip/header layer: only MediaHub errors, never a crash."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mediahub.errors import MediaHubError
from mediahub.pipeline.image import process_image
from mediahub.pipeline.sniff import sniff
from mediahub.pipeline.strip import STRIPPERS, judge_trailing
from tests.support.corpus import corpus_images

SEEDS = {
    fmt: next(e.path.read_bytes() for e in corpus_images("accept") if e.path.suffix == suffix)
    for fmt, suffix in (("jpeg", ".jpg"), ("png", ".png"), ("gif", ".gif"), ("webp", ".webp"))
}


@st.composite
def mutated(draw, seed: bytes):
    """The seed with a few bytes overwritten, a cut, or junk appended."""
    data = bytearray(seed[:20000])
    for _ in range(draw(st.integers(0, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(1, len(data)))]
    return bytes(data) + draw(st.binary(max_size=64))


@given(st.binary(max_size=512))
def test_sniff_only_raises_mediahub_errors(data):
    try:
        sniffed = sniff(data)
    except MediaHubError as exc:
        assert exc.code in {"unsupported_type", "empty_file"}
    else:
        assert sniffed.media_kind in {"image", "video"}


@pytest.mark.parametrize("fmt", sorted(SEEDS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_strippers_survive_mutation(fmt, data):
    blob = data.draw(mutated(SEEDS[fmt]))
    try:
        judge_trailing(STRIPPERS[fmt](blob), fmt)
    except MediaHubError as exc:
        assert exc.code in {"corrupt_image", "trailing_data"}


@pytest.mark.parametrize("fmt", sorted(SEEDS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_whole_image_row_survives_mutation(fmt, data, options, tmp_path: Path):
    blob = data.draw(mutated(SEEDS[fmt]))
    path = tmp_path / "upload"
    path.write_bytes(blob)
    try:
        result = process_image(path, sniff(blob[:4096]), options)
    except MediaHubError:
        return
    assert result.width >= 1 and result.height >= 1
