"""The room model of data/rooms.json (pipeline/scene.py): how it is fitted on the rooms dev set, and how that
fitting is cross-validated. `python -m bench.rooms_fit` fits it on the whole dev set and writes the file.

The model: multinomial logistic regression from the 1000 ImageNet features (scene.room_features) to the
rooms, L2-regularised (the weights, not the bias), fitted with numpy by accelerated gradient descent in the
span of the training pictures (the L2 optimum lies there: weights = features' transpose times an n x rooms
matrix, so each step costs n x n, not n x 1000). The features are centred on the training pictures' mean,
folded into the bias.

Tuning, all on the photos given (so that cross-validation sees all of it): the L2 strength of LAMBDAS with
the best log-loss under stratified FOLDS-fold cross-validation; then per room the threshold of THRESHOLDS on
its out-of-fold probability that maximises right answers minus GOAL / (1 - GOAL) times wrong ones (answering
pays exactly when precision beats the goal), among thresholds giving at least MIN_ANSWERS answers; none: the
room is never answered.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mediahub.pipeline.scene import room_features, softmax

GOAL_PRECISION = 0.85
WRONG_COST = GOAL_PRECISION / (1 - GOAL_PRECISION)
LAMBDAS = (0.01, 0.03, 0.1, 0.3)
# The model's probabilities are over the eight rooms only: a picture of none of them (a garage, a portrait, a
# test card) still gets a likely room, often at 0.5-0.8. No threshold below 0.9 is offered, so that such a
# picture stays `unknown`; the bench's count of corpus pictures (none a listing room) answered a room checks it.
THRESHOLDS = (0.9, 0.93, 0.95, 0.97, 0.99)
MIN_ANSWERS = 4  # of a room's out-of-fold answers for its threshold to count (backyard has 8 photos)
FOLDS = 5
STEPS = 800
FLOOR = 1e-7
SEED = 0
VERSION = "rooms-2"
ROOMS = ("kitchen", "bathroom", "bedroom", "living_room", "dining_room", "exterior", "backyard", "floor_plan")
ABOUT = ("Room type from ImageNet class probabilities (pipeline/scene.py): multinomial logistic regression on "
         "the floored log-probabilities less their mean (weights: 1000 classes x rooms, bias), then the "
         "likeliest room when its probability reaches its threshold, else 'unknown'; a null threshold: never "
         "answered. Fitted on the rooms dev set by `python -m bench.rooms_fit` (bench/rooms_fit.py says how; "
         "`python -m bench tagging` prints its cross-validated precision); do not edit by hand.")
DATA_FILE = Path(__file__).resolve().parents[1] / "src" / "mediahub" / "pipeline" / "data" / "rooms.json"


@dataclass(frozen=True)
class Fitted:
    weights: np.ndarray  # (1000, rooms)
    bias: np.ndarray  # (rooms,)
    thresholds: tuple[float | None, ...]
    strength: float  # the L2 strength chosen

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        return softmax(features @ self.weights + self.bias)


def fit_weights(features: np.ndarray, truth: np.ndarray, rooms: int, strength: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights and bias minimising the mean cross-entropy plus strength / 2 times the weights' squared norm."""
    count = len(truth)
    mean = features.mean(axis=0)
    centred = features - mean
    gram = centred @ centred.T
    target = np.eye(rooms)[truth]
    step = 1.0 / (np.linalg.eigvalsh(gram)[-1] / (2 * count) + strength)  # 1 / the gradient's Lipschitz bound
    span, bias = np.zeros((count, rooms)), np.zeros(rooms)
    ahead_span, ahead_bias, momentum = span, bias, 1.0
    for _ in range(STEPS):
        error = (softmax(gram @ ahead_span + ahead_bias) - target) / count
        new_span = ahead_span - step * (error + strength * ahead_span)
        new_bias = ahead_bias - step * error.sum(axis=0)
        new_momentum = (1 + np.sqrt(1 + 4 * momentum * momentum)) / 2
        blend = (momentum - 1) / new_momentum
        ahead_span = new_span + blend * (new_span - span)
        ahead_bias = new_bias + blend * (new_bias - bias)
        span, bias, momentum = new_span, new_bias, new_momentum
    weights = centred.T @ span
    return weights, bias - mean @ weights


