"""The FastAPI application, built from one Settings object."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import anyio.to_thread
from fastapi import FastAPI
from starlette.types import Scope

from mediahub.api.auth import TokenVerifier
from mediahub.api.deps import ApiState
from mediahub.api.errors import install_error_handlers
from mediahub.api.library.routes import install_library
from mediahub.api.library.web import error_page as library_error_page
from mediahub.api.metrics import Metrics, MetricsMiddleware
from mediahub.api.middleware import BodyCapMiddleware, CloseOnUnreadBodyMiddleware, RequestIdMiddleware
from mediahub.api.ratelimit import ConcurrencyLimit, upload_limiter
from mediahub.api.routes import (
    audit,
    direct_uploads,
    duplicates,
    files,
    images,
    media,
    members,
    moderation,
    ops,
    tags,
    tus,
    uploads,
)
from mediahub.config import Settings, secured
from mediahub.errors import StorageUnavailable
from mediahub.pipeline.tagging import Tagger
from mediahub.runtime import Runtime

DESCRIPTION = """Uploads, processing and delivery of images and videos for users, properties, builders,
communities, amenities, sales reps and posts. Authenticate with `Authorization: Bearer <JWT>`.
Errors are RFC 9457 problems with a stable `code`."""


def create_app(settings: Settings, tagger: Tagger | None = None) -> FastAPI:
    """The application; `InsecureSettings` if the secrets would let anyone forge a token. `tagger`: the classifier of
    its tagging jobs instead of the one the settings install (pipeline/tagger.py `build_tagger`)."""
    settings = secured(settings)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.runtime = Runtime.build(settings, tagger)
        # A new bucket is made before the sweeper or the first upload needs it (S3_CREATE_BUCKET); a store that
        # is down now is /readyz's to report, not a reason to refuse to start.
        with suppress(StorageUnavailable):
            await anyio.to_thread.run_sync(app.state.runtime.storage.check)
        app.state.runtime.start_sweeper()  # in-process jobs: recover what a restart left queued
        # Before the first connection: no upload waits for a pixel process to start and import the pipeline.
        await anyio.to_thread.run_sync(app.state.runtime.ingest.pixels.start)
        # What start-up made lives as long as the process: out of the collector's sight, a full collection no
        # longer walks every imported module's objects, which stalled a request now and then.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            app.state.runtime.close()
            gc.unfreeze()  # a process that builds apps one after another (the tests) lets each be collected

    app = FastAPI(title="MediaHub", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    metrics.count_renders(lambda: app.state.runtime.delivery.renders)  # read at each scrape, once the app runs
    app.state.api = ApiState(
        verifier=TokenVerifier(settings),
        csrf_secret=settings.signing_key,
        https=(settings.public_base_url or "").startswith("https://"),
        limiter=upload_limiter(settings),
        metrics=metrics,
        batches=ConcurrencyLimit(settings.max_concurrent_batches, "batch uploads", "too_many_batches"),
    )
    install_error_handlers(app, error_page=library_error_page)
    # The last added runs outermost: metrics see every answer, including the connection-closing ones.
    app.add_middleware(BodyCapMiddleware, max_bytes=settings.max_json_body_bytes,
                       read_timeout=settings.upload_read_timeout_seconds, exempt=_streams_its_body)
    app.add_middleware(CloseOnUnreadBodyMiddleware)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(tus.TusHeadersMiddleware)  # outermost: a method override applies to every layer
    # Order matters where paths overlap: fixed segments before /v1/media/{media_id}.
    for module in (ops, uploads, tus, direct_uploads, files, images, members, moderation, duplicates, audit, tags,
                   media):
        app.include_router(module.router)
    install_library(app)
    return app


def _streams_its_body(scope: Scope) -> bool:
    """The upload routes read their bodies as streams, under their own caps."""
    return uploads.streams_its_body(scope) or tus.streams_its_body(scope)


def create_app_from_environment() -> FastAPI:
    """The application over the settings in the environment: what each process of `mediahub serve --workers N`
    builds."""
    return create_app(Settings())
