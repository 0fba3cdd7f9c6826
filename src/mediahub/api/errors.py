"""Every error leaves the API as an RFC 9457 problem (`application/problem+json`).

Domain errors map by category; FastAPI's validation errors become 422
`validation_error` (400 `malformed_json` for a body that is not JSON at all);
anything unexpected is logged with its traceback and answered 500
`internal_error` without details. A backing service's failure (503) is
logged in full but answered with a fixed sentence: its message names paths,
URLs and driver text that are no caller's business.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from mediahub.api.schemas import CONTROL_CHARACTER, Problem
from mediahub.errors import MediaHubError

log = logging.getLogger(__name__)

PROBLEM_TYPE = "application/problem+json"

STATUS_BY_CATEGORY = {
    "malformed": 400,
    "unauthenticated": 401,
    "forbidden": 403,
    "not_found": 404,
    "timeout": 408,
    "conflict": 409,
    "precondition": 412,
    "locked": 423,
    "checksum": 460,  # tus checksum extension
    "too_large": 413,
    "unsupported": 415,
    "invalid": 422,
    "rate_limited": 429,
    "unavailable": 503,
    "busy": 503,
}

TITLES = {460: "Checksum Mismatch"}  # statuses of protocols on top of HTTP (tus), which HTTPStatus does not know

# Codes for plain HTTP errors raised by routing itself (unknown path, wrong method).
CODE_BY_STATUS = {404: "not_found", 405: "method_not_allowed", 400: "malformed_request"}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's OpenAPI `responses` entries for its error answers: a `Problem` body for each status."""
    return {status: {"model": Problem, "content": {PROBLEM_TYPE: {}}} for status in statuses}


def problem(status: int, code: str, detail: str, headers: dict[str, str] | None = None,
            **extra: Any) -> JSONResponse:
    body = {
        "type": f"urn:mediahub:problem:{code}",
        "title": TITLES.get(status) or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    # An error is about this moment (a pending item approved later, a busy server): no cache keeps it.
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store", **(headers or {})},
                        media_type=PROBLEM_TYPE)


# What a caller learns when a backing service fails, by code; the rest only reaches the log.
UNAVAILABLE_DETAIL = {
    "storage_unavailable": "the media store is unavailable; try again later",
    "database_unavailable": "the database is unavailable; try again later",
    "queue_unavailable": "the job queue is unavailable; try again later",
    "rate_limit_unavailable": "the rate limit store is unavailable; try again later",
}


def _unavailable_detail(exc: MediaHubError) -> str:
    return UNAVAILABLE_DETAIL.get(exc.code, "a backing service is unavailable; try again later")


# A page for an error on a path that shows pages to people (the library), or None for a problem+json answer.
ErrorPage = Callable[[Request, int, str, str], Response | None]


def _answer(request: Request, status: int, code: str, detail: str, headers: dict[str, str] | None = None,
            **extra: Any) -> Response:
    page: ErrorPage | None = getattr(request.app.state, "error_page", None)
    answer = page(request, status, code, detail) if page is not None else None
    return answer if answer is not None else problem(status, code, detail, headers, **extra)


def public_detail(exc: MediaHubError) -> str:
    """The message a caller may see: the domain message, or (logged in full) a fixed sentence for a
    backing-service failure."""
    if exc.category != "unavailable":
        return exc.message
    log.warning("%s: %s", exc.code, exc.message)
    return _unavailable_detail(exc)


def status_of(exc: MediaHubError) -> int:
    return STATUS_BY_CATEGORY.get(exc.category, 422)


def _headers_for(exc: MediaHubError, status: int) -> dict[str, str]:
    if status == 401:
        # RFC 6750: say which scheme, and that the token (if one came) was the problem.
        return {"WWW-Authenticate": 'Bearer error="invalid_token"' if exc.code != "missing_token" else "Bearer"}
    if status == 429 or exc.category in ("busy", "locked"):
        return {"Retry-After": str(exc.details.get("retry_after", 60))}
    return {}


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MediaHubError)
    status = status_of(exc)
    if status == 503 and exc.category == "unavailable":
        log.warning("%s %s: %s", request.method, request.url.path, exc.message)
        return _answer(request, status, exc.code, _unavailable_detail(exc), _headers_for(exc, status))
    return _answer(request, status, exc.code, exc.message, _headers_for(exc, status), **exc.details)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Location, message and type of each error; the offending input is not echoed back."""
    return [{"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
            for err in exc.errors()]


async def _request_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = _validation_errors(exc)
    if any(err["type"] == "json_invalid" for err in errors):
        return _answer(request, 400, "malformed_json", "the request body is not valid JSON")
    if any(err["type"] == CONTROL_CHARACTER for err in errors):
        return _answer(request, 422, CONTROL_CHARACTER,
                       "text must not contain control characters or lone surrogates", errors=errors)
    return _answer(request, 422, "validation_error", "the request does not match the schema", errors=errors)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, RecursionError):  # FastAPI's body parsing met "[[[[..." deeper than Python recurses
        return _answer(request, 400, "malformed_json", "the request body is nested too deeply")
    code = CODE_BY_STATUS.get(exc.status_code, "http_error")
    return _answer(request, exc.status_code, code, str(exc.detail), dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _answer(request, 500, "internal_error", "an unexpected error occurred; it has been logged")


def install_error_handlers(app: FastAPI, error_page: ErrorPage | None = None) -> None:
    app.state.error_page = error_page
    app.add_exception_handler(MediaHubError, _domain_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
