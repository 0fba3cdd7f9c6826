"""tus on every database and on S3 (moto's server): parts written as bytes arrive, a request that dies
mid-body, leases between requests, and nothing staged left once the upload is done."""

from __future__ import annotations

import hashlib
import io
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
import pyvips
from fastapi.testclient import TestClient

from mediahub.api.routes.tus import WRITE_BLOCK
from mediahub.db.models import utcnow
from mediahub.db.repositories import MediaRepository
from mediahub.db.repositories.uploads import UploadRepository
from mediahub.errors import Locked
from mediahub.media.access import Principal
from mediahub.media.keys import INCOMING_PREFIX
from mediahub.media.uploads import Lease
from mediahub.storage.staging import Staged
from tests.api.conftest import AppFactory, Tokens
from tests.api.test_tus import AVATAR, TUS, create, patch

MB = 1024 * 1024


@pytest.fixture(scope="module")
def big_jpeg() -> bytes:
    """A real photo of about 12 MB (noise does not compress): more than two S3 parts."""
    noise = pyvips.Image.gaussnoise(2600, 2200, sigma=60).cast("uchar").bandjoin([
        pyvips.Image.gaussnoise(2600, 2200, sigma=60).cast("uchar"),
        pyvips.Image.gaussnoise(2600, 2200, sigma=60).cast("uchar")]).copy(interpretation="srgb")
    data = noise.jpegsave_buffer(Q=98)
    assert 10 * MB < len(data) < 20 * MB
    return data


@pytest.fixture
def s3_tus(app_factory: AppFactory, s3_server: str, migrated_database_url: str) -> Iterator[TestClient]:
    bucket = f"tus-{uuid.uuid4().hex[:12]}"
    app = app_factory(database_url=migrated_database_url, storage_type="s3", s3_endpoint_url=s3_server,
                      aws_access_key_id="testing", aws_secret_access_key="testing", s3_bucket_name=bucket,
                      upload_part_size=5 * MB, upload_lease_seconds=2)
    with TestClient(app) as client:
        client.app.state.runtime.storage.check()
        yield client


def _incoming(client: TestClient) -> list[str]:
    storage = client.app.state.runtime.storage
    objects = [info.key for info in storage.list(INCOMING_PREFIX)]
    uploads = storage.client.list_multipart_uploads(Bucket=storage.bucket, Prefix=INCOMING_PREFIX).get("Uploads", [])
    return objects + [upload["Key"] for upload in uploads]


@pytest.mark.s3
def test_s3_parts_arrive_in_odd_chunks_and_make_the_item(s3_tus: TestClient, tokens: Tokens,
                                                          big_jpeg: bytes) -> None:
    client, owner = s3_tus, tokens.header("USR-1")
    url = create(client, owner, len(big_jpeg)).headers["location"]
    chunk = 3 * MB + 17  # across the 5 MiB part boundaries
    for offset in range(0, len(big_jpeg), chunk):
        response = patch(client, url, owner, offset, big_jpeg[offset:offset + chunk])
        assert response.status_code == 204, response.text
    media_id = int(response.headers["media-id"])
    with client.app.state.runtime.database.session() as session:
        assert MediaRepository(session).get(media_id).sha256 == hashlib.sha256(big_jpeg).hexdigest()
    assert _incoming(client) == []


@pytest.mark.s3
def test_s3_a_request_that_dies_mid_body_resumes_from_its_last_part(s3_tus: TestClient, tokens: Tokens,
                                                                     big_jpeg: bytes) -> None:
    """The process writing a PATCH dies after its first part landed (its lease held, never released): the
    next request finds that part's end as the offset once the lease runs out, and the item is byte-exact."""
    client, owner = s3_tus, tokens.header("USR-1")
    url = create(client, owner, len(big_jpeg)).headers["location"]
    upload_id, runtime = url.rsplit("/", 1)[-1], client.app.state.runtime
    with runtime.database.session() as session:
        repo = UploadRepository(session)
        row = repo.get(upload_id)
        assert repo.take_lease(upload_id, "dead-process", utcnow() + timedelta(seconds=2))
    writer = runtime.tus.staging.writer(row.storage_key, Staged(0, row.staging))
    checkpoint = writer.write(big_jpeg[:6 * MB])  # one 5 MiB part written, 1 MiB pending when it dies
    assert checkpoint is not None and checkpoint.size == 5 * MB
    with runtime.database.session() as session:
        assert UploadRepository(session).record(upload_id, "dead-process", checkpoint.size, checkpoint.state)
    assert client.head(url, headers={**owner, **TUS}).headers["upload-offset"] == str(5 * MB)
    assert patch(client, url, owner, 5 * MB, big_jpeg[5 * MB:6 * MB]).status_code == 423
    time.sleep(2.5)  # the dead request's lease runs out
    response = patch(client, url, owner, 5 * MB, big_jpeg[5 * MB:])
    assert response.status_code == 204, response.text
    with runtime.database.session() as session:
        item = MediaRepository(session).get(int(response.headers["media-id"]))
        assert item.sha256 == hashlib.sha256(big_jpeg).hexdigest()
    assert _incoming(client) == []


