"""How `mediahub serve` configures a server: PIXEL_WORKERS from the cores when unset, and a protocol
that crosses into uvicorn's worker processes with its limits."""

from __future__ import annotations

import pickle

import pytest

from mediahub.api.serving import BoundedHeadProtocol, HeadLimits, protocol_class, serving_settings
from mediahub.config import Settings, usable_cores


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv("PIXEL_WORKERS", raising=False)
    return Settings(_env_file=None, max_header_bytes=4096, max_header_count=20, header_read_timeout_seconds=3)


def test_unset_pixel_workers_share_the_cores_among_the_server_processes(settings: Settings) -> None:
    assert settings.pixel_workers == 0  # the library default is left alone
    assert serving_settings(settings, 1).pixel_workers == usable_cores()
    assert serving_settings(settings, 2).pixel_workers == max(1, usable_cores() // 2)
    assert serving_settings(settings, usable_cores() + 1).pixel_workers == 1  # never none


@pytest.mark.parametrize("chosen", [0, 3])
def test_a_chosen_pixel_workers_is_kept(monkeypatch: pytest.MonkeyPatch, chosen: int) -> None:
    monkeypatch.setenv("PIXEL_WORKERS", str(chosen))
    assert serving_settings(Settings(_env_file=None), 1).pixel_workers == chosen
    assert serving_settings(Settings(_env_file=None, pixel_workers=chosen), 2).pixel_workers == chosen


def test_the_protocol_pickles_with_its_limits(settings: Settings) -> None:
    factory = pickle.loads(pickle.dumps(protocol_class(settings)))
    assert factory.func is BoundedHeadProtocol
    assert factory.keywords == {"limits": HeadLimits(4096, 20, 3.0)}
