"""MediaHub's side of every row: a throwaway SQLite + local-storage runtime and
the functions the sections time (upload path, its jobs, pixel floor,
overhead components)."""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from sqlalchemy import select

from bench import naive
from mediahub.config import Settings
from mediahub.db.models import Job, MediaItem
from mediahub.entities import Target
from mediahub.media.ingest import IngestService, UploadRequest
from mediahub.pipeline.options import encode_options, image_options
from mediahub.runtime import Runtime

CHUNK = 1024 * 1024
JPEG_QUALITY = 85
_ids = itertools.count()


def chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while block := fh.read(CHUNK):
            yield block


def settings_for(root: Path, **overrides) -> Settings:
    """A throwaway embedded deployment. The bench uploads the same files again and again,
    so duplicates are allowed and the rate limit is off."""
    base = {"database_url": f"sqlite:///{root / 'mediahub.db'}", "dedup_policy": "allow", "upload_rate_limit": 0}
    return Settings(_env_file=None, media_root=root / "media", temp_dir=root / "tmp",
                    jwt_secret="bench-secret-0123456789abcdef0123456789abcdef", **(base | overrides))


def migrate(settings: Settings) -> None:
    from mediahub.db.migrate import upgrade

    (settings.temp_dir or Path(tempfile.gettempdir())).mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)


@dataclass
class Bench:
    """One migrated SQLite + local store; `upload` is what a client waits for, `total` all the work."""

    root: Path
    runtime: Runtime  # the request path; its jobs (WebP + AVIF, deferred variants) stay queued for `finish`
    inline: IngestService  # every variant and WebP made in the request, nothing deferred

    @classmethod
    def create(cls, root: Path | None = None, **overrides) -> Bench:
        root = Path(root or tempfile.mkdtemp(prefix="mediahub-bench-"))
        settings = settings_for(root, **({"make_webp": True, "make_avif": True} | overrides))
        migrate(settings)
        runtime = Runtime.build(settings)
        runtime.ingest.dispatch = None  # jobs are run by `finish`, in this thread, timed with the upload or not
        inline = IngestService(settings_for(root, make_webp=True, defer_slow_variants=False), runtime.database,
                               runtime.storage)
        # The request path leaves WebP/AVIF to a job: force WebP back in for this row.
        inline.image_options = image_options(inline.settings, encode_options(inline.settings, extra=True))
        return cls(root, runtime, inline)

    def request(self) -> UploadRequest:
        # A fresh entity per upload: galleries have an item cap, and no slot replacement work.
        return UploadRequest(Target.parse("property", f"b{os.getpid()}x{next(_ids)}", "gallery"),
                             uploaded_by="bench", filename="photo.jpg")

    def upload(self, path: Path) -> MediaItem:
        return self.runtime.ingest.ingest(chunks(path), self.request())

    def upload_inline_webp(self, path: Path) -> MediaItem:
        return self.inline.ingest(chunks(path), self.request())

    def finish(self, item: MediaItem) -> MediaItem:
        """Run the item's queued jobs (deferred variants, WebP + AVIF) as a worker would; the item as they left it."""
        from mediahub.jobs.runner import execute

        with self.runtime.database.session() as session:
            job_ids = list(session.scalars(select(Job.id).where(Job.media_id == item.id, Job.status == "queued")
                                           .order_by(Job.id)))
        for job_id in job_ids:
            done = execute(self.runtime.tasks, job_id)
            if done is None or done.status != "done":
                raise RuntimeError(f"job {job_id} of #{item.id} did not finish: {done and done.last_error}")
        with self.runtime.database.session() as session:
            return session.get(MediaItem, item.id)

    def total(self, path: Path) -> MediaItem:
        """Everything MediaHub makes for one image: the upload path, then its jobs (WebP and AVIF included)."""
        return self.finish(self.upload(path))

    def close(self) -> None:
        self.runtime.close()


# -- the pure resize-and-encode floor (no sniff, hashes, EXIF, storage or DB) ---------------------

def floor(path: Path, sizes, orientation_hint: int | None = None) -> int:
    """libvips: shrink-on-load to the largest size once, the rest from it, JPEG q85, no metadata.

    Exact output sizes (`variants.output_size`) are passed so geometry matches MediaHub's.
    """
    import pyvips

    from mediahub.pipeline.variants import crop_box, output_size

    specs = sorted(sizes, key=lambda s: s.width * s.height, reverse=True)
    if path.suffix.lower() in (".heic", ".heif"):  # libvips' wheel has no HEVC decoder: Pillow decodes
        naive._register()
        with Image.open(path) as opened:
            rgb = opened.convert("RGB")
        width, height = rgb.size
        largest = output_size(width, height, specs[0])
        base = pyvips.Image.new_from_memory(rgb.tobytes(), width, height, 3, "uchar").thumbnail_image(
            largest[0], height=largest[1], size="force").copy_memory()
    else:
        head = pyvips.Image.new_from_file(str(path), access="sequential")
        width, height = head.width, head.height
        if head.get_typeof("orientation") and head.get("orientation") in (5, 6, 7, 8):
            width, height = height, width
        largest = output_size(width, height, specs[0])
        base = pyvips.Image.thumbnail(str(path), largest[0], height=largest[1], size="force").copy_memory()
    if base.hasalpha():
        base = base.flatten(background=[255, 255, 255])
    written = 0
    for spec in specs:
        size = output_size(width, height, spec)
        img = base
        if spec.crop:
            left, top, right, bottom = crop_box(base.width, base.height, spec.width / spec.height)
            img = base.crop(round(left), round(top), max(1, round(right - left)), max(1, round(bottom - top)))
        if (img.width, img.height) != size:
            img = img.resize(size[0] / img.width, vscale=size[1] / img.height, kernel="lanczos3")
        written += len(img.jpegsave_buffer(Q=JPEG_QUALITY, keep="none"))
    return written
