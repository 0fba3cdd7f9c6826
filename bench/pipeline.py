"""Section `pipeline`: ms per image, side by side, and the overhead around the pixels."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from bench import naive
from bench.common import Config, console, interleaved, ms, pct, ratio, table
from bench.harness import Bench, chunks, floor
from bench.inputs import SPECS

GOALS = {"jpeg-12mp": 5.0, "jpeg-24mp": 6.0}  # upload path at least this many times faster than naive


def _overhead_rows(bench: Bench, path: Path) -> dict:
    """Each step around the pixels on its own: spool+digests, sniff, EXIF, strip, pHash, storage+DB."""
    from mediahub.pipeline import exif as exif_step
    from mediahub.pipeline.fingerprint import perceptual_hash
    from mediahub.pipeline.image import process_image
    from mediahub.pipeline.intake import spool
    from mediahub.pipeline.probe import open_image
    from mediahub.pipeline.sniff import sniff
    from mediahub.pipeline.strip import STRIPPERS, judge_trailing

    service = bench.runtime.ingest
    temp = bench.runtime.settings.temp_dir
    keep = spool(chunks(path), 1 << 30, temp)
    sniffed = sniff(keep.head())
    processed = process_image(keep.path, sniffed, service.image_options)  # what the upload stores
    every_variant = process_image(keep.path, sniffed, bench.inline.image_options)
    small = Image.open(io.BytesIO(next(v.data for v in every_variant.variants if v.name == "small")))
    small.load()

    def spool_and_hash():
        spool(chunks(path), 1 << 30, temp).discard()

    def exif():
        image = open_image(keep.path, sniffed.format)
        exif_step.read_exif(image)
        image.close()

    def strip():
        if sniffed.format in STRIPPERS:
            judge_trailing(STRIPPERS[sniffed.format](keep.path.read_bytes()), sniffed.format)

    return {
        "spool": spool_and_hash,
        "sniff": lambda: sniff(keep.head()),
        "exif": exif,
        "strip": strip,
        "phash": lambda: perceptual_hash(small),
        "store": lambda: service._store(keep, sniffed, processed, bench.request()),
    }


def run(cfg: Config) -> None:
    bench = Bench.create(cfg.work / "pipeline")
    sizes = bench.runtime.settings.image_sizes
    results = {}
    try:
        for name, path in cfg.inputs.items():
            spec = SPECS[name]
            rows = {
                "naive": lambda p=path: naive.process(p),
                "upload": lambda p=path: bench.upload(p),
                "inline": lambda p=path: bench.upload_inline_webp(p),
                "total": lambda p=path: bench.total(p),
                "floor": lambda p=path: floor(p, sizes),
            }
            rows.update(_overhead_rows(bench, path))
            results[name] = interleaved(rows, cfg.repeats(spec.megapixels), warmup=not cfg.smoke)
    finally:
        bench.close()
    cfg.results["pipeline"] = results
    repeats = {name: cfg.repeats(SPECS[name].megapixels) for name in cfg.inputs}

    t = table("Pipeline: ms per image (median of N, rows interleaved in one process)",
              ["input", "MP", "N", "naive JPEG", "upload path", "naive/upload", "goal", "upload+WebP inline",
               "total (+WebP+AVIF job)", "total/naive", "resize+encode floor"])
    for name, r in results.items():
        speedup = r["naive"] / r["upload"]
        goal = GOALS.get(name)
        t.add_row(name, f"{SPECS[name].megapixels:.1f}", str(repeats[name]), ms(r["naive"]), ms(r["upload"]),
                  ratio(speedup), "-" if goal is None else f">={goal:g}x {'met' if speedup >= goal else 'NOT met'}",
                  ms(r["inline"]), ms(r["total"]), ratio(r["total"] / r["naive"]), ms(r["floor"]))
    console.print(t)

    t = table("Overhead around the pixels: ms per step (median), sum vs the resize+encode floor (goal <= 30 %)",
              ["input", "spool+SHA256/MD5", "sniff", "EXIF", "strip", "pHash", "storage+DB", "overhead sum",
               "floor", "overhead/floor", "upload-floor"])
    for name, r in results.items():
        total = sum(r[k] for k in ("spool", "sniff", "exif", "strip", "phash", "store"))
        t.add_row(name, ms(r["spool"]), ms(r["sniff"]), ms(r["exif"]), ms(r["strip"]), ms(r["phash"]),
                  ms(r["store"]), ms(total), ms(r["floor"]), pct(100 * total / r["floor"]),
                  ms(r["upload"] - r["floor"]))
    console.print(t)
