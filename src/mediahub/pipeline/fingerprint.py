"""Step 8: duplicate-detection fingerprints: the pHash, exact pixel digests and a crop-tolerant perceptual match.

Everything perceptual is derived from one stored value, a 64x64 8-bit grey
thumbnail of the upright whole picture (alpha flattened on white, aspect
squashed), so a stored row and a fresh upload are compared the same way:

* `whole`  - 64-bit pHash of the whole thumbnail;
* `centre` - 64-bit pHash of its centre window (70 % of each side), which a
  small corner logo or a few per cent of crop hardly touch;
* `windows` - pHashes of windows at 8 scales x 25 offsets around the centre,
  compared with the other picture's `centre`: one of them lines up with it
  when either picture is a crop (up to about 8 % of each side) of the other.

A hash match alone never makes a duplicate: it is confirmed by the normalised
cross-correlation of 16x16 grey signatures of the windows that matched, and
flat (near single-colour) pictures, whose pHash is noise, have no perceptual
matches at all (only exact ones: same bytes or same pixels).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import imagehash
import numpy as np
from PIL import Image
from scipy.fft import dct

from mediahub.pipeline import vips as vips_step

if TYPE_CHECKING:
    import pyvips

THUMB_SIZE = 64
CENTRE = 0.7
# Window scales relative to the centre window, and centre offsets (fraction of the side).
WINDOW_SCALES = (0.70, 0.74, 0.78, 0.82, 0.86, 0.90, 0.95, 1.0)
# Offsets half as far apart as the largest: a slightly off-centre crop must not fall between two of them.
WINDOW_SHIFTS = (-0.04, -0.02, 0.0, 0.02, 0.04)
SIGNATURE_SIZE = 16
MIN_CORRELATION = 0.75  # signature NCC a hash match needs to count
FLAT_STD = 2.0  # grey standard deviation (0-255) under which a picture is flat
BANDS = 4
DIGEST_ROWS = 128  # rows of pixels hashed at a time
BAND_BITS = 16
BAND_MASK = (1 << BAND_BITS) - 1


def flatten(image: Image.Image) -> Image.Image:
    """RGB(A)/L/P to an opaque image: alpha composited on white."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", image.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image


def perceptual_hash(image: Image.Image) -> str:
    """The stored 64-bit pHash (`image_hash`) as 16 hex digits; alpha is flattened so transparency does not count."""
    return str(imagehash.phash(flatten(image)))


def make_thumb(image: Image.Image) -> bytes:
    """The stored 64x64 grey thumbnail (4096 bytes) of a whole-picture render."""
    grey = flatten(image).convert("L").resize((THUMB_SIZE, THUMB_SIZE), Image.Resampling.BOX)
    return grey.tobytes()


def pixel_sha256(image: Image.Image | pyvips.Image) -> str:
    """SHA-256 of the upright 8-bit display pixels and their size (Pillow or libvips image).

    Grey is widened to RGB and fully transparent pixels are zeroed, so the same
    picture saved as grey/RGB or with different hidden colours digests the same.
    """
    if vips_step.is_vips(image):
        # The JPEG fast path's decode: grey or RGB, never alpha. Hashed a strip of rows at a
        # time: the same bytes as one copy of the whole image, without holding that copy.
        rgb = image if image.bands == 3 else image.bandjoin([image, image])
        digest = hashlib.sha256(f"RGB:{image.width}x{image.height}:".encode())
        for top in range(0, image.height, DIGEST_ROWS):
            digest.update(rgb.crop(0, top, image.width, min(DIGEST_ROWS, image.height - top)).write_to_memory())
        return digest.hexdigest()
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = np.array(image.convert("RGBA"))
        rgba[rgba[..., 3] == 0] = 0
        return _digest("RGBA", image.size, rgba.tobytes())
    return _digest("RGB", image.size, (image if image.mode == "RGB" else image.convert("RGB")).tobytes())


def _digest(mode: str, size: tuple[int, int], data: bytes) -> str:
    digest = hashlib.sha256(f"{mode}:{size[0]}x{size[1]}:".encode())
    digest.update(data)
    return digest.hexdigest()


def phash_bits(image: Image.Image) -> int:
    """64-bit pHash (same construction as imagehash.phash) as an int, first bit most significant."""
    return phash_bits_of([image])[0]


