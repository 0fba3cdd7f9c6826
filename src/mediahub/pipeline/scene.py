"""Room type and object tags from ImageNet class probabilities, by the tables in data/rooms.json and
data/object_tags.json (which say how they were chosen).

A room's score is the summed probability of its classes. The best-scoring room is the answer when its score
reaches the room's threshold and beats the runner-up's by the margin; otherwise the room is `unknown`, which
is better than a wrong one. A room without a threshold is never answered, but its classes still compete: a
picture that looks most like it is `unknown`, not the next room.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache

import numpy as np

from mediahub.pipeline.classifier import data_table, imagenet_classes
from mediahub.pipeline.tagging import UNKNOWN


@cache
def class_index() -> dict[str, int]:
    """ImageNet classes by their first name ("microwave" for "microwave, microwave oven"); names that two
    classes share ("crane", "maillot") are left out, so a table cannot name them by mistake."""
    firsts = [name.split(",")[0].strip() for name in imagenet_classes()]
    return {name: index for index, name in enumerate(firsts) if firsts.count(name) == 1}


def _indices(names: list[str], where: str) -> list[int]:
    index = class_index()
    missing = [name for name in names if name not in index]
    if missing:
        raise ValueError(f"{where}: not an ImageNet class (first name, unambiguous): {missing}")
    return [index[name] for name in names]


@dataclass(frozen=True)
class RoomRules:
    version: str
    rooms: tuple[str, ...]
    classes: tuple[tuple[int, ...], ...]  # per room, its ImageNet class indices
    thresholds: tuple[float | None, ...]  # per room; None: never answered
    margin: float

    def scores(self, probabilities: np.ndarray) -> np.ndarray:
        """Each room's summed class probability, for one picture (1000,) or many (n, 1000)."""
        return np.stack([probabilities[..., list(c)].sum(axis=-1) for c in self.classes], axis=-1)

    def decide(self, scores: np.ndarray) -> tuple[str, float]:
        """The room of one picture's room scores and how sure: its score, or for `unknown` one minus the best's."""
        order = np.argsort(-scores, kind="stable")
        best = int(order[0])
        score = float(scores[best])
        runner_up = float(scores[order[1]]) if len(order) > 1 else 0.0
        threshold = self.thresholds[best]
        if threshold is not None and score >= threshold and score - runner_up >= self.margin:
            return self.rooms[best], score
        return UNKNOWN, 1.0 - score

    def tuned(self, thresholds: tuple[float | None, ...], margin: float) -> RoomRules:
        return replace(self, thresholds=thresholds, margin=margin)


@cache
def room_rules() -> RoomRules:
    table = data_table("rooms.json")
    rooms = table["rooms"]
    return RoomRules(
        version=table["version"],
        rooms=tuple(rooms),
        classes=tuple(tuple(_indices(room["classes"], f"rooms.json {name}")) for name, room in rooms.items()),
        thresholds=tuple(room["threshold"] for room in rooms.values()),
        margin=float(table["margin"]),
    )


@dataclass(frozen=True)
class ObjectRule:
    label: str  # the tag ("dishwasher")
    name: str  # what people read ("Dishwasher")
    classes: tuple[int, ...]
    threshold: float


@cache
def object_rules() -> tuple[ObjectRule, ...]:
    return tuple(ObjectRule(row["label"], row["name"], tuple(_indices(row["classes"], f"object_tags.json {row['label']}")),
                            float(row["threshold"]))
                 for row in data_table("object_tags.json")["objects"])


def objects(probabilities: np.ndarray) -> list[tuple[str, float]]:
    """The object tags of one picture whose summed class probability reaches their threshold, surest first."""
    found = [(rule.label, float(probabilities[list(rule.classes)].sum())) for rule in object_rules()]
    return sorted(((label, score) for (label, score), rule in zip(found, object_rules()) if score >= rule.threshold),
                  key=lambda item: -item[1])
