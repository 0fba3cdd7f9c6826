"""Where the pixel work of an upload runs: the calling thread, or a set of worker processes.

In a server, decoding and resizing in threads competes with the event loop for
the GIL, so `/healthz` and small requests wait behind big photos. With
`PIXEL_WORKERS` > 0 the pipeline steps run in that many worker processes
instead, at a lower scheduling priority than the server; their inputs (a
spooled file's path, options) and results (encoded bytes, sizes, hashes) are
plain picklable values.

Each worker process runs one call at a time, so a call that overruns its
deadline (`PIXEL_DEADLINE_SECONDS`: a decoder stuck in a hostile file) is ended
by killing exactly its process, and a process that dies (OOM kill, decoder
crash) fails only the call it was running. Either way a fresh process takes
the slot and the next upload is served. A thread cannot be killed, so in the
calling thread (`PIXEL_WORKERS=0`) there is no deadline: only the structural
limits of the pipeline bound the work.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import Any, TypeVar

from mediahub.errors import InvalidInput, Unavailable

T = TypeVar("T")
log = logging.getLogger(__name__)

# Imported by each worker before it takes a call, so no call's deadline pays for the imports.
PRELOAD = ("mediahub.pipeline.image", "mediahub.pipeline.video")
STARTUP_SECONDS = 120.0  # a worker that is not ready by then is treated as dead
# Added to each worker's scheduling niceness: when the cores are busy with photos, the server's own
# process (its event loop, small requests, the upload's storing and commit) is run first.
NICENESS = 5
STOP_SECONDS = 5.0


class _WorkerDied(Exception):
    pass


class _DeadlineExceeded(Exception):
    pass


class _NotSent(_WorkerDied):
    """The process died before the call reached it: the call never ran."""


def _serve(connection: Connection, preload: tuple[str, ...]) -> None:
    """A worker process: answer (function, args) calls with (ok, result or exception) until the pipe closes."""
    # Ctrl-C reaches the whole process group: the parent decides when its workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # One libvips thread per worker process: the processes already use every core.
    os.environ["VIPS_CONCURRENCY"] = "1"
    os.nice(NICENESS)
    for name in preload:
        importlib.import_module(name)
    try:
        connection.send(os.getpid())  # ready
    except OSError:  # closed before this process was ready: the pool is shutting down
        return
    while True:
        try:
            function, args = connection.recv()
        except (EOFError, OSError):
            return
        try:
            reply: tuple[bool, Any] = (True, function(*args))
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
            reply = (False, exc)
        try:
            connection.send(reply)
        except OSError:  # the parent is gone (or killed this call): nobody waits for the answer
            return
        except Exception as exc:  # noqa: BLE001 - an unpicklable result or error
            connection.send((False, RuntimeError(f"pixel worker could not return its result: {exc!r}")))


class _Worker:
    """One spawned process and the pipe to it."""

    def __init__(self, context: multiprocessing.context.SpawnContext) -> None:
        self._connection, child_end = context.Pipe()
        self.process = context.Process(target=_serve, args=(child_end, PRELOAD), name="mediahub-pixels",
                                       daemon=True)
        self.process.start()
        child_end.close()
        self._ready = False

    def alive(self) -> bool:
        # The sentinel, not is_alive(): that relies on waitpid, and a process reaped by
        # someone else's waitpid(-1) would look alive forever.
        return not wait([self.process.sentinel], 0)

    def _receive(self, timeout: float | None) -> Any:
        """The next message; _DeadlineExceeded when none came in time, _WorkerDied when the process is gone."""
        if not wait([self._connection, self.process.sentinel], timeout):
            raise _DeadlineExceeded
        try:
            return self._connection.recv()  # a reply sent just before dying still counts
        except (EOFError, OSError):
            raise _WorkerDied from None

    def wait_ready(self) -> bool:
        """Whether the process has imported the pipeline and waits for calls (waiting for it, up to a limit)."""
        if not self._ready:
            try:
                self._receive(STARTUP_SECONDS)
            except (_DeadlineExceeded, _WorkerDied):
                return False
            self._ready = True
        return True

    def call(self, function: Callable[..., Any], args: tuple[Any, ...],
             deadline: float | None) -> tuple[bool, Any]:
        """(True, result) or (False, the exception the function raised)."""
        if not self.wait_ready():
            raise _NotSent
        try:
            self._connection.send((function, args))
        except OSError:
            raise _NotSent from None
        return self._receive(deadline)

    def stop(self, *, kill: bool = False) -> None:
        """End the process: at once (`kill`), or by closing its pipe and waiting a little."""
        self._connection.close()
        if not kill:
            self.process.join(STOP_SECONDS)
        if self.alive():
            self.process.kill()
        self.process.join(STOP_SECONDS)


class PixelWorkers:
    """Runs pipeline calls in the calling thread (`processes == 0`) or in `processes` worker processes.

    Processes start on first use, or all at once with `start`; a call waits for a free one. A call in a process
    that takes longer than `deadline_seconds` ends with 422 `processing_timeout`;
    one whose process died ends with 503 `pixel_worker_lost`. The slot gets a new
    process at once in both cases.
    """

    def __init__(self, processes: int, deadline_seconds: float | None = None) -> None:
        self._processes = processes
        self._deadline = deadline_seconds
        self._context = multiprocessing.get_context("spawn")
        self._changed = threading.Condition()
        self._idle: list[_Worker | None] = [None] * processes  # None: no process yet (or its start failed)
        self._busy: set[_Worker] = set()
        self._start_failed = False
        self._closed = False

    @property
    def in_process(self) -> bool:
        """Whether `run` calls in this process (so arguments may be callables and need not pickle)."""
        return self._processes == 0

    def run(self, function: Callable[..., T], *args: Any) -> T:
        if self._processes == 0:
            return function(*args)
        for attempt in range(2):
            worker = self._checkout()
            healthy = False
            try:
                ok, value = worker.call(function, args, self._deadline)
                healthy = True
                break
            except _NotSent:
                if attempt:
                    raise self._lost() from None
            except _DeadlineExceeded:
                raise InvalidInput(f"processing took longer than {self._deadline:g} s and was stopped",
                                   code="processing_timeout") from None
            except _WorkerDied:
                raise self._lost() from None
            finally:
                # Anything but an answer (deadline, death, the caller interrupted mid-call) leaves the
                # process busy or gone: it is replaced, never handed to the next call.
                self._checkin(worker, healthy)
        if ok:
            return value
        raise value

    @staticmethod
    def _lost() -> Unavailable:
        return Unavailable("the process working on this upload stopped; the upload was not stored, try again",
                           code="pixel_worker_lost")

    def start(self) -> None:
        """Start every process now and wait until each is ready, so no call pays for a start. A process that
        cannot start, or dies meanwhile, is left to the next call (or `check`) to replace."""
        with self._changed:
            if self._closed:
                return
            starting = [self._replace(w) if w is None or not w.alive() else w for w in self._idle]
            self._idle = []  # out of reach of calls until ready (they wait, as for a busy pool)
        try:
            for worker in starting:
                if worker is not None:
                    worker.wait_ready()
        finally:
            with self._changed:
                for worker in starting:
                    if self._closed and worker is not None:
                        worker.stop(kill=True)
                    elif not self._closed:
                        self._idle.append(worker)
                self._changed.notify_all()

    def _checkout(self) -> _Worker:
        with self._changed:
            self._changed.wait_for(lambda: bool(self._idle) or self._closed)
            if self._closed:
                raise Unavailable("the pixel workers are shutting down", code="pixel_workers_unavailable")
            worker = self._idle.pop()
            if worker is None or not worker.alive():
                worker = self._replace(worker)
                if worker is None:
                    self._idle.append(None)
                    self._changed.notify()
                    raise Unavailable("cannot start a pixel worker process", code="pixel_workers_unavailable")
            self._busy.add(worker)
            return worker

    def _checkin(self, worker: _Worker, healthy: bool) -> None:
        with self._changed:
            self._busy.discard(worker)
            if self._closed:
                worker.stop(kill=True)
                return
            self._idle.append(worker if healthy else self._replace(worker))
            self._changed.notify()

    def _replace(self, old: _Worker | None) -> _Worker | None:
        """A new process for a slot, its old one killed first; None when it cannot start. Under the lock."""
        if old is not None:
            old.stop(kill=True)
        try:
            worker = _Worker(self._context)
        except Exception as exc:  # noqa: BLE001 - fork/exec failures: out of processes or memory
            log.error("cannot start a pixel worker process: %s", exc)
            self._start_failed = True
            return None
        self._start_failed = False
        return worker

    def pids(self) -> list[int]:
        """The process ids of the running workers (for operators and tests)."""
        with self._changed:
            return [w.process.pid for w in (*self._idle, *self._busy) if w is not None and w.alive()]

    def check(self) -> None:
        """Readiness: raise Unavailable when a worker process had died or cannot be started.

        Dead idle processes are replaced here, so the next check (and upload) finds the pool whole again.
        """
        if self._processes == 0:
            return
        with self._changed:
            dead = [w for w in (*self._idle, *self._busy) if w is not None and not w.alive()]
            self._idle = [self._replace(w) if w is not None and not w.alive() else w for w in self._idle]
            start_failed = self._start_failed
        if dead:
            raise Unavailable(f"{len(dead)} pixel worker process(es) had stopped and were replaced",
                              code="pixel_workers_unavailable")
        if start_failed:
            raise Unavailable("cannot start a pixel worker process", code="pixel_workers_unavailable")

    def close(self) -> None:
        with self._changed:
            self._closed = True
            workers = [w for w in self._idle if w is not None]
            self._idle = []
            self._changed.notify_all()
        for worker in workers:
            worker.stop()
