"""Machine tags of an image: what a bundled classifier says it shows, kept apart from what people typed.

The contract between the model that looks at pixels (this layer) and the job that records its answer
(media/): a tagger returns exactly one room tag per image (its label may be `unknown`, which is better than
a wrong room) and the object tags that passed their threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

TagKind = Literal["room", "object"]
UNKNOWN = "unknown"  # the room label when no room is known well enough


@dataclass(frozen=True)
class MachineTag:
    label: str  # a room ("kitchen", "unknown") or an object ("dishwasher")
    kind: TagKind
    score: float  # 0..1: how sure the model is of this label
    model: str  # which model and mapping said so, e.g. "efficientnet-lite0@1a2b3c4d/rooms-2"


class Tagger(Protocol):
    """Anything that tags an image file (the bundled classifier; a fake in tests)."""

    model: str

    def tag(self, image: Path) -> list[MachineTag]:
        """One room tag and any object tags of the image at `image` (any format the pipeline decodes)."""
        ...
