"""Moderation assist: automated checks of an upload's stored original, before anyone sees it approved.

MODERATION_CHECKS names them (`nsfw`: open_nsfw's score against NSFW_FLAG_THRESHOLD; `hook`: the platform's
own scanner, pict-rs's `external_validation` contract). While any is configured, every upload queues a
`moderation_check` job in its own transaction and starts `pending`, whoever sends it; the job runs every
check over the stored original and then, under the item's lock:

- a check flags it: `flagged`, the reason naming each flagging check and its code (never a score or a
  detail: the uploader reads the reason), by the system;
- all pass: an upload that would have started approved (access.starts_approved) is approved by the system,
  through `moderation.decide`, so it takes its slot and primary as a moderator's approval would; one that
  would have waited for a moderator stays pending.

A check that cannot judge (the hook times out, the model is missing or altered, a video the model cannot
score) flags: nothing is approved that was not judged. Any status change made before the job decides (a
moderator's, or anything else through `moderation.apply_status`) ends the checks' say over the item: the
job then only records its results. Results are kept in the item's metadata (CHECKS), for the queue.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx

from mediahub.config import Settings
from mediahub.db.repositories import MediaRepository
from mediahub.db.session import Database
from mediahub.errors import MediaHubError, Unavailable
from mediahub.media import exposure
from mediahub.media.audit import SYSTEM_ACTOR
from mediahub.media.cdn import CdnPurge
from mediahub.media.cleanup import purge_pending_deletes
from mediahub.media.moderation import AWAITING, CHECKS, RISK, decide
from mediahub.media.originals import stored_on_disk
from mediahub.pipeline.nsfw import MODEL, NsfwModel
from mediahub.pipeline.options import image_options
from mediahub.pipeline.probe import ImageLimits
from mediahub.pipeline.sniff import sniff
from mediahub.storage.base import Storage

Verdict = Literal["pass", "flag"]
PASS: Verdict = "pass"
FLAG: Verdict = "flag"
# The item's CHECKS metadata: whether the checks still decide its status, what a pass does, their results,
# and the highest score among them (what a moderator sorts by: a flag without a score counts as 1).
APPROVE_ON_PASS = "approve_on_pass"
RESULTS = "results"
HOOK_DETAIL_BYTES = 200  # of a refusing hook's answer, kept in the detail; the rest is never read
DETAIL_MAX = 300
OFF = "off"  # the readiness status of checks not configured


@dataclass(frozen=True)
class Original:
    """What a check judges: the stored original on local disk."""

    path: Path
    content_type: str
    size: int
    media_kind: str  # image | video
    format: str  # as sniffed from its bytes


@dataclass(frozen=True)
class CheckResult:
    check: str
    verdict: Verdict
    code: str  # stable: nsfw_score, hook_accepted, hook_rejected, hook_timeout...
    detail: str
    score: float | None = None

    def as_metadata(self) -> dict[str, Any]:
        return {**asdict(self), "detail": self.detail[:DETAIL_MAX]}


# What a `moderation_check` job finds in a process that runs no checks (its MODERATION_CHECKS empty while the
# API's are not, or turned off since the upload): no check passed it, so a moderator judges it.
NOT_CONFIGURED = CheckResult("checks", FLAG, "checks_not_configured",
                             "this process runs no MODERATION_CHECKS: a moderator judges the upload")


class Check(Protocol):
    """One automated check: it judges an original, and says (for readiness) whether it can."""

    name: str

    def judge(self, original: Original) -> CheckResult:
        """Never raises for the content judged: what it cannot judge it flags, with a code saying why."""
        ...

    def check(self) -> None:
        """Raise Unavailable (its code a readiness status) when this check cannot judge anything."""
        ...


class NsfwCheck:
    name = "nsfw"

    def __init__(self, model: NsfwModel, threshold: float, limits: ImageLimits) -> None:
        self.model = model
        self.threshold = threshold
        self.limits = limits

    def check(self) -> None:
        self.model.check()

    def judge(self, original: Original) -> CheckResult:
        if original.media_kind != "image":
            return CheckResult(self.name, FLAG, "nsfw_unscored_video",
                               "the bundled model scores still images: a moderator judges this video")
        try:
            score = self.model.score(original.path, original.format, self.limits)
        except Unavailable as exc:
            return CheckResult(self.name, FLAG, exc.code, exc.message)
        except MediaHubError as exc:  # the pipeline's decode errors: corrupt, over a limit
            return CheckResult(self.name, FLAG, "nsfw_undecodable", f"{exc.code}: {exc.message}")
        verdict = FLAG if score >= self.threshold else PASS
        return CheckResult(self.name, verdict, "nsfw_score",
                           f"{MODEL} scored {score:.3f} (flags from {self.threshold:g})", round(score, 4))


class HookCheck:
    """POST the original's bytes (streamed from disk, its content type set) to the hook: a 2xx accepts it.

    Anything else flags it, each with its own code: another status (in the detail, with the start of the
    answer), a redirect (never followed), a timeout, a refused connection, a name that does not resolve,
    a TLS failure. At most HOOK_DETAIL_BYTES of an answer are read. `timeout` bounds each step (connect, each
    read and write), `deadline` the whole call: a hook sending a byte per timeout is cut there (hook_timeout).
    """

    name = "hook"

    def __init__(self, url: str, timeout: float, deadline: float) -> None:
        self.url = url
        self.timeout = timeout
        self.deadline = deadline

    def check(self) -> None:
        """The hook is the platform's: whether it answers is each judgement's to find out (and flag)."""

    def judge(self, original: Original) -> CheckResult:
        headers = {"Content-Type": original.content_type, "Content-Length": str(original.size)}
        with _Deadline(self.deadline) as deadline:
            try:
                return self._call(original, headers, deadline)
            except httpx.HTTPError as exc:
                if deadline.expired:
                    return CheckResult(self.name, FLAG, "hook_timeout",
                                       f"no complete answer within the {self.deadline:g} s deadline")
                if isinstance(exc, httpx.TimeoutException):
                    return CheckResult(self.name, FLAG, "hook_timeout",
                                       f"no answer within {self.timeout:g} s ({type(exc).__name__})")
                code, what = _connection_failure(exc)
                return CheckResult(self.name, FLAG, code, f"{what}: {str(exc)[:DETAIL_MAX]}")

    def _call(self, original: Original, headers: dict[str, str], deadline: _Deadline) -> CheckResult:
        with (original.path.open("rb") as body,
              httpx.Client(timeout=self.timeout, follow_redirects=False) as client,
              client.stream("POST", self.url, content=body, headers=headers,
                            extensions={"trace": deadline.trace}) as response):
            status = response.status_code
            if response.is_success:
                return CheckResult(self.name, PASS, "hook_accepted", f"the hook answered {status}")
            if response.is_redirect:
                return CheckResult(self.name, FLAG, "hook_redirect",
                                   f"the hook answered {status} (a redirect, not followed)")
            said = _start_of(response)
            return CheckResult(self.name, FLAG, "hook_rejected",
                               f"the hook answered {status}" + (f": {said}" if said else ""))


class _Deadline:
    """Ends a hook call at its deadline, whatever step it is in: its connection is shut down, which wakes the
    blocked read or write (a per-step timeout never fires while each byte arrives within it)."""

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpx's trace extension: the connection's socket, once connected."""
        if event.endswith("connect_tcp.complete"):  # directly or through a proxy
            with self._lock:
                self._socket = info["return_value"].get_extra_info("socket")
                if self.expired:
                    self._shut()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            self._shut()

    def _shut(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):  # closed already
                self._socket.shutdown(socket.SHUT_RDWR)


