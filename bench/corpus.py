"""Where the shared corpus is: ../shared/corpus beside the project, or MEDIAHUB_CORPUS; and the labelled
listing photos of the tagger's rooms dev set: ../shared/rooms, or MEDIAHUB_ROOMS.

Referenced by path, never copied into the project. The benches read it, and so
do the tests (tests/support/corpus.py builds on this module).
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

CORPUS_DIR = Path(
    os.environ.get("MEDIAHUB_CORPUS", Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus")
).resolve()

ROOMS_DIR = Path(
    os.environ.get("MEDIAHUB_ROOMS", Path(__file__).resolve().parents[1] / ".." / "shared" / "rooms")
).resolve()


class CorpusMissing(RuntimeError):
    pass


@lru_cache(maxsize=1)
def manifest() -> dict[str, Any]:
    """MANIFEST.json: every corpus file with what MediaHub is expected to do with it."""
    path = CORPUS_DIR / "MANIFEST.json"
    if not path.is_file():
        raise CorpusMissing(
            f"test corpus not found at {CORPUS_DIR} (expected ../shared/corpus beside the project, "
            "or set MEDIAHUB_CORPUS)"
        )
    return json.loads(path.read_text())


@lru_cache(maxsize=1)
def rooms_manifest() -> list[dict[str, Any]]:
    """The rooms dev set's MANIFEST.json: every photo's `path` (under ROOMS_DIR) and room `label`."""
    path = ROOMS_DIR / "MANIFEST.json"
    if not path.is_file():
        raise CorpusMissing(f"rooms dev set not found at {ROOMS_DIR} (expected ../shared/rooms beside the project, "
                            "or set MEDIAHUB_ROOMS)")
    return json.loads(path.read_text())


@lru_cache(maxsize=1)
def object_judgements() -> dict[tuple[str, str], bool]:
    """(dev photo path, object tag) -> whether the object is in view, as judged by eye (object_judgements.json)."""
    table = json.loads((Path(__file__).parent / "object_judgements.json").read_text())
    return {(row["path"], row["tag"]): row["correct"] for row in table["judgements"]}
