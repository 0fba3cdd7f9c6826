"""Every video of the shared corpus: probe, truncation check, poster and its variants."""

from __future__ import annotations

import pytest

from mediahub.errors import MediaHubError
from mediahub.pipeline.sniff import sniff
from mediahub.pipeline.video import VideoOptions, process_video
from tests.support.corpus import corpus_videos


@pytest.fixture(scope="module")
def video_options(options):
    return VideoOptions(options, max_duration=600)


def _run(entry, video_options):
    head = entry.path.read_bytes()[:4096]
    sniffed = sniff(head)
    assert sniffed.media_kind == "video"
    return process_video(entry.path, sniffed, video_options)


@pytest.mark.parametrize("entry", corpus_videos("accept"), ids=lambda e: e.name)
def test_good_video_gets_a_poster_of_its_size(entry, video_options):
    result = _run(entry, video_options)
    assert (result.width, result.height) == (entry.entry["width"], entry.entry["height"])
    assert {v.name for v in result.variants} == {"thumbnail", "small", "medium", "large"}
    assert len(result.phash) == 16
    assert result.metadata["frames"] >= 1


@pytest.mark.parametrize("entry", corpus_videos("reject"), ids=lambda e: e.name)
def test_bad_video_gets_a_stable_code(entry, video_options):
    with pytest.raises(MediaHubError) as caught:
        _run(entry, video_options)
    assert caught.value.code in {"empty_file", "unsupported_type", "no_video_stream", "truncated_video", "corrupt_video"}


def test_duration_limit_refuses_long_videos(options):
    entry = next(e for e in corpus_videos("accept") if "chaplin" in e.name)
    with pytest.raises(MediaHubError) as caught:
        _run(entry, VideoOptions(options, max_duration=5))
    assert caught.value.code == "too_long"
