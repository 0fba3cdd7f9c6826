"""Helpers of the reliability scenarios: a real `mediahub serve` process, a fault-injecting
loopback proxy, raw HTTP, and the tally `python -m bench.reliability` prints.

Everything talks to 127.0.0.1 only; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import func, select

from mediahub.api.auth import issue_token
from mediahub.config import Settings
from mediahub.db import migrate
from mediahub.db.models import MediaItem, PendingDelete
from mediahub.db.repositories import MediaRepository
from mediahub.db.session import Database
from tests.support.processes import stop_process
from tests.support.s3_server import DUMMY_CREDENTIALS, free_port

HOST = "127.0.0.1"
JWT_SECRET = "reliability-secret-0123456789abcdef-NEVER-LOGGED"
ROOT = Path(__file__).resolve().parents[2]
# `python -m bench.reliability` sets this to run the long forms (200 uploads, more examples).
FULL = os.environ.get("MEDIAHUB_RELIABILITY", "").lower() == "full"


def scale(ci: int, full: int) -> int:
    return full if FULL else ci


# ---------------------------------------------------------------------------------------------
# The tally: what the scenarios tried and what came of it (printed by bench.reliability).

TALLY: Counter[str] = Counter()
PEAK_RSS_KIB: dict[str, int] = {}


def tally(**counts: int) -> None:
    TALLY.update(counts)


def record_peak(scenario: str, kib: int) -> None:
    PEAK_RSS_KIB[scenario] = max(kib, PEAK_RSS_KIB.get(scenario, 0))


# Latencies (ms) of ordinary requests served while a scenario held the server busy, per scenario.
LATENCIES_MS: dict[str, list[float]] = {}


def record_latency(scenario: str, ms: float) -> None:
    LATENCIES_MS.setdefault(scenario, []).append(ms)


# ---------------------------------------------------------------------------------------------
# Tokens and multipart bodies.

def token(sub: str, *, roles: tuple[str, ...] = ("user",), verified: bool = False,
          grants: tuple[str, ...] = (), ttl: int = 3600) -> str:
    settings = Settings(_env_file=None, jwt_secret=JWT_SECRET)
    return issue_token(settings, sub, roles=roles, verified=verified, grants=grants, ttl=ttl)


def bearer(sub: str = "ADM-1", **kwargs: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(sub, **kwargs)}"}


def admin() -> dict[str, str]:
    return bearer("ADM-1", roles=("user", "admin"), verified=True)


def multipart(parts: list[tuple[str, bytes, str | None]], boundary: str = "b0undary") -> bytes:
    out = b""
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"'.encode()
        if filename is not None:
            disposition += b'; filename="' + filename.encode("utf-8", "surrogateescape") + b'"'
        out += b"--" + boundary.encode() + b"\r\nContent-Disposition: " + disposition + b"\r\n\r\n" + value + b"\r\n"
    return out + b"--" + boundary.encode() + b"--\r\n"


# ---------------------------------------------------------------------------------------------
# Raw HTTP over a socket: for requests no client library would send.

@dataclass
class RawResponse:
    status: int
    head: str
    body: bytes

    def header(self, name: str) -> str | None:
        for line in self.head.split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None


def _recv_until(sock: socket.socket, data: bytes, done, deadline: float) -> bytes:
    """Append what the socket sends to `data` until `done(data)`, the peer closes, or the deadline."""
    while not done(data) and time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            more = sock.recv(65536)
        except (ConnectionError, TimeoutError):
            break
        if not more:
            break
        data += more
    return data


def read_response(sock: socket.socket, timeout: float = 30.0) -> RawResponse:
    """Read one response (head and a Content-Length body) within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    data = _recv_until(sock, b"", lambda got: b"\r\n\r\n" in got, deadline)
    head, _, body = data.partition(b"\r\n\r\n")
    text = head.decode("latin-1")
    if not text.startswith("HTTP/1.1 "):
        return RawResponse(0, text, body)
    response = RawResponse(int(text[9:12]), text, body)
    length = int(response.header("content-length") or 0)
    response.body = _recv_until(sock, body, lambda got: len(got) >= length, deadline)
    return response


