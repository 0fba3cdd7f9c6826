"""The shared test corpus, file by file (where it is: bench/corpus.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.corpus import CORPUS_DIR, ROOMS_DIR, CorpusMissing, manifest, object_judgements, rooms_manifest

__all__ = ["CORPUS_DIR", "ROOMS_DIR", "CorpusFile", "CorpusMissing", "corpus_files", "corpus_images", "corpus_videos",
           "manifest", "object_judgements", "rooms_manifest"]


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


def corpus_files() -> list[CorpusFile]:
    return [CorpusFile(CORPUS_DIR / entry["path"], entry) for entry in manifest()["files"]]


def corpus_images(expected: str | None = None) -> list[CorpusFile]:
    return [f for f in corpus_files() if not f.is_video and (expected is None or f.entry["expected"] == expected)]


def corpus_videos(expected: str | None = None) -> list[CorpusFile]:
    return [f for f in corpus_files() if f.is_video and (expected is None or f.entry["expected"] == expected)]