def _start_of(response: httpx.Response) -> str:
    """The first bytes of an answer, as text on one line; the rest is never read."""
    read = b""
    with contextlib.suppress(httpx.HTTPError):  # cut short (the deadline): what arrived is its start
        for chunk in response.iter_raw():
            read += chunk
            if len(read) >= HOOK_DETAIL_BYTES:
                break
    return " ".join(read[:HOOK_DETAIL_BYTES].decode("utf-8", "replace").split())


def _connection_failure(exc: BaseException) -> tuple[str, str]:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return "hook_tls", "TLS failed"
        if isinstance(seen, socket.gaierror):
            return "hook_dns", "the hook's host name does not resolve"
        if isinstance(seen, ConnectionRefusedError):
            return "hook_refused", "the hook refused the connection"
        seen = seen.__cause__ or seen.__context__
    text = str(exc).lower()  # httpcore re-raises some failures as text only
    for code, words, what in (("hook_tls", ("ssl", "certificate", "tls"), "TLS failed"),
                              ("hook_dns", ("name or service not known", "name resolution", "nodename"),
                               "the hook's host name does not resolve"),
                              ("hook_refused", ("connection refused",), "the hook refused the connection")):
        if any(word in text for word in words):
            return code, what
    return "hook_unreachable", f"the hook could not be reached ({type(exc).__name__})"


