"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mediahub.api.deps import ApiStateDep, RuntimeDep
from mediahub.api.errors import problem
from mediahub.api.schemas import Health, Problem
from mediahub.errors import MediaHubError

router = APIRouter(tags=["ops"])


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Health, summary="Readiness: database, storage and pixel workers answer",
            responses={503: {"model": Problem, "content": {"application/problem+json": {}}}})
async def readyz(runtime: RuntimeDep) -> Health | JSONResponse:
    checks: dict[str, str] = {}
    failures: list[MediaHubError] = []
    for name, check in (("database", runtime.database.ping), ("storage", runtime.storage.check),
                        ("pixels", runtime.ingest.pixels.check)):
        try:
            await run_in_threadpool(check)
            checks[name] = "ok"
        except MediaHubError as exc:
            checks[name] = exc.code
            failures.append(exc)
    if failures:
        return problem(503, failures[0].code, "; ".join(f.message for f in failures), checks=checks)
    return Health(status="ready")


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(api: ApiStateDep) -> Response:
    return Response(generate_latest(api.metrics.registry), media_type=CONTENT_TYPE_LATEST)
