"""Section `quality`: SSIM (luma, Gaussian window) of MediaHub's variants against the naive ones."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from bench import naive
from bench.common import Config, console, table
from bench.harness import Bench

GOAL = 0.98


def luma(image: Image.Image, alpha: Image.Image | None = None) -> np.ndarray:
    """BT.601 luma of the picture as seen over white.

    MediaHub keeps alpha (PNG) where the naive handler drops it for JPEG; both
    are composited with MediaHub's alpha so only the visible picture counts.
    """
    if image.mode == "RGBA" and alpha is None:
        alpha = image.getchannel("A")
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    if alpha is not None:
        a = np.asarray(alpha, dtype=np.float64)[..., None] / 255.0
        rgb = rgb * a + 255.0 * (1.0 - a)
    return rgb @ np.array([0.299, 0.587, 0.114])


def ssim(a: np.ndarray, b: np.ndarray, sigma: float = 1.5) -> float:
    """Mean SSIM (Wang et al. 2004): K1=0.01, K2=0.03, L=255, 11-tap-like Gaussian sigma 1.5."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    blur = lambda x: gaussian_filter(x, sigma, truncate=3.5)  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a * mu_a
    var_b = blur(b * b) - mu_b * mu_b
    cov = blur(a * b) - mu_a * mu_b
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(index.mean())


def _decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def run(cfg: Config) -> None:
    bench = Bench.create(cfg.work / "quality")
    t = table(f"Quality: SSIM of MediaHub's variants vs the naive ones (luma, goal medium >= {GOAL})",
              ["input", "variant", "MediaHub size", "naive size", "SSIM", "goal"])
    try:
        for name, path in cfg.inputs.items():
            item = bench.total(path)  # deferred variants included
            _digest, _phash, reference = naive.renders(path)
            for variant in ("medium", "large", "thumbnail"):
                ours = next(v for v in item.variants if v.name == variant and v.format in ("jpeg", "png"))
                mine = _decoded(bench.runtime.storage.get(ours.storage_key))
                theirs = _decoded(naive.process_one(reference[variant]))
                if mine.size != theirs.size:
                    t.add_row(name, variant, "x".join(map(str, mine.size)), "x".join(map(str, theirs.size)),
                              "size differs", "NOT met" if variant == "medium" else "")
                    continue
                alpha = mine.getchannel("A") if mine.mode == "RGBA" else None
                score = ssim(luma(mine), luma(theirs, alpha))
                goal = ("met" if score >= GOAL else "NOT met") if variant == "medium" else ""
                t.add_row(name, variant, "x".join(map(str, mine.size)), "x".join(map(str, theirs.size)),
                          f"{score:.4f}", goal)
    finally:
        bench.close()
    console.print(t)
