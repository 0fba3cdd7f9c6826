"""Streaming multipart/form-data for uploads, cut at the byte cap.

Starlette's `request.form()` spools the whole body before the handler sees
it; here the body is parsed as it arrives (python-multipart's push parser),
each file part goes straight into an ingest `Spool` on disk, and reading stops
with 413 the moment the declared length, the body cap, a file's cap, the part
count or a text field's size is passed. Parser callbacks are synchronous, so
they only record events; the async reader applies them (disk writes in a worker
thread) after each network chunk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from mediahub.errors import (
    InvalidInput,
    MalformedRequest,
    MediaHubError,
    RequestTimeout,
    TooLarge,
    UnsupportedType,
)
from mediahub.pipeline.intake import Spool, Spooled, safe_filename

FIELD_MAX_BYTES = 64 * 1024  # one text field (caption, tags, ...)
FORM_ALLOWANCE = 256 * 1024  # multipart framing and text fields, on top of the file bytes
HEADER_LINE_MAX = 16 * 1024  # one part header line: room for a long (later truncated) filename
EXTRA_PARTS = 10  # text fields allowed beside the file parts
FLUSH_BYTES = 256 * 1024  # file bytes gathered in memory before a write to the spool

FileCap = Callable[[dict[str, str]], Awaitable[int]]


@dataclass(frozen=True)
class FormLimits:
    file_field: str  # name of the file part(s): "file", or "files" for batches
    max_files: int
    body_cap: int
    file_cap: FileCap  # each file's byte cap, from the text fields seen so far; may refuse (Forbidden)
    isolate_file_errors: bool  # batches: a file over its cap fails alone, the rest go on
    tmp_dir: Path | None = None
    read_timeout: float | None = None  # seconds to wait for each body chunk (None: forever)


@dataclass
class ReceivedFile:
    filename: str | None
    spooled: Spooled | None = None
    error: MediaHubError | None = None


@dataclass
class ReceivedForm:
    fields: dict[str, str] = field(default_factory=dict)
    files: list[ReceivedFile] = field(default_factory=list)

    def discard(self) -> None:
        for received in self.files:
            if received.spooled is not None:
                received.spooled.discard()


class _PartEvents:
    """Parser callbacks -> ("field", name, value) / ("file", name, filename) / ("data", bytes) / ("end",)."""

    def __init__(self, max_parts: int) -> None:
        self.max_parts = max_parts
        self.parts = 0
        self.finished = False
        self.events: list[tuple[Any, ...]] = []
        self._headers: dict[str, bytes] = {}
        self._name = bytearray()
        self._value = bytearray()
        self._field: tuple[str, bytearray] | None = None

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._name.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def take(self) -> list[tuple[Any, ...]]:
        events, self.events = self.events, []
        return events

    def _part_begin(self) -> None:
        self.parts += 1
        if self.parts > self.max_parts:
            raise TooLarge(f"at most {self.max_parts} form parts", code="too_many_parts", limit=self.max_parts)
        self._headers = {}
        self._field = None

    def _header_end(self) -> None:
        self._headers[self._name.decode("latin-1").lower()] = bytes(self._value)
        self._name.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        disposition, params = parse_options_header(self._headers.get("content-disposition"))
        name = params.get(b"name")
        if disposition != b"form-data" or name is None:
            raise MalformedRequest("each form part needs Content-Disposition: form-data; name=...",
                                   code="malformed_multipart")
        text_name = name.decode("utf-8", "replace")
        if b"filename" in params:
            self.events.append(("file", text_name, params[b"filename"].decode("utf-8", "replace")))
        else:
            self._field = (text_name, bytearray())

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._field is None:
            self.events.append(("data", bytes(data[start:end])))
            return
        value = self._field[1]
        value.extend(data[start:end])
        if len(value) > FIELD_MAX_BYTES:
            raise TooLarge(f"form field {self._field[0]!r} is over {FIELD_MAX_BYTES} bytes",
                           code="field_too_large", limit=FIELD_MAX_BYTES)

    def _part_end(self) -> None:
        if self._field is None:
            self.events.append(("end",))
            return
        name, value = self._field
        try:
            self.events.append(("field", name, value.decode("utf-8")))
        except UnicodeDecodeError:
            raise InvalidInput(f"form field {name!r} is not UTF-8", code="invalid_encoding") from None

    def _end(self) -> None:
        self.finished = True


@dataclass
class _Incoming:
    received: ReceivedFile
    spool: Spool
    buffer: bytearray = field(default_factory=bytearray)
    failed: bool = False


class _FormBuilder:
    """Applies part events: text fields into the form, file bytes into one spool per file."""

    def __init__(self, limits: FormLimits) -> None:
        self.limits = limits
        self.form = ReceivedForm()
        self._current: _Incoming | None = None

    async def apply(self, events: list[tuple[Any, ...]]) -> None:
        for event in events:
            if event[0] == "field":
                self.form.fields[event[1]] = event[2]
            elif event[0] == "file":
                await self._begin(event[1], event[2])
            elif event[0] == "data":
                await self._data(event[1])
            else:
                await self._end()

    async def _begin(self, name: str, filename: str) -> None:
        if name != self.limits.file_field:
            raise InvalidInput(f"unexpected file field {name!r}; send files as {self.limits.file_field!r}",
                               code="unexpected_file_field")
        if len(self.form.files) >= self.limits.max_files:
            raise TooLarge(f"at most {self.limits.max_files} files per request", code="too_many_files",
                           limit=self.limits.max_files)
        cap = await self.limits.file_cap(self.form.fields)
        spool = await anyio.to_thread.run_sync(Spool, cap, self.limits.tmp_dir)
        self._current = _Incoming(ReceivedFile(safe_filename(filename)), spool)

    async def _data(self, data: bytes) -> None:
        current = self._current
        if current is None or current.failed:
            return
        current.buffer.extend(data)
        if len(current.buffer) >= FLUSH_BYTES:
            await self._flush(current)

    async def _flush(self, current: _Incoming) -> None:
        if current.failed or not current.buffer:
            return
        block = bytes(current.buffer)
        current.buffer.clear()
        try:
            await anyio.to_thread.run_sync(current.spool.write, block)
        except MediaHubError as exc:
            self._fail(current, exc)

    async def _end(self) -> None:
        current = self._current
        if current is None:
            return
        await self._flush(current)
        if not current.failed:
            try:
                current.received.spooled = await anyio.to_thread.run_sync(current.spool.finish)
            except MediaHubError as exc:
                self._fail(current, exc)
        self.form.files.append(current.received)
        self._current = None

    def _fail(self, current: _Incoming, exc: MediaHubError) -> None:
        current.spool.discard()
        if not self.limits.isolate_file_errors:
            raise exc
        current.failed = True
        current.received.error = exc

    def discard(self) -> None:
        if self._current is not None:
            self._current.spool.discard()
        self.form.discard()


def _boundary(request: Request) -> bytes:
    content_type, params = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data":
        raise UnsupportedType("send the upload as multipart/form-data", code="not_multipart")
    boundary = params.get(b"boundary")
    if not boundary or len(boundary) > 200:
        raise MalformedRequest("multipart/form-data needs a boundary of 1-200 characters", code="malformed_multipart")
    return boundary


def _declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not value.isdigit():
        raise MalformedRequest("Content-Length must be a number", code="invalid_content_length")
    return int(value)


def _body_too_large(cap: int) -> TooLarge:
    return TooLarge(f"request body is larger than the limit of {cap} bytes", limit=cap)


def _feed(parser: MultipartParser, chunk: bytes) -> None:
    try:
        parser.write(chunk)
    except FormParserError as exc:
        raise MalformedRequest(f"malformed multipart body: {exc}", code="malformed_multipart") from None


async def body_chunks(request: Request, timeout: float | None) -> AsyncIterator[bytes]:
    """The body's chunks; 408 when the next one takes longer than `timeout` (a trickling client)."""
    stream = request.stream()
    try:
        while True:
            try:
                with anyio.fail_after(timeout):
                    chunk = await anext(stream)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise RequestTimeout(f"no body data arrived for {timeout:g} s", timeout=timeout) from None
            yield chunk
    finally:
        await stream.aclose()


async def read_multipart(request: Request, limits: FormLimits) -> ReceivedForm:
    """Parse the body into text fields and spooled files; the caller discards the form when done."""
    boundary = _boundary(request)
    declared = _declared_length(request)
    if declared is not None and declared > limits.body_cap:
        raise _body_too_large(limits.body_cap)  # before reading a single body byte
    events = _PartEvents(limits.max_files + EXTRA_PARTS)
    parser = MultipartParser(boundary, events.callbacks(), max_header_size=HEADER_LINE_MAX)
    builder = _FormBuilder(limits)
    received = 0
    try:
        async for chunk in body_chunks(request, limits.read_timeout):
            received += len(chunk)
            if declared is not None and received > declared:
                raise MalformedRequest("body is longer than its Content-Length", code="content_length_mismatch")
            if received > limits.body_cap:
                raise _body_too_large(limits.body_cap)
            _feed(parser, chunk)
            await builder.apply(events.take())
        if not events.finished:
            raise MalformedRequest("multipart body ended before its closing boundary", code="malformed_multipart")
        return builder.form
    except ClientDisconnect:
        builder.discard()
        raise MalformedRequest("the client went away mid-upload", code="client_disconnected") from None
    except BaseException:
        builder.discard()
        raise
