"""Child process of the `scale` section: an upload's duplicate lookup in a fresh worker process.

    python -m bench.scale_lookup DATABASE_URL SAMPLES ENTITIES_JSON

Builds the runtime a worker or server builds (`Runtime.build`), then makes the call ingest makes
before an upload's variants are stored (`dedup.check_duplicate` in a new session, with the
process's `DedupIndex`), for pictures that are not in the library: the index's load first (what
the first lookup of a fresh process pays before its own work), then SAMPLES times in the global
scope (the in-memory index)
and SAMPLES times in the entity scope (DEDUP_SCOPE's default: every fingerprinted row of one
gallery compared; the galleries are ENTITIES_JSON's [type, id, parent] in turn), each scope
fewer times once it has used BUDGET_MS. The pictures'
crop windows are hashed before the clock starts (the pipeline's work, not the lookup's), and only
their thumbnails are kept between lookups (the memory figures are the process's, not the probes').
Prints one JSON line: the times in ms, and the process's memory (KiB) before the first lookup
and after the last one.
"""

from __future__ import annotations

import json
import secrets
import sys
import tempfile
import time
from pathlib import Path

LEAST, BUDGET_MS = 3, 30_000.0
PROC_FIELDS = {"Rss": "rss", "Pss": "pss", "Private_Clean": "uss", "Private_Dirty": "uss"}


def memory_kib(pid: int | str = "self") -> dict[str, int]:
    """RSS, PSS and USS (private pages) of a process, in KiB, from /proc/PID/smaps_rollup."""
    out = dict.fromkeys(set(PROC_FIELDS.values()), 0)
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            name, _, rest = line.partition(":")
            if name in PROC_FIELDS:
                out[PROC_FIELDS[name]] += int(rest.split()[0])
    return out


def main(url: str, samples: int, entities: list[list[str]]) -> None:
    from bench.dedup_lookup import pictures
    from bench.harness import settings_for
    from mediahub.dedup import policy as dedup
    from mediahub.pipeline.fingerprint import Fingerprint
    from mediahub.runtime import Runtime

    root = Path(tempfile.mkdtemp(prefix="mh-scale-lookup-"))
    settings = settings_for(root, database_url=url, dedup_policy="reject")
    runtime = Runtime.build(settings)
    thumbs = [fingerprint.thumb for fingerprint in pictures(2 * samples, 27, windows=False)]

    def lookup(thumb: bytes, entity: list[str], scope_kind: str) -> float:
        # A new picture's fingerprint, its windows hashed before the clock starts, dropped after.
        fingerprint = Fingerprint(thumb)
        _ = fingerprint.windows, fingerprint.whole, fingerprint.centre
        probe = dedup.Probe(secrets.token_hex(32), secrets.token_hex(32), fingerprint)
        entity_scope = dedup.Scope.entity(entity[0], entity[1], entity[2] or None)
        scope = dedup.Scope.everywhere() if scope_kind == "global" else entity_scope
        started = time.perf_counter()
        with runtime.database.session() as session:
            dedup.check_duplicate(session, probe, scope, settings.dedup_threshold, entity=entity_scope,
                                  index=runtime.dedup_index)
        return (time.perf_counter() - started) * 1000

    idle = memory_kib()
    started = time.perf_counter()
    runtime.dedup_index.sync()  # what the first lookup of a fresh process does before its own work
    load = (time.perf_counter() - started) * 1000
    times: dict[str, list[float]] = {"global": [], "entity": []}
    for n in range(samples):
        # Interleaved, so noise hits both alike; a scope stops after BUDGET_MS once it has LEAST samples.
        for kind in [k for k, done in times.items() if len(done) < LEAST or sum(done) < BUDGET_MS]:
            times[kind].append(lookup(thumbs[2 * n + (kind == "entity")], entities[n % len(entities)], kind))
    print(json.dumps({"load_ms": load, "global_ms": times["global"], "entity_ms": times["entity"],
                      "idle_kib": idle, "after_kib": memory_kib(), "index_bytes": runtime.dedup_index.nbytes}))
    runtime.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]))
