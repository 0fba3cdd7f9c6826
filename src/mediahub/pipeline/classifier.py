"""The bundled image classifier: an ONNX file (installed by models/install.py) run by onnxruntime on CPU.

What a picture is, as probabilities over ImageNet's 1000 classes (data/imagenet_classes.json), from a
224 x 224 render that libvips makes with shrink-on-load: a 12 MP phone JPEG is decoded at 1/8 scale and
never in full. The render is the picture's centre square (as the weights were evaluated; on the rooms dev
set it told rooms apart better than the whole picture squeezed to a square), upright by the same EXIF
orientation the pipeline applies, in sRGB, alpha flattened on white, scaled to [-1, 1] as the weights were
trained. The file is checked against the pinned SHA-256 of
data/models.json when the session is made.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from mediahub.errors import UnsupportedType
from mediahub.pipeline import exif as exif_step
from mediahub.pipeline import vips as vips_step
from mediahub.pipeline.fingerprint import flatten
from mediahub.pipeline.intake import sha256_of
from mediahub.pipeline.normalise import to_display
from mediahub.pipeline.orient import upright
from mediahub.pipeline.probe import ImageLimits, check_limits, decode, open_image
from mediahub.pipeline.sniff import sniff

SIDE = 224  # the model's input side
MEAN, SCALE = 127.0, 128.0  # (value - MEAN) / SCALE: 8-bit RGB to the [-1, 1] of TensorFlow's Lite checkpoints
# libvips' loader for each sniffed type it decodes itself (shrink-on-load where the format has one); the rest
# (BMP, ICO, and what libvips refuses, such as animated AVIF) are decoded by Pillow as ingest decodes them.
VIPS_LOADERS = {"jpeg": "jpegload", "png": "pngload", "webp": "webpload", "gif": "gifload", "heif": "heifload",
                "avif": "heifload", "tiff": "tiffload"}
SNIFF_BYTES = 64


class ModelMismatch(Exception):
    """The model file is not the one pinned in data/models.json (a different, damaged or tampered file)."""


@dataclass(frozen=True)
class ModelEntry:
    """One row of data/models.json: what models/install.py installs and the service checks on load."""

    name: str
    file: str
    sha256: str
    source_package: str
    source_version: str
    licence: str


def data_table(name: str) -> Any:
    """A JSON table of data/ (installed models, class names, tagging rules)."""
    return json.loads(resources.files("mediahub.pipeline").joinpath("data", name).read_text())


@cache
def installed_models() -> dict[str, ModelEntry]:
    fields = ModelEntry.__dataclass_fields__
    return {row["name"]: ModelEntry(**{k: v for k, v in row.items() if k in fields})
            for row in data_table("models.json")}


@cache
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 class names in the model's output order ("microwave, microwave oven", ...): ImageNet-1k's
    synonyms as lukemelas/EfficientNet-PyTorch lists them (examples/simple/labels_map.txt, Apache-2.0)."""
    names = tuple(data_table("imagenet_classes.json"))
    assert len(names) == 1000
    return names


_sessions: dict[tuple[Path, str, int], Any] = {}
_sessions_lock = threading.Lock()


def verified_session(path: Path, sha256: str, threads: int) -> Any:
    """The process's one onnxruntime session of the model file, made on first use once the file is hashed again
    and found to be `sha256` (else ModelMismatch: a file swapped since a check must judge nothing); its run() is
    thread-safe. Both models (this classifier and the NSFW check) are loaded here."""
    key = (path.resolve(), sha256, threads)
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            import onnxruntime

            # Checked, then loaded by path: onnxruntime reading the file itself keeps less memory than a
            # session made from bytes. MODELS_DIR is the install's, as the service's own code is.
            found = sha256_of(path)
            if found != sha256:
                raise ModelMismatch(f"{path}: SHA-256 {found}, pinned {sha256}")
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
            # Jobs, not a server loop: threads that spin between inferences would only take cores from others.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            _sessions[key] = session
    return session