def test_a_lease_gone_quiet_is_taken_over_and_its_holder_stops(client: TestClient, tokens: Tokens) -> None:
    """A connection that stops sending stops renewing its lease; the client's next request takes over, and
    the old request, should bytes come after all, stops instead of writing."""
    owner = tokens.header("USR-1")
    upload_id = create(client, owner, 5000, AVATAR).headers["location"].rsplit("/", 1)[-1]
    uploads = client.app.state.runtime.uploads
    quiet = Lease(uploads.database, upload_id, seconds=1).take()
    try:
        with pytest.raises(Locked):
            uploads.lease(upload_id)
        time.sleep(2)  # nothing arrives: renewal pauses, the lease runs out
        newer = uploads.lease(upload_id)
        with pytest.raises(Locked):
            quiet.touch()
        newer.release()
    finally:
        quiet.release()


@pytest.mark.s3
def test_s3_termination_aborts_the_multipart_upload(s3_tus: TestClient, tokens: Tokens, big_jpeg: bytes) -> None:
    client, owner = s3_tus, tokens.header("USR-1")
    url = create(client, owner, len(big_jpeg)).headers["location"]
    assert patch(client, url, owner, 0, big_jpeg[:7 * MB]).status_code == 204
    assert _incoming(client)
    assert client.delete(url, headers={**owner, **TUS}).status_code == 204
    assert _incoming(client) == []


def test_concurrent_patches_one_wins_the_other_is_told(client: TestClient, tokens: Tokens) -> None:
    owner = tokens.header("USR-1")
    data = io.BytesIO(b"x" * 5000).getvalue()
    url = create(client, owner, len(data), AVATAR).headers["location"]
    tus, upload_id = client.app.state.runtime.tus, url.rsplit("/", 1)[-1]
    first = tus.start_append(Principal("USR-1"), upload_id, 0)
    try:
        with pytest.raises(Locked):
            tus.start_append(Principal("USR-1"), upload_id, 0)
        first.write(data[:100])
        first.close(whole=True)
    finally:
        first.end()
    assert client.head(url, headers={**owner, **TUS}).headers["upload-offset"] == "100"



def _one_patch_of_the_whole_file(client: TestClient, tokens: Tokens, data: bytes) -> None:
    """The whole file in one PATCH, written in the route's blocks as a server receives it: each checkpoint the
    staging store returns meanwhile is recorded, and each byte counts once."""
    url = create(client, tokens.header("USR-1"), len(data)).headers["location"]
    tus, upload_id = client.app.state.runtime.tus, url.rsplit("/", 1)[-1]
    appending = tus.start_append(Principal("USR-1"), upload_id, 0)
    try:
        for start in range(0, len(data), WRITE_BLOCK):
            appending.write(data[start:start + WRITE_BLOCK])
        appending.close(whole=True)
        outcome = tus.finish_if_complete(appending)
    finally:
        appending.end()
    assert outcome is not None and outcome.error is None and outcome.media_id is not None
    with client.app.state.runtime.database.session() as session:
        assert MediaRepository(session).get(outcome.media_id).sha256 == hashlib.sha256(data).hexdigest()


def test_one_patch_across_local_checkpoints_makes_the_item(client: TestClient, tokens: Tokens,
                                                           big_jpeg: bytes) -> None:
    _one_patch_of_the_whole_file(client, tokens, big_jpeg)  # more than one 8 MiB checkpoint


@pytest.mark.s3
def test_s3_one_patch_across_parts_makes_the_item(s3_tus: TestClient, tokens: Tokens, big_jpeg: bytes) -> None:
    _one_patch_of_the_whole_file(s3_tus, tokens, big_jpeg)  # more than two 5 MiB parts
