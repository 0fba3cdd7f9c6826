"""The app factory and HTTP protocol the `http` section starts under uvicorn (settings from the environment):
`uvicorn bench.server:create --factory --http bench.server:HttpProtocol`, as `mediahub serve` serves."""

from __future__ import annotations

from mediahub.api.serving import protocol_class
from mediahub.config import Settings

HttpProtocol = protocol_class(Settings(_env_file=None))


def create():
    from mediahub.api.app import create_app

    return create_app(Settings(_env_file=None))
