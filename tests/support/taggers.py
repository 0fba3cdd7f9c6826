"""A stand-in for the classifier: a `Tagger` (pipeline/tagging.py) that answers fixed tags."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from mediahub.pipeline.tagging import MachineTag

MODEL = "fake-rooms@1"


def room(label: str, score: float, model: str = MODEL) -> MachineTag:
    return MachineTag(label, "room", score, model)


def thing(label: str, score: float, model: str = MODEL) -> MachineTag:
    return MachineTag(label, "object", score, model)


class FixedTagger:
    """Says `tags` of every image (a kitchen with a dishwasher, unless told), and keeps the size of each picture it
    was given to read. `tags` may be changed between runs (a retrained model)."""

    def __init__(self, tags: list[MachineTag] | None = None, model: str = MODEL) -> None:
        self.model = model
        self.tags = tags if tags is not None else [room("kitchen", 0.9, model), thing("dishwasher", 0.7, model)]
        self.seen: list[tuple[int, int]] = []

    def tag(self, image: Path) -> list[MachineTag]:
        with Image.open(image) as picture:
            self.seen.append(picture.size)
        return list(self.tags)
