"""Request bodies: capped before the app reads them; the connection closed when one is left unread. And each
request's id (RequestIdMiddleware).

An upload refused early (too large, forbidden, rate limited) must not make the
server read the rest of a possibly endless body. Marking such a response
`Connection: close` makes uvicorn hang up after sending it instead of
draining the remainder for keep-alive.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import anyio
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mediahub.api.errors import problem, status_of
from mediahub.errors import MediaHubError, RequestTimeout, TooLarge
from mediahub.media import audit


def _has_body(scope: Scope) -> bool:
    headers = Headers(scope=scope)
    length = headers.get("content-length", "0")
    return "chunked" in headers.get("transfer-encoding", "").lower() or (length.isdigit() and int(length) > 0)


class CloseOnUnreadBodyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        body_done = False

        async def tracking_receive() -> Message:
            nonlocal body_done
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                body_done = True
            return message

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not body_done:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, tracking_receive, closing_send)


class BodyCapMiddleware:
    """Every request body but the streamed uploads: at most `max_bytes`, read before the app runs.

    A declared length over the cap is answered 413 before a byte of the body is read; a chunked
    body is counted as it arrives and cut at the cap; a body not complete within `read_timeout`
    gets 408 (a whole one, not per chunk: a byte now and then must not hold a connection for days). Either way before routing, so before authentication. The routes for
    which `exempt(scope)` is true read their bodies themselves, under their own streaming caps.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, read_timeout: float, exempt: Callable[[Scope], bool]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout = read_timeout
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope) or self.exempt(scope):
            await self.app(scope, receive, send)
            return
        try:
            declared = Headers(scope=scope).get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise self._too_large()
            body = await self._read(receive)
        except MediaHubError as exc:
            await problem(status_of(exc), exc.code, exc.message, **exc.details)(scope, receive, send)
            return
        if body is None:
            return  # the client went away
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        deadline = anyio.current_time() + self.read_timeout
        while True:
            try:
                with anyio.fail_after(deadline - anyio.current_time()):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(f"the request body did not arrive within {self.read_timeout:g} s",
                                     timeout=self.read_timeout) from None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _too_large(self) -> TooLarge:
        return TooLarge(f"request body is larger than the limit of {self.max_bytes} bytes",
                        code="body_too_large", limit=self.max_bytes)


REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class RequestIdMiddleware:
    """Names each request: the client's (or proxy's) X-Request-ID when it is a plain token of at most 64
    characters, else a new one. It is sent back in the answer, and the audit events the request records
    carry it (media/audit.py `request_id`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
        name = sent if _REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex
        token = audit.request_id.set(name)

        async def naming_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != REQUEST_ID_HEADER.encode()]
                message = {**message, "headers": [*headers, (REQUEST_ID_HEADER.encode(), name.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, naming_send)
        finally:
            audit.request_id.reset(token)
