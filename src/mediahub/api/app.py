"""The FastAPI application, built from one Settings object."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from mediahub.config import Settings
from mediahub.runtime import Runtime


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.runtime = Runtime.build(settings)
        try:
            yield
        finally:
            app.state.runtime.close()

    app = FastAPI(title="MediaHub", version="0.1.0", lifespan=lifespan)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> dict[str, str]:
        runtime: Runtime = app.state.runtime
        await run_in_threadpool(runtime.database.ping)
        await run_in_threadpool(runtime.storage.check)
        return {"status": "ready"}

    return app
