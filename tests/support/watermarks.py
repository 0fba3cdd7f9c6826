"""Mark images for the watermark tests: a solid colour of known alpha, written as a PNG."""

from __future__ import annotations

from pathlib import Path

from PIL import Image


def mark_file(folder: Path, colour: tuple[int, int, int] = (250, 20, 120), alpha: int | None = 255,
              size: tuple[int, int] = (100, 50), name: str = "mark.png") -> Path:
    """An RGBA PNG of one colour and one alpha; `alpha=None` writes RGB (no alpha channel)."""
    path = folder / name
    if alpha is None:
        Image.new("RGB", size, colour).save(path)
    else:
        Image.new("RGBA", size, (*colour, alpha)).save(path)
    return path
