"""Liveness, readiness and Prometheus metrics (behind METRICS_TOKEN)."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mediahub.api.deps import ApiStateDep, RuntimeDep, SettingsDep
from mediahub.api.errors import problem, problem_responses, public_detail
from mediahub.api.ratelimit import RedisWindowLimiter
from mediahub.api.schemas import Health, Readiness
from mediahub.errors import MediaHubError, NotFound, Unauthenticated

router = APIRouter(tags=["ops"])


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses=problem_responses(503),
            summary="Readiness: what this process needs answers",
            description="The database, the store and this process's pixel workers; the queue broker when "
                        "QUEUE_URL is set, Redis when the upload rate limit is counted there, and the moderation "
                        "checks when this process runs them. 503 with each check's result in `checks` when one "
                        "fails. `features`: the optional features' states (`off` never fails readiness).")
async def readyz(runtime: RuntimeDep, api: ApiStateDep) -> Readiness | JSONResponse:
    checks: dict[str, str] = {}
    failures: list[MediaHubError] = []
    needed = runtime.dependency_checks()
    if isinstance(api.limiter, RedisWindowLimiter):
        needed["rate_limit"] = api.limiter.check
    needed["pixels"] = runtime.ingest.pixels.check
    for name, check in needed.items():
        try:
            await run_in_threadpool(check)
            checks[name] = "ok"
        except MediaHubError as exc:
            checks[name] = exc.code
            failures.append(exc)
    features = await run_in_threadpool(runtime.features)
    if failures:
        return problem(503, failures[0].code, "; ".join(public_detail(f) for f in failures), checks=checks,
                       features=features)
    return Readiness(status="ready", features=features)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            description="Needs `Authorization: Bearer <METRICS_TOKEN>`; 404 while METRICS_TOKEN is unset.",
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}},
                       **problem_responses(401, 404)})
async def metrics(request: Request, api: ApiStateDep, settings: SettingsDep) -> Response:
    if settings.metrics_token is None:
        raise NotFound("not found", code="not_found")
    expected = f"Bearer {settings.metrics_token.get_secret_value()}".encode()
    if not hmac.compare_digest(request.headers.get("authorization", "").encode(), expected):
        raise Unauthenticated("metrics need 'Authorization: Bearer <METRICS_TOKEN>'", code="invalid_token")
    return Response(generate_latest(api.metrics.registry), media_type=CONTENT_TYPE_LATEST)
