"""A gallery's max_items holds when uploads race for its last places, on every database."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from mediahub.db.models import MediaItem
from mediahub.db.repositories import MediaRepository
from mediahub.entities import get_kind
from mediahub.errors import Conflict
from tests.db.test_repositories import make_item
from tests.media.conftest import make_runtime
from tests.media.helpers import upload
from tests.support.corpus import CORPUS_DIR

SMALL_PHOTOS = [CORPUS_DIR / "images/good" / name for name in (
    "jpeg_hopper.jpg", "jpeg_flower.jpg", "jpeg_grayscale.jpg", "gif_hopper.gif", "bmp_hopper.bmp", "jpeg_cmyk.jpg")]
FREE_PLACES = 3


@pytest.fixture
def gallery_runtime(db, local_storage, tmp_path):
    runtime = make_runtime(db, local_storage, tmp_path, dedup_policy="allow", make_webp=False)
    yield runtime
    runtime.jobs.close()


def test_racing_uploads_never_overfill_a_gallery(gallery_runtime) -> None:
    limit = get_kind("post").field("media").max_items
    with gallery_runtime.database.session() as session:
        repo = MediaRepository(session)
        for _ in range(limit - FREE_PLACES):
            repo.add(make_item("media", "post", "P1"))

    def attempt(path) -> str:
        try:
            upload(gallery_runtime, path, target="post:P1:media")
            return "stored"
        except Conflict as exc:
            return exc.code

    with ThreadPoolExecutor(len(SMALL_PHOTOS)) as pool:
        outcomes = sorted(pool.map(attempt, SMALL_PHOTOS))

    assert outcomes == ["gallery_full"] * (len(SMALL_PHOTOS) - FREE_PLACES) + ["stored"] * FREE_PLACES
    with gallery_runtime.database.session() as session:
        rows = list(session.scalars(select(MediaItem).where(MediaItem.entity_type == "post")))
    assert len(rows) == limit
    stored = {key for info in gallery_runtime.storage.list() if (key := info.key).startswith("posts/")}
    assert stored == {key for row in rows for key in row.keys() if key.startswith("posts/")}, \
        "refused uploads left objects behind"
