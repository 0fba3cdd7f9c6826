"""Where a picture's subject is, so crops keep it: faces, else libvips' attention.

Found in a small whole-picture render the pipeline makes anyway (the one the pHash
comes from, about 400 px; `WORK_SIDE` bounds anything larger), never in the full
decode. Faces come from OpenCV's bundled Haar cascade, whose detections in room
photos are mostly wood grain, cushions and picture frames: a detection counts only
when its centre is skin-coloured (in a colour picture) and an eye is found in its
upper half (two in a grey picture, which has no colour to judge). The focal point
of the faces kept is the centre of their bounding box, so a crop that can hold them
all holds them all; faces under a quarter of the largest one's area (people in the
background, what is left of false detections) are left out of it. Without faces,
libvips' attention (edges, skin tones and saturation) picks the point.

Coordinates are fractions (0..1) of the upright picture.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image

from mediahub.pipeline import vips as vips_step
from mediahub.pipeline.fingerprint import flatten

FOCAL_POINT = "focal_point"  # the item's metadata keys
FACES = "faces"
FACES_SOURCE, ATTENTION_SOURCE, MANUAL_SOURCE = "faces", "attention", "manual"
CENTRE = (0.5, 0.5)

WORK_SIDE = 480  # longest side the search runs at
MIN_FACE = 0.1  # of the shorter side: smaller faces are not the subject (and cost most to search for)
MIN_FACE_PIXELS = 24  # the cascade's own window
SCALE_STEP = 1.2
EYE_SCALE_STEP = 1.1  # finer: the eye search runs on one small region, and coarse steps miss eyes
MIN_NEIGHBOURS = 5
SKIN_SHARE = 0.4  # of the face box's centre that must be skin-coloured (YCbCr box below)
SKIN_CR = (135, 180)
SKIN_CB = (85, 135)
EYE_ROI_WIDTH = 120  # the face's upper half is enlarged to this width: eyes at 400 px are too small to find
PEER_AREA = 0.25  # faces smaller than this share of the largest do not move the focal point


@dataclass(frozen=True)
class FocalPoint:
    x: float
    y: float
    source: str

    @property
    def xy(self) -> tuple[float, float]:
        return (self.x, self.y)

    def as_dict(self) -> dict[str, Any]:
        return {"x": self.x, "y": self.y, "source": self.source}

    @classmethod
    def of_metadata(cls, meta: dict[str, Any] | None) -> FocalPoint | None:
        value = (meta or {}).get(FOCAL_POINT)
        if not isinstance(value, dict):
            return None
        return cls(float(value["x"]), float(value["y"]), str(value["source"]))


Box = tuple[float, float, float, float]  # x, y, width, height: fractions of the picture


@dataclass(frozen=True)
class Focus:
    point: FocalPoint
    faces: tuple[Box, ...]

    def metadata(self) -> dict[str, Any]:
        return {FOCAL_POINT: self.point.as_dict(), FACES: [list(box) for box in self.faces]}


def focus_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """The focal point and faces among a pipeline output's metadata (none when they were given, not found)."""
    return {key: metadata[key] for key in (FOCAL_POINT, FACES) if key in metadata}


_local = threading.local()  # a CascadeClassifier is not safe to share between threads


def _cascades() -> tuple[Any, Any]:
    if not hasattr(_local, "face"):
        folder = cv2.data.haarcascades
        _local.face = cv2.CascadeClassifier(folder + "haarcascade_frontalface_default.xml")
        _local.eye = cv2.CascadeClassifier(folder + "haarcascade_eye.xml")
    return _local.face, _local.eye


def _skin(ycbcr: np.ndarray) -> np.ndarray:
    cb, cr = ycbcr[..., 1], ycbcr[..., 2]
    return (cr >= SKIN_CR[0]) & (cr <= SKIN_CR[1]) & (cb >= SKIN_CB[0]) & (cb <= SKIN_CB[1])


