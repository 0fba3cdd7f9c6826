"""The shared test corpus: referenced by path, never copied into the project."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

CORPUS_DIR = Path(
    os.environ.get("MEDIAHUB_CORPUS", Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus")
).resolve()


class CorpusMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class CorpusFile:
    path: Path
    entry: dict[str, Any]

    @property
    def name(self) -> str:
        return self.entry["path"]

    @property
    def accepted(self) -> bool:
        return self.entry["expected"] == "accept"

    @property
    def is_video(self) -> bool:
        return self.entry["path"].startswith("video/")


@lru_cache(maxsize=1)
def manifest() -> dict[str, Any]:
    path = CORPUS_DIR / "MANIFEST.json"
    if not path.is_file():
        raise CorpusMissing(
            f"test corpus not found at {CORPUS_DIR} (expected ../shared/corpus beside the project, "
            "or set MEDIAHUB_CORPUS)"
        )
    return json.loads(path.read_text())


def corpus_files() -> list[CorpusFile]:
    return [CorpusFile(CORPUS_DIR / entry["path"], entry) for entry in manifest()["files"]]


def corpus_images(expected: str | None = None) -> list[CorpusFile]:
    return [f for f in corpus_files() if not f.is_video and (expected is None or f.entry["expected"] == expected)]


def corpus_videos(expected: str | None = None) -> list[CorpusFile]:
    return [f for f in corpus_files() if f.is_video and (expected is None or f.entry["expected"] == expected)]
