"""The app factory the `http` section starts under uvicorn (settings from the environment)."""

from __future__ import annotations


def create():
    from mediahub.api.app import create_app
    from mediahub.config import Settings

    return create_app(Settings(_env_file=None))
