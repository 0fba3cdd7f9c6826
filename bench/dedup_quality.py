"""Duplicate-detection quality: this method vs plain pHash, on the corpus and on generated variants.

    python -m bench.dedup_quality [--threshold N] [--json]

Every picture goes through the real pipeline (`process_image`), so the
fingerprints are exactly what ingest stores. Sets:

* corpus groups - every pair of files inside one `dedup_group` (must match);
* distinct      - one file per distinct picture, every pair (must not match);
* generated     - each distinct picture against its own variant (must match):
  JPEG q70, 50 % resize, 3 % / 8 % crop (taken off the left and top: the
  centre moves) and the same centred, +10 % brightness, a corner logo
  (12 % of the short side); and each variant against every other distinct
  picture (must not match).

Distinct pictures exclude flat (near single-colour) images, which only ever
match exactly, and treat two pairs the manifest leaves ungrouped as the
same picture (see SAME_PICTURE): they differ by under one grey level.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance

from bench.corpus import CORPUS_DIR, manifest
from mediahub.config import Settings
from mediahub.pipeline.fingerprint import Fingerprint, flatten
from mediahub.pipeline.image import ProcessedImage, process_image
from mediahub.pipeline.options import image_options
from mediahub.pipeline.sniff import sniff

# Pairs the manifest does not group although they are one picture: Pillow's transparency.avif
# is p_trns_single.png encoded as AVIF, pil123rgba.png is pil123p.png as RGBA (mean grey
# difference < 1 level after flattening on white).
SAME_PICTURE = {
    "images/good/png_palette_trns.png": "images/good/avif_transparency.avif",
    "images/good/png_content_named_jpg.jpg": "images/good/png_palette.png",
}
BASELINE_THRESHOLDS = (8, 10, 12, 14)
WORK_SIDE = 1600  # variants are made from the picture at the largest rendition's size


@dataclass(frozen=True)
class Picture:
    name: str  # corpus path
    key: str  # the picture it shows (dedup group, or its own name)
    phash: int
    fingerprint: Fingerprint
    pixel_sha256: str | None
    sha256: str | None = None


def _crop(fraction: float, centred: bool) -> Callable[[Image.Image], Image.Image]:
    def crop(image: Image.Image) -> Image.Image:
        w, h = image.size
        dx, dy = round(w * fraction), round(h * fraction)
        if centred:
            return image.crop((dx // 2, dy // 2, w - (dx - dx // 2), h - (dy - dy // 2)))
        return image.crop((dx, dy, w, h))
    return crop


def _resize(image: Image.Image) -> Image.Image:
    return image.resize((max(1, image.width // 2), max(1, image.height // 2)), Image.Resampling.LANCZOS)


def _brighter(image: Image.Image) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(1.10)


def _logo(image: Image.Image) -> Image.Image:
    image = image.copy()
    w, h = image.size
    side = max(4, round(min(w, h) * 0.12))
    x0, y0 = w - side - round(w * 0.02), h - side - round(h * 0.02)
    draw = ImageDraw.Draw(image)
    draw.rectangle((x0, y0, x0 + side, y0 + side), fill=(255, 255, 255))
    draw.ellipse((x0 + side // 4, y0 + side // 4, x0 + 3 * side // 4, y0 + 3 * side // 4), fill=(200, 0, 0))
    draw.text((x0 + 2, y0 + 2), "MH", fill=(0, 0, 0))
    return image


TRANSFORMS: dict[str, tuple[Callable[[Image.Image], Image.Image], str]] = {
    "jpeg_q70": (lambda image: image, "jpeg"),
    "resize_50": (_resize, "png"),
    "crop_3": (_crop(0.03, centred=False), "png"),
    "crop_8": (_crop(0.08, centred=False), "png"),
    "crop_3_centred": (_crop(0.03, centred=True), "png"),
    "crop_8_centred": (_crop(0.08, centred=True), "png"),
    "brightness_10": (_brighter, "png"),
    "logo": (_logo, "png"),
}


@lru_cache(maxsize=1)
def _options():
    return image_options(Settings(_env_file=None))


def process(path: Path) -> ProcessedImage:
    return process_image(path, sniff(path.read_bytes()[:4096]), _options())


def _picture(name: str, key: str, processed: ProcessedImage) -> Picture:
    assert processed.fingerprint is not None
    return Picture(name, key, int(processed.phash, 16), processed.fingerprint, processed.pixel_sha256)


def display_image(path: Path) -> Image.Image:
    """The upright display pixels, flattened, at most WORK_SIDE a side (what variants start from)."""
    from mediahub.pipeline import exif as exif_step
    from mediahub.pipeline.normalise import to_display
    from mediahub.pipeline.orient import upright
    from mediahub.pipeline.probe import decode, open_image

    image = open_image(path, sniff(path.read_bytes()[:4096]).format)
    try:
        orientation = exif_step.read_exif(image).orientation
        display = flatten(to_display(upright(decode(image), orientation))).convert("RGB")
    finally:
        image.close()
    display.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.LANCZOS)
    return display


def variant_picture(source: Picture, transform: str, workdir: Path) -> Picture:
    """`source` transformed, saved, and run through the pipeline like an upload."""
    function, fmt = TRANSFORMS[transform]
    image = function(display_image(CORPUS_DIR / source.name))
    out = io.BytesIO()
    if fmt == "jpeg":
        image.save(out, "JPEG", quality=70)
    else:
        image.save(out, "PNG")
    path = workdir / f"{abs(hash((source.name, transform)))}.{fmt}"
    path.write_bytes(out.getvalue())
    return _picture(f"{source.name}~{transform}", source.key, process(path))


@lru_cache(maxsize=1)
def corpus_pictures() -> tuple[Picture, ...]:
    """Every accepted still image of the corpus, with its picture key."""
    out = []
    for entry in manifest()["files"]:
        if entry["expected"] != "accept" or entry["path"].startswith("video/"):
            continue
        name = entry["path"]
        key = entry.get("dedup_group") or SAME_PICTURE.get(name, name)
        out.append(_picture(name, key, process(CORPUS_DIR / name)))
    return tuple(out)


def flat_names() -> list[str]:
    return [p.name for p in corpus_pictures() if p.fingerprint.flat]


def distinct_pictures() -> list[Picture]:
    """One (the first) file per distinct, non-flat picture."""
    seen: dict[str, Picture] = {}
    for picture in corpus_pictures():
        if not picture.fingerprint.flat:
            seen.setdefault(picture.key, picture)
    return list(seen.values())


@lru_cache(maxsize=1)
def generated() -> dict[str, tuple[Picture, ...]]:
    """transform -> the variant of every distinct picture (same order as distinct_pictures())."""
    with tempfile.TemporaryDirectory(prefix="mh-dedup-") as folder:
        return {t: tuple(variant_picture(p, t, Path(folder)) for p in distinct_pictures()) for t in TRANSFORMS}


def is_duplicate(a: Picture, b: Picture, threshold: int) -> bool:
    """This method: same pixels, or a confirmed perceptual match."""
    if a.pixel_sha256 and a.pixel_sha256 == b.pixel_sha256:
        return True
    return a.fingerprint.compare(b.fingerprint, threshold) is not None


def phash_duplicate(a: Picture, b: Picture, threshold: int) -> bool:
    return (a.phash ^ b.phash).bit_count() <= threshold


def pair_sets() -> dict[str, tuple[list[tuple[Picture, Picture]], bool]]:
    """name -> (pairs, should they match)."""
    pictures = corpus_pictures()
    groups: dict[str, list[Picture]] = {}
    for picture in pictures:
        groups.setdefault(picture.key, []).append(picture)
    pairs = [pair for members in groups.values() for pair in itertools.combinations(members, 2)]
    distinct = distinct_pictures()
    sets: dict[str, tuple[list[tuple[Picture, Picture]], bool]] = {
        "corpus groups": ([(a, b) for a, b in pairs if a.key not in SAME_PICTURE.values()], True),
        "same picture, ungrouped": ([(a, b) for a, b in pairs if a.key in SAME_PICTURE.values()], True),
        "distinct pictures": (list(itertools.combinations(distinct, 2)), False),
    }
    variants = generated()
    for transform, made in variants.items():
        sets[f"gen {transform}"] = (list(zip(distinct, made, strict=True)), True)
    negatives = [(v, other) for made in variants.values() for v in made for other in distinct if other.key != v.key]
    sets["gen variant vs other"] = (negatives, False)
    return sets


def evaluate(threshold: int) -> list[dict]:
    rows = []
    for name, (pairs, positive) in pair_sets().items():
        row = {"set": name, "pairs": len(pairs), "positive": positive,
               "method": sum(is_duplicate(a, b, threshold) for a, b in pairs)}
        for t in BASELINE_THRESHOLDS:
            row[f"phash@{t}"] = sum(phash_duplicate(a, b, t) for a, b in pairs)
        rows.append(row)
    return rows


def _rate(hits: int, pairs: int) -> str:
    return f"{hits / pairs:.3f}" if pairs else "-"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=int, default=Settings(_env_file=None).dedup_threshold)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = evaluate(args.threshold)
    if args.json:
        print(json.dumps({"threshold": args.threshold, "rows": rows}, indent=1))
        return
    columns = ["method"] + [f"phash@{t}" for t in BASELINE_THRESHOLDS]
    print(f"recall (should match) and false-positive rate (should not); method at threshold {args.threshold}")
    print(f"{'set':28s} {'pairs':>6s} {'kind':>6s} " + " ".join(f"{c:>10s}" for c in columns))
    totals = {True: {"pairs": 0, **{c: 0 for c in columns}}, False: {"pairs": 0, **{c: 0 for c in columns}}}
    for row in rows:
        kind = "recall" if row["positive"] else "FP"
        print(f"{row['set']:28s} {row['pairs']:6d} {kind:>6s} "
              + " ".join(f"{_rate(row[c], row['pairs']):>10s}" for c in columns))
        bucket = totals[row["positive"]]
        bucket["pairs"] += row["pairs"]
        for c in columns:
            bucket[c] += row[c]
    for positive, label in ((True, "ALL recall"), (False, "ALL false positives")):
        bucket = totals[positive]
        print(f"{label:28s} {bucket['pairs']:6d} {'':>6s} "
              + " ".join(f"{_rate(bucket[c], bucket['pairs']):>10s}" for c in columns))
    print(f"flat images (exact matches only): {', '.join(flat_names())}")


if __name__ == "__main__":
    main()
