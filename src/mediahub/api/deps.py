"""Typed dependencies: the runtime, services and the caller.

Those that only read the app's state or build a service object are `async def`: FastAPI runs a
plain `def` dependency in a worker thread, a trip that costs more than the dependency itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mediahub.api.auth import TokenVerifier
from mediahub.api.library.session import CSRF_HEADER, SAFE_METHODS, csrf_matches, session_token
from mediahub.api.metrics import Metrics
from mediahub.api.ratelimit import ConcurrencyLimit, RateLimiter
from mediahub.config import Settings
from mediahub.errors import Forbidden, MalformedRequest, Unauthenticated
from mediahub.media.access import Principal
from mediahub.media.analytics import AnalyticsService
from mediahub.media.audit import AuditService
from mediahub.media.batch import BatchService
from mediahub.media.direct_uploads import DirectUploadService
from mediahub.media.duplicates import DuplicateReview
from mediahub.media.files import FileAccess
from mediahub.media.manage import MediaService
from mediahub.media.members import MemberService
from mediahub.media.moderation import ModerationService
from mediahub.media.tagging import TagService
from mediahub.media.urls import MediaUrls
from mediahub.runtime import Runtime
from mediahub.storage.base import PRIVATE_CACHE_CONTROL


@dataclass(frozen=True)
class ApiState:
    """What the HTTP layer holds beside the shared Runtime."""

    verifier: TokenVerifier
    csrf_secret: bytes  # signs the library's CSRF tokens (api/library/session.py)
    https: bool  # PUBLIC_BASE_URL is https: the library's cookies are Secure whatever scheme uvicorn saw
    limiter: RateLimiter
    metrics: Metrics
    batches: ConcurrencyLimit  # batch uploads in flight per principal


async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


async def get_api_state(request: Request) -> ApiState:
    return request.app.state.api


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
ApiStateDep = Annotated[ApiState, Depends(get_api_state)]


async def get_settings(runtime: RuntimeDep) -> Settings:
    return runtime.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]

async def get_media_service(runtime: RuntimeDep) -> MediaService:
    return MediaService(runtime.database, runtime.storage, runtime.cdn, runtime.dedup_index,
                        auto_approve_verified=runtime.settings.auto_approve_verified,
                        dispatch=runtime.jobs.dispatch, job_max_attempts=runtime.settings.job_max_attempts,
                        machine_tag_min_score=runtime.settings.machine_tag_min_score)


async def get_moderation_service(runtime: RuntimeDep) -> ModerationService:
    settings = runtime.settings
    return ModerationService(runtime.database, runtime.storage, runtime.cdn,
                             hide_threshold=settings.flag_hide_threshold, report_rate_limit=settings.report_rate_limit)


async def get_batch_service(runtime: RuntimeDep) -> BatchService:
    return BatchService(await get_media_service(runtime), await get_moderation_service(runtime))


async def get_member_service(runtime: RuntimeDep) -> MemberService:
    return MemberService(runtime.database)


async def get_audit_service(runtime: RuntimeDep) -> AuditService:
    return AuditService(runtime.database)


async def get_tag_service(runtime: RuntimeDep) -> TagService:
    return TagService(runtime.database)


async def get_file_access(runtime: RuntimeDep) -> FileAccess:
    return FileAccess(runtime.database, runtime.settings.signing_key)


# A Host header as RFC 9110 allows it (name or IPv4, [IPv6], optional port): anything else
# would be copied into every URL of the answer.
_HOST_RE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?\Z")


def request_base_url(request: Request) -> str:
    """Scheme, host and root path the request came to (without a Host header: the server's address).

    The scheme is uvicorn's view of it: X-Forwarded-Proto counts only from the
    proxies uvicorn trusts (`--forwarded-allow-ips`, FORWARDED_ALLOW_IPS).
    """
    host = request.headers.get("host")
    if host is not None and not _HOST_RE.match(host):
        raise MalformedRequest("the Host header is not a host name", code="invalid_host")
    return str(request.base_url).rstrip("/")


async def get_urls(request: Request, runtime: RuntimeDep) -> MediaUrls:
    settings = runtime.settings
    base = settings.public_base_url or request_base_url(request)
    return MediaUrls(settings, runtime.storage, base)


MediaServiceDep = Annotated[MediaService, Depends(get_media_service)]
ModerationServiceDep = Annotated[ModerationService, Depends(get_moderation_service)]
BatchServiceDep = Annotated[BatchService, Depends(get_batch_service)]
MemberServiceDep = Annotated[MemberService, Depends(get_member_service)]
AuditServiceDep = Annotated[AuditService, Depends(get_audit_service)]
FileAccessDep = Annotated[FileAccess, Depends(get_file_access)]
TagServiceDep = Annotated[TagService, Depends(get_tag_service)]
UrlsDep = Annotated[MediaUrls, Depends(get_urls)]


async def get_duplicate_review(runtime: RuntimeDep, media: MediaServiceDep) -> DuplicateReview:
    return DuplicateReview(runtime.database, media, runtime.dedup_index, threshold=runtime.settings.dedup_threshold)


async def get_analytics(runtime: RuntimeDep) -> AnalyticsService:
    return AnalyticsService(runtime.database)


DuplicateReviewDep = Annotated[DuplicateReview, Depends(get_duplicate_review)]
AnalyticsDep = Annotated[AnalyticsService, Depends(get_analytics)]

bearer_scheme = HTTPBearer(auto_error=False, description="A JWT: `Authorization: Bearer <token>`")


async def get_optional_principal(
    request: Request,
    response: Response,
    api: ApiStateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal | None:
    """The caller: a bearer token, else the library's session cookie (a state-changing request must carry its
    CSRF token), else None. A bad token or session is never downgraded to anonymous.

    An answer made for a session is marked private: shared caches leave alone what answers an Authorization header
    (RFC 9111 3.5) but not what answers a Cookie. (A route that sends its own Response, a stored file, says itself.)"""
    if "authorization" in request.headers:
        if credentials is None or not credentials.credentials:
            raise Unauthenticated("expected 'Authorization: Bearer <token>'", code="invalid_token")
        return api.verifier.principal(credentials.credentials)
    token = session_token(request)
    if token is None:
        return None
    if request.method not in SAFE_METHODS and not csrf_matches(api.csrf_secret, token,
                                                                request.headers.get(CSRF_HEADER)):
        raise Forbidden("a request made with the library's session must carry its CSRF token (X-CSRF-Token)",
                        code="csrf_failed")
    response.headers["Cache-Control"] = PRIVATE_CACHE_CONTROL
    return api.verifier.principal(token)


async def get_principal(principal: Annotated[Principal | None, Depends(get_optional_principal)]) -> Principal:
    if principal is None:
        raise Unauthenticated("this endpoint needs a bearer token", code="missing_token")
    return principal


OptionalPrincipalDep = Annotated[Principal | None, Depends(get_optional_principal)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_direct_uploads(runtime: RuntimeDep, _caller: PrincipalDep) -> DirectUploadService:
    """The direct-to-S3 uploads; 404 `direct_uploads_unavailable` on a store clients cannot send to (after the
    caller is authenticated: a bad token is 401 here as everywhere)."""
    service = DirectUploadService(runtime.settings, runtime.database, runtime.uploads, runtime.store)
    service.require_bucket()
    return service


DirectUploadsDep = Annotated[DirectUploadService, Depends(get_direct_uploads)]
