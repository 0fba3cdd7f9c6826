"""`python -m bench.reliability` (`make check`): run the reliability scenarios and print one table.

The scenarios are the tests in tests/reliability (the CI suite runs them small); here they run
in their long form (MEDIAHUB_RELIABILITY=full: 200 concurrent uploads, more Schemathesis
examples), together with the permission matrix, token and signature tests of tests/api. Every
number in the table was counted while the scenarios ran: the tests record what they sent and
what came back (tests.reliability.harness.tally), and each test of the tests/api matrices is
one matrix cell. Exit status: pytest's (0 only when every scenario passed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MATRIX_TESTS = ("tests/api/test_permissions.py", "tests/api/test_auth.py",
                "tests/api/test_files.py::test_bad_signatures_are_refused",
                "tests/api/test_files.py::test_pending_items_unsigned_url_is_404",
                "tests/api/test_uploads.py::test_upload_rate_limit_answers_429_with_retry_after",
                "tests/api/test_uploads.py::test_bad_entity_ids_are_refused")


class Collector:
    """Counts each tests/api matrix test as a cell, and remembers what failed."""

    def __init__(self) -> None:
        self.cells = 0
        self.cells_failed = 0
        self.failed: list[str] = []
        self.passed = 0

    def pytest_runtest_logreport(self, report) -> None:  # noqa: ANN001 - pytest hook
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            is_cell = report.nodeid.startswith("tests/api/")
            if report.outcome == "failed":
                self.failed.append(report.nodeid)
            elif report.outcome == "passed" and report.when == "call":
                self.passed += 1
            if is_cell and report.outcome != "skipped":
                self.cells += 1
                self.cells_failed += int(report.outcome == "failed")


def _table(rows: list[tuple[str, str, str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [line]
    for index, row in enumerate(rows):
        out.append("| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + " |")
        if index == 0:
            out.append(line)
    out.append(line)
    return "\n".join(out)


def _latency(samples: list[float]) -> str:
    if not samples:
        return "none measured"
    return f"p50 {statistics.median(samples):.0f} ms, max {max(samples):.0f} ms"


def _many_processes(runs: dict[str, dict]) -> str:
    if not runs:
        return "not run"
    return ", ".join(f"{broker} {run['one_api']:.1f} / {run['two_apis']:.1f}" for broker, run in sorted(runs.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reliability", description=__doc__)
    parser.add_argument("--ci", action="store_true", help="the short CI form of every scenario")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ["MEDIAHUB_RELIABILITY"] = "ci" if args.ci else "full"  # read when the harness is imported
    # The tests/api matrices upload one file twice on purpose; duplicate detection (DEDUP_POLICY, default
    # reject) is not what they measure, so it is off for them here (the reliability servers set it too).
    os.environ.setdefault("DEDUP_POLICY", "allow")

    import pytest

    collector = Collector()
    started = time.perf_counter()
    code = pytest.main(["-q", "-p", "no:cacheprovider", "tests/reliability", *MATRIX_TESTS, *args.pytest_args],
                       plugins=[collector])
    elapsed = time.perf_counter() - started

    from tests.reliability.cluster import MANY_PROCESSES
    from tests.reliability.harness import LATENCIES_MS, PEAK_RSS_KIB, TALLY

    t = TALLY
    peak = max(PEAK_RSS_KIB.values(), default=0)
    by_scenario = ", ".join(f"{name} {kib / 1024:.0f}" for name, kib in sorted(PEAK_RSS_KIB.items()))
    rows = [
        ("row", "counts", "what was measured"),
        ("bad inputs tried / refused / 5xx", f"{t['bad_tried']} / {t['bad_refused']} / {t['bad_5xx']}",
         f"corpus rejects, bombs, trickling bodies, active content, polyglots over HTTP; "
         f"+{t['bad_neutralised']} accepted with the hostile part removed (filenames, polyglot tail)"),
        ("schema fuzz calls / operations / 5xx", f"{t['schema_calls']} / {t['schema_operations']} / {t['schema_5xx']}",
         "Schemathesis over every OpenAPI operation, admin token"),
        ("faults injected / survived", f"{t['faults_injected']} / {t['faults_survived']}",
         "S3 down, hung, one PUT failing, DB down at commit, delete with S3 down, kill -9"),
        ("uploads sent / stored / lost", f"{t['uploads_sent']} / {t['uploads_stored']} / {t['uploads_lost']}",
         f"concurrent mixed uploads + kill -9 run ({t['uploads_refused']} refused as expected); "
         f"lost = acknowledged but missing, or a row missing an object"),
        ("matrix cells checked / failed",
         f"{t['matrix_checked'] + collector.cells} / {t['matrix_failed'] + collector.cells_failed}",
         "bad tokens x every operation, upload routes x callers, id/key escapes, secrets in logs, tests/api matrices"),
        ("body and header caps tried / refused", f"{t['caps_tried']} / {t['caps_refused']}",
         "600 MB JSON declared and streamed without a token; 64 KB and 200 MB header lines, a 100 KB URL, "
         "500 header lines"),
        ("slow heads held / cut", f"{t['slow_held']} / {t['slow_closed']}",
         f"connections that never finish their heads, cut after HEADER_READ_TIMEOUT_SECONDS; meanwhile "
         f"{t['slow_served']} ordinary requests: {_latency(LATENCIES_MS.get('slow heads', []))}"),
        ("CPU-deadline kills / uploads served after", f"{t['deadline_kills']} / {t['deadline_recovered']}",
         "a decode over PIXEL_DEADLINE_SECONDS (a JPEG of many scans): 422 processing_timeout, "
         "its pixel process killed and replaced"),
        ("dead pixel workers / uploads failed / served after",
         f"{t['worker_kills']} / {t['worker_uploads_failed']} / {t['worker_recovered']}",
         "kill -9 of a pixel process, idle and mid-upload: only its upload fails (503 pixel_worker_lost), "
         "/readyz reports it, later uploads succeed; RSS: pixels_*"),
        ("many processes: req/s 1 API / 2 APIs", _many_processes(MANY_PROCESSES),
         "2 API processes + 2 workers on PostgreSQL, S3, a broker; mixed traffic; SIGKILL of an API process and a "
         f"worker (kills survived: {sum(r['kills'] for r in MANY_PROCESSES.values())}); held: acknowledged "
         f"uploads servable ({sum(r['checked'] for r in MANY_PROCESSES.values())} checked), no duplicate row, "
         "strays only of interrupted work (repaired), every job final, rate limit and render single flight shared"),
        ("peak RSS (MB) of the server", f"{peak / 1024:.0f}", f"VmHWM of the server process: {by_scenario}"),
    ]
    print()
    print(f"MediaHub reliability ({'ci' if args.ci else 'full'} form, {elapsed:.0f} s, "
          f"{collector.passed} tests passed, {len(collector.failed)} failed)")
    print(_table(rows))
    for nodeid in collector.failed:
        print(f"FAILED {nodeid}")
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