class ModerationChecks:
    """The checks of this process (one NSFW model each, loaded on first use) and their verdicts on items."""

    def __init__(self, checks: Sequence[Check]) -> None:
        self.checks = list(checks)

    @classmethod
    def from_settings(cls, settings: Settings) -> ModerationChecks:
        built: dict[str, Check] = {}
        for name in settings.moderation_checks:
            if name == "nsfw":
                built[name] = NsfwCheck(NsfwModel(settings.nsfw_model_file), settings.nsfw_flag_threshold,
                                        image_options(settings).limits)
            elif name == "hook" and settings.moderation_hook_url:
                built[name] = HookCheck(settings.moderation_hook_url, settings.moderation_hook_timeout_seconds,
                                        settings.moderation_hook_deadline_seconds)
        return cls(list(built.values()))

    @property
    def enabled(self) -> bool:
        return bool(self.checks)

    def check(self) -> None:
        """Readiness: Unavailable when a configured check cannot judge (its model is missing or altered)."""
        for check in self.checks:
            check.check()

    def status(self) -> str:
        """`off`, `ok`, or the code of the first check that cannot judge."""
        if not self.enabled:
            return OFF
        try:
            self.check()
        except Unavailable as exc:
            return exc.code
        return "ok"

    def judge(self, original: Original) -> list[CheckResult]:
        return [check.judge(original) for check in self.checks]

    def run(self, database: Database, storage: Storage, cdn: CdnPurge, media_id: int | None,
            limit: int, temp_dir: Path | None) -> list[int]:
        """The `moderation_check` job: judge the item's original, then decide (see the module's docstring).
        The CDN purge jobs its decision queued are returned. A deleted item, or one whose status was decided
        meanwhile, is left alone (its results are still recorded): a re-run changes nothing."""
        item = _awaiting(database, media_id)
        if item is None:
            return []
        if not self.checks:  # a process deployed without them: what the API queued for them is not judged here
            results = [NOT_CONFIGURED]
        else:
            with stored_on_disk(storage, item.original_key, max(limit, item.byte_size), temp_dir) as spooled:
                sniffed = sniff(spooled.head())
                results = self.judge(Original(spooled.path, item.content_type, spooled.size, sniffed.media_kind,
                                              sniffed.format))
        purges: list[int] = []
        with exposure.following_status(storage) as sync, database.session() as session:
            locked = MediaRepository(session).lock(item.id)
            if locked is None:
                return []
            state = dict((locked.meta or {}).get(CHECKS) or {})
            if state.get(AWAITING):
                flagged = [result for result in results if result.verdict == FLAG]
                if flagged:
                    purges = decide(session, locked, "flagged", _reason(flagged), cdn, SYSTEM_ACTOR)
                elif state.get(APPROVE_ON_PASS):
                    purges = decide(session, locked, "approved", None, cdn, SYSTEM_ACTOR)
                sync(locked)
            state.update({AWAITING: False, RESULTS: [result.as_metadata() for result in results],
                          RISK: risk(results)})
            locked.meta = {**(locked.meta or {}), CHECKS: state}
        purge_pending_deletes(database, storage)
        return purges


def _awaiting(database: Database, media_id: int | None) -> Any:
    if media_id is None:
        return None
    with database.session() as session:
        item = MediaRepository(session).get(media_id)
        return item if item is not None and ((item.meta or {}).get(CHECKS) or {}).get(AWAITING) else None


def risk(results: Iterable[CheckResult]) -> float:
    """The highest score of the results, a flag without a score counting as 1 (0 when nothing flagged)."""
    scores = [result.score if result.score is not None else (1.0 if result.verdict == FLAG else 0.0)
              for result in results]
    return max(scores, default=0.0)


def _reason(flagged: list[CheckResult]) -> str:
    """The flagging checks and their codes only: the reason is the uploader's to read (and in the item's
    history), and a score or the hook's own words there would let them probe the threshold. Scores and
    details are the moderators', in the queue."""
    return "automated checks: " + "; ".join(f"{result.check} {result.code}" for result in flagged)


def awaiting_checks(approve_on_pass: bool) -> dict[str, Any]:
    """The CHECKS metadata of a new upload while checks are configured."""
    return {AWAITING: True, APPROVE_ON_PASS: approve_on_pass}