def phash_bits_of(images: list[Image.Image]) -> list[int]:
    """`phash_bits` of each image, the DCTs of all of them in one call (a picture's windows: 200 at once)."""
    pixels = np.stack([np.asarray(image.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
                       for image in images])
    coefficients = dct(dct(pixels, axis=1), axis=2)
    low = coefficients[:, :8, :8].reshape(len(images), 64)
    bits = low > np.median(low, axis=1, keepdims=True)
    return [int.from_bytes(np.packbits(row).tobytes(), "big") for row in bits]


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def bands(value: int) -> tuple[int, ...]:
    """The 64 bits as BANDS unsigned 16-bit integers, most significant first."""
    return tuple((value >> (BAND_BITS * (BANDS - 1 - i))) & BAND_MASK for i in range(BANDS))


def from_bands(parts: tuple[int, ...] | list[int]) -> int:
    value = 0
    for part in parts:
        value = (value << BAND_BITS) | (int(part) & BAND_MASK)
    return value


def _window(image: Image.Image, scale: float, dx: float = 0.0, dy: float = 0.0) -> Image.Image:
    """A window of `scale` x each side, centred at (0.5+dx, 0.5+dy), kept inside the image."""
    w, h = image.size
    cw, ch = w * scale, h * scale
    left = min(max(0.0, w * (0.5 + dx) - cw / 2), w - cw)
    top = min(max(0.0, h * (0.5 + dy) - ch / 2), h - ch)
    return image.crop((round(left), round(top), round(left + cw), round(top + ch)))


def _signature(image: Image.Image) -> np.ndarray:
    sig = np.asarray(image.resize((SIGNATURE_SIZE, SIGNATURE_SIZE), Image.Resampling.BOX), dtype=np.float64)
    sig = sig - sig.mean()
    norm = float(np.sqrt((sig * sig).sum()))
    return sig / norm if norm > 0 else sig


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of two signatures (each already zero-mean, unit norm)."""
    return float((a * b).sum())


@dataclass(frozen=True)
class Window:
    hash: int
    signature: np.ndarray


class Fingerprint:
    """Everything perceptual about one picture, computed lazily from its stored thumbnail."""

    def __init__(self, thumb: bytes) -> None:
        if len(thumb) != THUMB_SIZE * THUMB_SIZE:
            raise ValueError(f"a fingerprint thumbnail has {THUMB_SIZE * THUMB_SIZE} bytes, not {len(thumb)}")
        self.thumb = bytes(thumb)

    @classmethod
    def of(cls, image: Image.Image) -> Fingerprint:
        return cls(make_thumb(image))

    @cached_property
    def image(self) -> Image.Image:
        return Image.frombytes("L", (THUMB_SIZE, THUMB_SIZE), self.thumb)

    @cached_property
    def flat(self) -> bool:
        return float(np.frombuffer(self.thumb, dtype=np.uint8).std()) < FLAT_STD

    @cached_property
    def whole(self) -> Window:
        return Window(phash_bits(self.image), _signature(self.image))

    @cached_property
    def centre(self) -> Window:
        window = _window(self.image, CENTRE)
        return Window(phash_bits(window), _signature(window))

    @cached_property
    def windows(self) -> list[Window]:
        crops = [_window(self.image, CENTRE * scale, dx, dy)
                 for scale in WINDOW_SCALES for dx in WINDOW_SHIFTS for dy in WINDOW_SHIFTS]
        return [Window(bits, _signature(crop)) for bits, crop in zip(phash_bits_of(crops), crops, strict=True)]

    def compare(self, other: Fingerprint, threshold: int) -> int | None:
        """The smallest confirmed hash distance <= threshold between the two pictures, or None.

        Symmetric: windows of either picture are tried against the other's centre.
        """
        if self.flat or other.flat:
            return None
        best: int | None = None
        pairs = [(self.whole, other.whole), (self.centre, other.centre)]
        pairs += [(w, other.centre) for w in self.windows] + [(self.centre, w) for w in other.windows]
        for mine, theirs in pairs:
            distance = hamming(mine.hash, theirs.hash)
            if distance <= threshold and (best is None or distance < best):
                if correlation(mine.signature, theirs.signature) >= MIN_CORRELATION:
                    best = distance
                    if best == 0:
                        break
        return best