class Classifier:
    """ImageNet class probabilities of image files, by the ONNX model at `path` (checked on first use)."""

    def __init__(self, path: Path, sha256: str, limits: ImageLimits, threads: int = 1):
        self.path = path
        self.sha256 = sha256
        self.limits = limits
        self.threads = threads

    def probabilities(self, image: Path) -> np.ndarray:
        """Softmax over the 1000 classes (float32, sums to 1) for the picture in the file `image`."""
        session = verified_session(self.path, self.sha256, self.threads)
        logits = session.run(None, {session.get_inputs()[0].name: model_input(image, self.limits)})[0][0]
        exp = np.exp(logits - logits.max())
        return exp / exp.sum()


def model_input(path: Path, limits: ImageLimits) -> np.ndarray:
    """The picture in `path` as the model's input: 1 x 3 x 224 x 224 float32 in [-1, 1].

    The header is checked against the pipeline's pixel and frame limits before any pixel is decoded.
    """
    with path.open("rb") as source:
        sniffed = sniff(source.read(SNIFF_BYTES))
    if sniffed.media_kind != "image":
        raise UnsupportedType(f"{sniffed.format} is not an image type", detected=sniffed.format)
    with open_image(path, sniffed.format) as header:
        check_limits(header, limits)
        orientation = exif_step.read_exif(header).orientation
        pixels = _vips_render(path, VIPS_LOADERS.get(sniffed.format), orientation)
        if pixels is None:
            pixels = _pillow_render(path, header, orientation)
    return ((pixels.astype(np.float32) - MEAN) / SCALE).transpose(2, 0, 1)[np.newaxis]


def _vips_render(path: Path, loader: str | None, orientation: int) -> np.ndarray | None:
    """224 x 224 x 3 uint8 by libvips' thumbnail (shrink-on-load), or None when libvips cannot decode it."""
    if loader is None:
        return None
    vips = vips_step.module()
    try:
        if vips.Image.new_from_file(str(path)).get("vips-loader") != loader:
            return None
        # The centre square of the stored orientation, then turned: the same square as turning first.
        image = vips.Image.thumbnail(str(path), SIDE, height=SIDE, crop="centre", no_rotate=True)
        image = upright(image, orientation)
        if image.interpretation not in ("srgb", "b-w") or image.format != "uchar":
            image = image.colourspace("srgb")  # CMYK without a profile, 16-bit, Lab...
        if image.hasalpha():
            image = image.flatten(background=[255] * (image.bands - 1))
        if image.bands == 1:
            image = image.bandjoin([image, image])
        pixels = np.ndarray(buffer=image.cast("uchar").write_to_memory(), dtype=np.uint8,
                            shape=(image.height, image.width, image.bands))
    except vips.Error:
        return None
    return pixels if pixels.shape == (SIDE, SIDE, 3) else None


def _pillow_render(path: Path, header: Image.Image, orientation: int) -> np.ndarray:
    """224 x 224 x 3 uint8 from Pillow's decode of the first frame, its centre square as libvips' above."""
    decoded = _heif_thumbnail(path) if header.format in ("HEIF", "AVIF") else None
    if decoded is None:
        decoded = decode(header, (SIDE, SIDE))
        factor = min(decoded.size) // (2 * SIDE)
        if factor > 1 and decoded.mode in ("L", "LA", "RGB", "RGBA"):  # box-average first: no full-size copies
            reduced = decoded.reduce(factor)
            reduced.info = dict(decoded.info)  # the ICC profile to_display converts with
            decoded = reduced
    picture = flatten(to_display(upright(decoded, orientation))).convert("RGB")
    square = ImageOps.fit(picture, (SIDE, SIDE), Image.Resampling.BICUBIC)
    return np.asarray(square)


def _heif_thumbnail(path: Path) -> Image.Image | None:
    """The HEIF's embedded thumbnail when its shorter side reaches the model's input (phones embed one of
    about 320 px): HEVC has no shrink-on-load, so without it the whole picture is decoded."""
    import pillow_heif

    try:
        heif = pillow_heif.open_heif(path)
        primary = heif[heif.primary_index]
        for index in range(len(primary.info.get("thumbnails") or ())):
            thumbnail = primary.get_thumbnail(index)
            if min(thumbnail.size) >= SIDE:
                return thumbnail.to_pillow()
    except (ValueError, EOFError, SyntaxError, RuntimeError, OSError, IndexError):
        return None  # the primary image's decode, below, says what is wrong with the file
    return None