def raw_request(port: int, head: str, body: bytes = b"", timeout: float = 30.0) -> RawResponse:
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        try:
            sock.sendall(head.encode("latin-1") + body)
        except ConnectionError:
            pass  # the server may answer and hang up before the whole body is sent
        return read_response(sock, timeout)


def upload_head(path: str, auth: dict[str, str], length: int | None, boundary: str = "b0undary",
                extra: str = "") -> str:
    size = f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    return (f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: {auth['Authorization']}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n{size}{extra}\r\n")


# ---------------------------------------------------------------------------------------------
# A real server: `python -m mediahub.cli serve` in a subprocess, settings from its environment.

def status_kib(pid: int, field_name: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field_name} not in /proc/{pid}/status")


@dataclass
class ChildProcess:
    """A `mediahub` command in a subprocess, settings from its environment, output in `log_path`."""

    env: dict[str, str]
    workdir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, kw_only=True)  # set by `start`
    log_path: Path = field(init=False)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM, as an orchestrator stops it (SIGKILL after `timeout`); its exit status."""
        assert self.process is not None
        stop_process(self.process, timeout)
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class WorkerProcess(ChildProcess):
    """`mediahub worker`; started once it says so."""

    name: str = "worker"

    def __post_init__(self) -> None:
        self.log_path = self.workdir / f"{self.name}.log"

    def start(self, timeout: float = 60.0) -> WorkerProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        process = self.process = start_cli(["worker"], self.env, self.workdir, self.log_path)
        if not wait_until(lambda: "worker started" in self.log() or process.poll() is not None, timeout):
            raise RuntimeError(f"worker did not start in {timeout} s: {self.log()[-3000:]}")
        if process.poll() is not None:
            raise RuntimeError(f"worker exited {process.returncode}: {self.log()[-3000:]}")
        return self


@dataclass
class ServerProcess(ChildProcess):
    """`mediahub serve` on a port of its own; started once /healthz answers."""

    args: tuple[str, ...] = ()  # more `mediahub serve` options
    port: int = 0
    starts: int = 0

    def __post_init__(self) -> None:
        self.log_path = self.workdir / "server.log"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 60.0, port: int | None = None) -> ServerProcess:
        """Start on `port` (a restart where its clients expect it), else on a free one."""
        self.port = port or free_port()
        self.starts += 1
        self.process = start_cli(["serve", "--host", HOST, "--port", str(self.port), *self.args],
                                 {**self.env, "PUBLIC_BASE_URL": f"http://{HOST}:{self.port}"}, self.workdir,
                                 self.log_path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited {self.process.returncode}: {self.log()[-3000:]}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not start in {timeout} s: {self.log()[-3000:]}")

    def answers(self) -> bool:
        try:
            return requests.get(f"{self.url}/healthz", timeout=10).json() == {"status": "ok"}
        except (requests.RequestException, ValueError):
            return False

    def vmhwm_kib(self) -> int:
        return status_kib(self.pid, "VmHWM")

    def vmrss_kib(self) -> int:
        return status_kib(self.pid, "VmRSS")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)  # uvicorn: graceful shutdown, lifespan closes the runtime
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def start_cli(args: list[str], settings: dict[str, str], workdir: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """`python -m mediahub.cli ARGS` with these settings over this environment, its output appended to a log."""
    env = {**os.environ, **settings, "PYTHONPATH": str(ROOT / "src")}
    env.pop("CI", None)  # nothing in the service reads it; keep its environment minimal and explicit
    with log_path.open("ab") as log:  # a file, not a pipe: a full pipe would block the process
        return subprocess.Popen([sys.executable, "-m", "mediahub.cli", *args], cwd=workdir, env=env, stdout=log,
                                stderr=subprocess.STDOUT)


def server_env(database_url: str, *, s3_endpoint: str | None = None, bucket: str | None = None,
               media_root: Path | None = None, **overrides: Any) -> dict[str, str]:
    """Settings for a server process; uploads are cheap (two variants, no jobs)."""
    env = {
        "DATABASE_URL": database_url,
        "JWT_SECRET": JWT_SECRET,
        "IMAGE_SIZES": "thumbnail:150x150:crop,small:400",
        "MAKE_WEBP": "false",
        "VIDEO_TRANSCODE": "false",
        "DEFER_SLOW_VARIANTS": "false",
        "UPLOAD_RATE_LIMIT": "0",
        "DEDUP_POLICY": "allow",  # the same corpus file goes up many times on purpose
        "SWEEP_INTERVAL_SECONDS": "1",
        "TAGGING_ENABLED": "false",
    }
    if s3_endpoint:
        env.update({"STORAGE_TYPE": "s3", "S3_ENDPOINT_URL": s3_endpoint, "S3_BUCKET_NAME": bucket or "mediahub",
                    "S3_CREATE_BUCKET": "true", "AWS_REGION": "us-east-1", **DUMMY_CREDENTIALS})
    else:
        env.update({"STORAGE_TYPE": "local", "MEDIA_ROOT": str(media_root)})
    env.update({key.upper(): str(value) for key, value in overrides.items()})
    return env


@contextmanager
def running(env: dict[str, str], workdir: Path, args: tuple[str, ...] = ()) -> Iterator[ServerProcess]:
    workdir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(env["DATABASE_URL"])
    server = ServerProcess(env, workdir, args).start()
    try:
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------
# What the database and the store hold.

@dataclass
class Snapshot:
    rows: int
    row_keys: dict[int, list[str]]
    pending: set[str]
    objects: set[str]

    @property
    def all_row_keys(self) -> set[str]:
        return {key for keys in self.row_keys.values() for key in keys}

    @property
    def rows_missing_objects(self) -> dict[int, list[str]]:
        return {mid: missing for mid, keys in self.row_keys.items()
                if (missing := [k for k in keys if k not in self.objects])}

    @property
    def stray(self) -> set[str]:
        return self.objects - self.all_row_keys - self.pending


def snapshot(database_url: str, storage: Any) -> Snapshot:
    database = Database(database_url)
    try:
        with database.session() as session:
            rows = session.scalar(select(func.count(MediaItem.id))) or 0
            row_keys: dict[int, list[str]] = {}
            for media_id, key in MediaRepository(session).all_keys():
                row_keys.setdefault(media_id, []).append(key)
            pending = set(session.scalars(select(PendingDelete.storage_key)))
    finally:
        database.dispose()
    return Snapshot(rows, row_keys, pending, {info.key for info in storage.list()})


def verify_store(env: dict[str, str], *args: str) -> dict[str, Any]:
    """`mediahub verify --grace-minutes 0 --json ARGS` with these settings: its summary line."""
    done = subprocess.run([sys.executable, "-m", "mediahub.cli", "verify", "--grace-minutes", "0", "--json", *args],
                          env={**os.environ, **env, "PYTHONPATH": str(ROOT / "src")}, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


# ---------------------------------------------------------------------------------------------
# A loopback TCP proxy that injects faults between the server and S3 or PostgreSQL.

class FaultProxy:
    """Forwards 127.0.0.1:port to an upstream port; `mode` decides what a new connection meets.

    pass: forwarded. refuse: closed at once (a dead server). blackhole: accepted and read,
    never answered (a hung server). With `http=True` (S3) each request is parsed, so
    `fail_puts_of(n)` can break every attempt to PUT the n-th distinct key from now on, and
    `on_put` is called as each PUT arrives.
    """

    def __init__(self, upstream_port: int, *, http: bool = False) -> None:
        self.upstream_port = upstream_port
        self.http = http
        self.mode = "pass"
        self.on_put: Callable[[str], None] | None = None
        self.put_delay = 0.0  # seconds each PUT waits before it is forwarded (a slow store)
        self.puts_seen = 0
        self.failed_requests = 0
        self._fail_nth: int | None = None
        self._put_keys: list[str] = []
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener = socket.create_server((HOST, 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept_loop, daemon=True, name="fault-proxy").start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def set_mode(self, mode: str) -> None:
        """Switch, and cut the connections already open (pooled connections die too)."""
        assert mode in {"pass", "refuse", "blackhole"}
        self.mode = mode
        if mode != "pass":
            self.cut_all()

    def fail_puts_of(self, nth: int | None) -> None:
        with self._lock:
            self._fail_nth = nth
            self._put_keys = []

    def cut_all(self) -> None:
        with self._lock:
            sockets, self._sockets = set(self._sockets), set()
        for sock in sockets:
            _close(sock)

    def close(self) -> None:
        self._closed = True
        _close(self._listener)
        self.cut_all()

    def _track(self, *sockets: socket.socket) -> None:
        with self._lock:
            self._sockets.update(sockets)

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        mode = self.mode
        if mode == "refuse":
            _close(client, reset=True)
            return
        self._track(client)
        if mode == "blackhole":
            client.settimeout(120)
            try:
                while client.recv(65536):
                    pass
            except OSError:
                pass
            _close(client)
            return
        try:
            upstream = socket.create_connection((HOST, self.upstream_port), timeout=10)
        except OSError:
            _close(client, reset=True)
            return
        upstream.settimeout(None)
        client.settimeout(None)
        self._track(upstream)
        threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
        if self.http:
            self._forward_requests(client, upstream)
        else:
            _pipe(client, upstream)

    def _forward_requests(self, client: socket.socket, upstream: socket.socket) -> None:
        reader = _Reader(client)
        try:
            while True:
                head = reader.until(b"\r\n\r\n")
                if head is None:
                    break
                method, path, headers = _parse_head(head)
                if method == "PUT":
                    key = path.split("?", 1)[0]
                    with self._lock:
                        self.puts_seen += 1
                        if key not in self._put_keys:
                            self._put_keys.append(key)
                        doomed = self._fail_nth is not None and self._put_keys.index(key) + 1 == self._fail_nth
                    if self.on_put is not None:
                        self.on_put(key)
                    if doomed or self.mode != "pass":
                        with self._lock:
                            self.failed_requests += 1
                        break  # a reset mid-request: what a dropped connection looks like
                if method == "PUT" and self.put_delay:
                    time.sleep(self.put_delay)
                upstream.sendall(head)
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    while True:
                        line = reader.until(b"\r\n")
                        if line is None:
                            return
                        upstream.sendall(line)
                        size = int(line.split(b";")[0].strip() or b"0", 16)
                        body = reader.exactly(size + 2)
                        if body is None:
                            return
                        upstream.sendall(body)
                        if size == 0:
                            break
                else:
                    length = int(headers.get("content-length", "0") or 0)
                    remaining = length
                    while remaining:
                        chunk = reader.some(min(remaining, 65536))
                        if not chunk:
                            return
                        upstream.sendall(chunk)
                        remaining -= len(chunk)
        except OSError:
            pass
        finally:
            _close(client, reset=True)
            _close(upstream)


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buffer += data
        return True

    def until(self, marker: bytes) -> bytes | None:
        while marker not in self.buffer:
            if len(self.buffer) > 1024 * 1024 or not self._fill():
                return None
        index = self.buffer.index(marker) + len(marker)
        out, self.buffer = self.buffer[:index], self.buffer[index:]
        return out

    def exactly(self, n: int) -> bytes | None:
        while len(self.buffer) < n:
            if not self._fill():
                return None
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def some(self, n: int) -> bytes:
        if not self.buffer and not self._fill():
            return b""
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    method, path, *_ = lines[0].split(" ") + ["", ""]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    return method, path, headers


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    finally:
        _close(source)
        _close(target)


def _close(sock: socket.socket, reset: bool = False) -> None:
    """Close; `reset` sends an RST (SO_LINGER 0) instead of an orderly FIN."""
    try:
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
