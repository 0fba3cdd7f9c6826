"""Room type and object tags from ImageNet class probabilities, by the tables in data/rooms.json and
data/object_tags.json (which say how they were chosen).

The room is a linear model of the picture's ImageNet log-probabilities (multinomial logistic regression,
fitted by bench/rooms_fit.py on the rooms dev set): each room's probability is the softmax of the features
times its weights plus its bias. The likeliest room is the answer when its probability reaches the room's
threshold; otherwise the room is `unknown`, which is better than a wrong one. A room without a threshold is
never answered, but it still competes: a picture that looks most like it is `unknown`, not the next room.
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


def room_features(probabilities: np.ndarray, floor: float) -> np.ndarray:
    """The room model's input, for one picture (1000,) or many (n, 1000): log-probabilities, floored (a class
    the model rules out says nothing more at 1e-12 than at the floor), less their mean over the classes (the
    logits up to a constant, which a softmax drops)."""
    logs = np.log(np.maximum(probabilities.astype(np.float64), floor))
    return logs - logs.mean(axis=-1, keepdims=True)


def softmax(values: np.ndarray) -> np.ndarray:
    shifted = np.exp(values - values.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class RoomModel:
    version: str
    rooms: tuple[str, ...]
    floor: float  # of the probabilities, before their log (room_features)
    weights: np.ndarray  # (1000, rooms)
    bias: np.ndarray  # (rooms,)
    thresholds: tuple[float | None, ...]  # per room, of its probability; None: never answered

    def scores(self, probabilities: np.ndarray) -> np.ndarray:
        """Each room's probability, for one picture (1000,) or many (n, 1000)."""
        return softmax(room_features(probabilities, self.floor) @ self.weights + self.bias)

    def decide(self, scores: np.ndarray) -> tuple[str, float]:
        """The room of one picture's room scores and how sure: its score, or for `unknown` one minus the best's."""
        best = int(np.argmax(scores))
        score = float(scores[best])
        threshold = self.thresholds[best]
        if threshold is not None and score >= threshold:
            return self.rooms[best], score
        return UNKNOWN, 1.0 - score

    def tuned(self, weights: np.ndarray, bias: np.ndarray, thresholds: tuple[float | None, ...]) -> RoomModel:
        return replace(self, weights=weights, bias=bias, thresholds=thresholds)


def room_model_of(table: dict) -> RoomModel:
    """The room model of a table as data/rooms.json holds it, checked: its shapes fit the classes and rooms."""
    rooms = tuple(table["rooms"])
    weights = np.array(table["weights"], dtype=np.float64)
    bias = np.array(table["bias"], dtype=np.float64)
    if weights.shape != (len(imagenet_classes()), len(rooms)) or bias.shape != (len(rooms),):
        raise ValueError(f"rooms.json: weights {weights.shape} and bias {bias.shape} do not fit "
                         f"{len(imagenet_classes())} classes and {len(rooms)} rooms")
    if set(table["thresholds"]) != set(rooms):
        raise ValueError("rooms.json: thresholds must name exactly the rooms")
    return RoomModel(version=table["version"], rooms=rooms, floor=float(table["floor"]), weights=weights,
                     bias=bias, thresholds=tuple(table["thresholds"][room] for room in rooms))


@cache
def room_model() -> RoomModel:
    return room_model_of(data_table("rooms.json"))


@dataclass(frozen=True)
class ObjectRule:
    label: str  # the tag ("dishwasher")
    name: str  # what people read ("Dishwasher")
    classes: tuple[int, ...]
    threshold: float
    rooms: frozenset[str]  # the rooms it is tagged in once the room is known; empty: any


@dataclass(frozen=True)
class ObjectTable:
    version: str  # part of every machine tag's `model`: a changed table is another model
    rules: tuple[ObjectRule, ...]

    def tags(self, probabilities: np.ndarray, room: str) -> list[tuple[str, float]]:
        """The object tags of one picture whose summed class probability reaches their threshold, surest
        first; a rule bound to rooms is left out of a picture answered another room (`unknown` binds nothing)."""
        tagged = []
        for rule in self.rules:
            if room != UNKNOWN and rule.rooms and room not in rule.rooms:
                continue
            score = float(probabilities[list(rule.classes)].sum())
            if score >= rule.threshold:
                tagged.append((rule.label, score))
        return sorted(tagged, key=lambda item: -item[1])


def object_table_of(table: dict) -> ObjectTable:
    """The object table from its JSON form (data/object_tags.json), checked: rooms must be the room model's."""
    known = set(room_model().rooms)
    rules = []
    for row in table["objects"]:
        rooms = frozenset(row.get("rooms", ()))
        if not rooms <= known:
            raise ValueError(f"object_tags.json {row['label']}: not a room of the room model: {sorted(rooms - known)}")
        classes = tuple(_indices(row["classes"], f"object_tags.json {row['label']}"))
        rules.append(ObjectRule(row["label"], row["name"], classes, float(row["threshold"]), rooms))
    return ObjectTable(table["version"], tuple(rules))


@cache
def object_table() -> ObjectTable:
    return object_table_of(data_table("object_tags.json"))
