"""The bundled tagger: the ImageNet classifier (classifier.py) read through the room model and the object table
(scene.py), behind the `Tagger` contract of tagging.py.

`build_tagger` never raises for a model that is off, missing or not the pinned file: the service starts and
ingests without machine tags, and its status says why (for /readyz and the logs).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mediahub.config import Settings
from mediahub.pipeline.classifier import Classifier, ModelEntry, installed_models
from mediahub.pipeline.intake import sha256_of
from mediahub.pipeline.options import image_limits
from mediahub.pipeline.scene import ObjectTable, RoomModel, object_table, room_model
from mediahub.pipeline.tagging import MachineTag, Tagger

MODEL_NAME = "efficientnet-lite0"  # the row of data/models.json the tagger runs

# build_tagger's status: whether machine tags are made, and if not, why.
OK = "ok"
OFF = "off"  # TAGGING_ENABLED=false
MODEL_MISSING = "model_missing"  # no file in MODELS_DIR: `make install` (models/install.py) makes it
MODEL_MISMATCH = "model_mismatch"  # a file that is not the pinned one (another version, damaged, tampered)
MODEL_UNREADABLE = "model_unreadable"  # the file is there but cannot be read (permissions)
RUNTIME_MISSING = "runtime_missing"  # onnxruntime is not installed


class ImageNetTagger:
    """One room tag (maybe `unknown`) and the object tags of an image, from one classifier run."""

    def __init__(self, classifier: Classifier, entry: ModelEntry, room_model: RoomModel, object_table: ObjectTable):
        self.classifier = classifier
        self.room_model = room_model
        self.object_table = object_table
        self.model = f"{entry.name}@{entry.sha256[:8]}/{room_model.version}+{object_table.version}"

    def tag(self, image: Path) -> list[MachineTag]:
        probabilities = self.classifier.probabilities(image)
        room, score = self.room_model.decide(self.room_model.scores(probabilities))
        tags = [MachineTag(room, "room", round(score, 4), self.model)]
        tags += [MachineTag(label, "object", round(value, 4), self.model)
                 for label, value in self.object_table.tags(probabilities, room)]
        return tags


def build_tagger(settings: Settings) -> tuple[Tagger | None, str]:
    """The tagger these settings ask for and "ok", or None and the status saying why there is none."""
    if not settings.tagging_enabled:
        return None, OFF
    if importlib.util.find_spec("onnxruntime") is None:
        return None, RUNTIME_MISSING
    entry = installed_models()[MODEL_NAME]
    path = settings.models_dir / entry.file
    try:
        found = sha256_of(path)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None, MODEL_MISSING
    except OSError:
        return None, MODEL_UNREADABLE
    if found != entry.sha256:
        return None, MODEL_MISMATCH
    rooms = room_model()
    classifier = Classifier(path, entry.sha256, image_limits(settings), threads=settings.tagging_threads)
    return ImageNetTagger(classifier, entry, rooms, object_table()), OK  # a broken table fails at start-up