def _skin_share(skin: np.ndarray, box: tuple[int, int, int, int]) -> float:
    x, y, w, h = box
    centre = skin[y + h // 5:y + h * 4 // 5, x + w // 5:x + w * 4 // 5]
    return float(centre.mean()) if centre.size else 0.0


def _eyes(grey: np.ndarray, box: tuple[int, int, int, int], eye_cascade: Any) -> int:
    x, y, w, h = box
    upper = grey[y:y + h * 5 // 8, x:x + w]
    scale = max(1.0, EYE_ROI_WIDTH / w)
    upper = cv2.resize(upper, (round(upper.shape[1] * scale), round(upper.shape[0] * scale)))
    return len(eye_cascade.detectMultiScale(upper, scaleFactor=EYE_SCALE_STEP, minNeighbors=3))


def find_faces(image: Image.Image) -> list[Box]:
    """Frontal faces in an 8-bit picture (at most `WORK_SIDE` px on its longest side), largest first."""
    face_cascade, eye_cascade = _cascades()
    rgb = flatten(image).convert("RGB")
    grey = np.asarray(rgb.convert("L"))
    ycbcr = np.asarray(rgb.convert("YCbCr"))
    colour = image.mode not in ("L", "LA") and bool(np.ptp(ycbcr[..., 1:]) > 0)
    skin = _skin(ycbcr) if colour else None
    side = max(MIN_FACE_PIXELS, round(min(grey.shape) * MIN_FACE))
    if skin is not None and skin.sum() < SKIN_SHARE * (0.6 * side - 1) ** 2:
        return []  # too little skin colour for even the smallest face's centre: no search (the costly part)
    found = face_cascade.detectMultiScale(grey, scaleFactor=SCALE_STEP, minNeighbors=MIN_NEIGHBOURS,
                                          minSize=(side, side))
    kept = []
    for box in (tuple(int(v) for v in b) for b in found):
        if skin is not None and _skin_share(skin, box) < SKIN_SHARE:
            continue
        if _eyes(grey, box, eye_cascade) < (1 if colour else 2):
            continue
        kept.append(box)
    kept.sort(key=lambda b: b[2] * b[3], reverse=True)
    height, width = grey.shape
    return [(x / width, y / height, w / width, h / height) for x, y, w, h in kept]


def faces_centre(faces: list[Box]) -> tuple[float, float]:
    """The centre of the bounding box of the faces at least `PEER_AREA` of the largest's area."""
    largest = max(w * h for _, _, w, h in faces)
    peers = [f for f in faces if f[2] * f[3] >= PEER_AREA * largest]
    left = min(x for x, _, _, _ in peers)
    top = min(y for _, y, _, _ in peers)
    right = max(x + w for x, _, w, _ in peers)
    bottom = max(y + h for _, y, _, h in peers)
    return ((left + right) / 2, (top + bottom) / 2)


def attention(image: Image.Image) -> tuple[float, float]:
    """libvips' attention point (the centre of its most interesting region)."""
    vips_image = vips_step.from_pillow(flatten(image).convert("RGB"))
    width, height = vips_image.width, vips_image.height
    _, found = vips_image.smartcrop(max(1, width // 2), max(1, height // 2), interesting="attention",
                                    attention_x=True, attention_y=True)
    return (_fraction(found["attention_x"] + 0.5, width), _fraction(found["attention_y"] + 0.5, height))


def _fraction(value: float, whole: int) -> float:
    return min(1.0, max(0.0, value / whole))


def locate(image: Image.Image) -> Focus:
    """The focal point of a whole-picture render, and the faces in it."""
    if max(image.size) > WORK_SIDE:
        image = image.copy()
        image.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.BILINEAR)
    faces = find_faces(image)
    if faces:
        x, y = faces_centre(faces)
        return Focus(FocalPoint(x, y, FACES_SOURCE), tuple(faces))
    x, y = attention(image)
    return Focus(FocalPoint(x, y, ATTENTION_SOURCE), ())