def stratified_folds(truth: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each photo's fold: every room's photos dealt round the folds in a shuffled order."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(truth), dtype=int)
    for room in np.unique(truth):
        members = np.flatnonzero(truth == room)
        rng.shuffle(members)
        fold[members] = np.arange(len(members)) % folds
    return fold


def out_of_fold(features: np.ndarray, truth: np.ndarray, rooms: int, strength: float) -> np.ndarray:
    fold = stratified_folds(truth, FOLDS, SEED)
    found = np.zeros((len(truth), rooms))
    for held in range(FOLDS):
        train = fold != held
        weights, bias = fit_weights(features[train], truth[train], rooms, strength)
        found[~train] = softmax(features[~train] @ weights + bias)
    return found


def choose_thresholds(probabilities: np.ndarray, truth: np.ndarray, rooms: int) -> tuple[float | None, ...]:
    top, surest = probabilities.argmax(axis=1), probabilities.max(axis=1)
    chosen = []
    for room in range(rooms):
        best, best_gain = None, 0.0
        for threshold in THRESHOLDS:
            answered = (top == room) & (surest >= threshold)
            right = int((truth[answered] == room).sum())
            gain = right - WRONG_COST * (int(answered.sum()) - right)
            if answered.sum() >= MIN_ANSWERS and gain > best_gain:
                best, best_gain = threshold, gain
        chosen.append(best)
    return tuple(chosen)


def tune(features: np.ndarray, truth: np.ndarray, rooms: int) -> Fitted:
    """The whole tuning procedure on these photos: L2 strength, weights, thresholds."""
    best = None
    for strength in LAMBDAS:
        found = out_of_fold(features, truth, rooms, strength)
        loss = -np.log(found[np.arange(len(truth)), truth]).mean()
        if best is None or loss < best[0]:
            best = (loss, strength, found)
    _, strength, found = best
    weights, bias = fit_weights(features, truth, rooms, strength)
    return Fitted(weights, bias, choose_thresholds(found, truth, rooms), strength)


def cross_validated(features: np.ndarray, truth: np.ndarray, rooms: int) -> tuple[np.ndarray, list[float]]:
    """Each photo's answer (a room index, -1 for unknown) by the tuning procedure run on all the other photos
    (leave-one-out around the whole procedure: strength and thresholds are chosen without the photo), and the
    strength each run chose."""
    answers, strengths = np.full(len(truth), -1), []
    for held in range(len(truth)):
        rest = np.arange(len(truth)) != held
        fitted = tune(features[rest], truth[rest], rooms)
        probabilities = fitted.probabilities(features[held])
        best = int(probabilities.argmax())
        threshold = fitted.thresholds[best]
        if threshold is not None and probabilities[best] >= threshold:
            answers[held] = best
        strengths.append(fitted.strength)
    return answers, strengths


def write(fitted: Fitted, rooms: tuple[str, ...], path: Path = DATA_FILE) -> None:
    table = {"version": VERSION, "about": ABOUT, "floor": FLOOR, "strength": fitted.strength,
             "rooms": list(rooms),
             "thresholds": dict(zip(rooms, fitted.thresholds)),
             "bias": [float(f"{value:.6g}") for value in fitted.bias],
             "weights": [[float(f"{value:.6g}") for value in row] for row in fitted.weights]}
    # One line per class's weights, not per number: a readable diff when the model is refitted.
    text = json.dumps({key: value for key, value in table.items() if key != "weights"}, indent=2)[:-2]
    text += ',\n  "weights": [\n' + ",\n".join("    " + json.dumps(row) for row in table["weights"]) + "\n  ]\n}\n"
    path.write_text(text)


def dev_set_probabilities() -> tuple[np.ndarray, list[str]]:
    """The classifier's probabilities of every rooms dev set photo, and their labels."""
    from bench.corpus import ROOMS_DIR, rooms_manifest
    from mediahub.config import Settings
    from mediahub.pipeline.classifier import Classifier, installed_models
    from mediahub.pipeline.options import image_limits
    from mediahub.pipeline.tagger import MODEL_NAME

    settings = Settings(_env_file=None)
    entry = installed_models()[MODEL_NAME]
    classifier = Classifier(settings.models_dir / entry.file, entry.sha256, image_limits(settings))
    photos = rooms_manifest()
    return (np.stack([classifier.probabilities(ROOMS_DIR / photo["path"]) for photo in photos]),
            [photo["label"] for photo in photos])


def main() -> None:
    rooms = ROOMS
    probabilities, labels = dev_set_probabilities()
    truth = np.array([rooms.index(label) for label in labels])
    fitted = tune(room_features(probabilities, FLOOR), truth, len(rooms))
    write(fitted, rooms)
    print(f"{DATA_FILE}: strength {fitted.strength}, thresholds "
          + ", ".join(f"{room} {threshold}" for room, threshold in zip(rooms, fitted.thresholds)), file=sys.stderr)


if __name__ == "__main__":
    main()
