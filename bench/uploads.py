"""Section `uploads`: a 200 MB video and forty 12 MP photos through each way `mediahub serve` takes uploads, side by
side in one run on loopback: the form upload (one multipart POST to the entity's route), tus 1.0.0 at 1, 8 and 32
MiB chunks, and direct-to-S3 (presigned: a video's multipart parts PUT straight to the bucket, a photo as one POST
form there, then complete).

Servers: `mediahub serve` as a deployment starts it (PIXEL_WORKERS unset) over SQLite, with local storage, or with
S3 on a moto server of its own for the S3 rows (the form upload and tus there too: the proxied uploads that
direct-to-S3 is measured against). Each transport in each round gets a fresh server (and moto), warmed up by one
small upload of each kind through that transport, so every memory figure starts from the same ready server.
Duplicates are allowed (the same photos go up again); no jobs run (MAKE_WEBP and VIDEO_TRANSCODE off), so the
server's CPU is what the upload itself costs. The clients are plain `requests` sessions written here: the form
body streamed from disk, tus as creation then one PATCH per chunk, direct-to-S3 as Uppy's `@uppy/aws-s3` drives it.

Figures per transport: throughput (MB/s of file bytes, 1 MB = 10^6 bytes; wall time from the first request to
the answer naming the item), the server's CPU seconds per MB (utime + stime of the server process and every process
under it, pixel workers included, before and after), and the API process's peak RSS (VmHWM, reset before each
file) with a ~20 MB and the ~200 MB video: the growth between them against the 180 MB more of file.
Rounds run the transports in rotating order (medians), so the machine's noise hits every transport alike.

Inputs are made once from the corpus and cached under MEDIAHUB_BENCH_CACHE (default ~/.cache/mediahub-bench): the
corpus' 1080p clip with seeded grain, encoded (x264) to the sizes; eight 12 MP JPEGs from four corpus photos, as
the other sections make theirs (uploaded five times each). `--smoke`: a 4 MB and a 1 MB video, two 1 MP photos,
one round, one server per storage for all its transports.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import itertools
import os
import shutil
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import av
import numpy as np
import requests

from bench.common import Config, console, table, verdict
from bench.corpus import CORPUS_DIR
from bench.delivery import CACHE, Process, process_tree
from bench.httpload import Server, token
from bench.inputs import InputSpec, make_input

MB = 1_000_000
MiB = 1024 * 1024
TUS_CHUNKS_MIB = (1, 8, 32)
DIRECT_PART = 8 * MiB  # as UPLOAD_PART_SIZE: the parts tus stages in S3
GOAL_TUS_SHARE = 0.80  # tus at 8 MiB chunks: at least this share of the form upload's MB/s
GOAL_DIRECT_CPU = 0.10  # direct-to-S3: under this share of the CPU per MB of a form upload to the same S3
GOAL_RSS_SLOPE = 0.10  # peak RSS growth from the small video to the large one: under this share of the size growth
SETTINGS = {"UPLOAD_RATE_LIMIT": "0", "DEDUP_POLICY": "allow", "MAKE_WEBP": "false", "VIDEO_TRANSCODE": "false",
            "MAX_VIDEO_SIZE": str(500 * MiB), "UPLOAD_MAX_OPEN": "1000"}
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
VIDEO_SOURCE = CORPUS_DIR / "video" / "mp4_h264_aac_1080p_smpte.mp4"
WARMUP_VIDEO = CORPUS_DIR / "video" / "mp4_h264_example_640x480.mp4"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_entities = itertools.count()


@dataclass(frozen=True)
class Sizes:
    video: int  # bytes of the large video
    small_video: int
    photos: int  # uploads of photos
    photo_specs: tuple[InputSpec, ...]
    rounds: int
    fresh_servers: bool = True  # a server per transport and round (else one per storage and round)


FULL = Sizes(200 * MB, 20 * MB, 40, tuple(
    InputSpec(f"upload-12mp-{index}", source, *size, seed=120 + index)
    for index, (source, size) in enumerate(itertools.product(
        ("jpeg_large_jolla_3264x2448.jpg", "gps_iphone6_hdr_3264x2448.jpg", "orient_landscape_1.jpg"),
        ((4000, 3000), (3000, 4000))))
) + (InputSpec("upload-12mp-portrait-0", "orient_portrait_1.jpg", 3000, 4000, seed=130),
     InputSpec("upload-12mp-portrait-1", "orient_portrait_1.jpg", 3000, 4000, seed=131)), 3)
SMOKE = Sizes(4 * MB, 1 * MB, 2, (InputSpec("upload-1mp", "orient_landscape_1.jpg", 1224, 816, seed=140),), 1,
              fresh_servers=False)


# --- inputs ------------------------------------------------------------------------------------------------------

def make_video(target: Path, size: int, seed: int = 16) -> None:
    """An H.264 1080p25 MP4 of about `size` bytes: the corpus' 1080p clip with seeded grain (every frame differs and
    compresses like camera output), x264 ultrafast at CRF 16, as many frames as reach the size."""
    with av.open(str(VIDEO_SOURCE)) as source:
        frames = [frame.to_ndarray(format="rgb24") for frame in itertools.islice(source.decode(video=0), 50)]
    rng = np.random.default_rng(seed)
    grains = [rng.integers(-12, 13, size=frames[0].shape, dtype=np.int16) for _ in range(7)]
    written = 0
    with av.open(str(target), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"preset": "ultrafast", "crf": "16"})
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for number in itertools.count():
            if written >= size:
                break
            picture = np.clip(frames[number % len(frames)] + grains[number % len(grains)], 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                written += packet.size
                out.mux(packet)
        out.mux(stream.encode(None))


def _cached(name: str, key: str, make: Callable[[Path], None]) -> Path:
    """A folder under CACHE named after `key`, filled by `make(folder)` once."""
    folder = CACHE / f"uploads-{name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if not folder.is_dir():
        partial = folder.with_name(folder.name + f".{os.getpid()}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        make(partial)
        partial.rename(folder)
    return folder


def videos(sizes: Sizes) -> tuple[Path, Path]:
    """(the small video, the large one)."""
    def make(folder: Path) -> None:
        for size in (sizes.small_video, sizes.video):
            make_video(folder / f"video-{size}.mp4", size)

    folder = _cached("videos", f"{sizes.small_video},{sizes.video}\n{inspect.getsource(make_video)}", make)
    return folder / f"video-{sizes.small_video}.mp4", folder / f"video-{sizes.video}.mp4"


def photos(sizes: Sizes) -> list[Path]:
    """The photos in upload order: the distinct files in turn."""
    def make(folder: Path) -> None:
        for spec in sizes.photo_specs:
            make_input(spec, folder)

    key = repr(sizes.photo_specs) + (Path(__file__).parent / "inputs.py").read_text()
    folder = _cached("photos", key, make)
    distinct = [folder / f"{spec.name}.jpg" for spec in sizes.photo_specs]
    return [distinct[number % len(distinct)] for number in range(sizes.photos)]


# --- the clients -------------------------------------------------------------------------------------------------

class Client:
    """An admin's keep-alive session with one server."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token()}"

    def close(self) -> None:
        self.http.close()


def _entity() -> str:
    return f"up{os.getpid()}n{next(_entities)}"


def _checked(reply: requests.Response, expected: tuple[int, ...], what: str) -> requests.Response:
    if reply.status_code not in expected:
        raise RuntimeError(f"{what}: {reply.status_code} {reply.text[:300]}")
    return reply


class FormBody:
    """A multipart/form-data body of one file, read from disk as it is sent; its length is known up front."""

    boundary = "mediahub-bench-boundary"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.head = (f"--{self.boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path.name}\""
                     "\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
        self.tail = f"\r\n--{self.boundary}--\r\n".encode()

    def __len__(self) -> int:
        return len(self.head) + self.path.stat().st_size + len(self.tail)

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        with self.path.open("rb") as fh:
            while block := fh.read(MiB):
                yield block
        yield self.tail


def form_upload(client: Client, path: Path) -> str:
    body = FormBody(path)
    reply = client.http.post(f"{client.base}/v1/media/properties/{_entity()}/photos", data=body,
                             headers={"Content-Type": f"multipart/form-data; boundary={body.boundary}"})
    return _checked(reply, (201,), f"form upload of {path.name}").json()["id"]


def tus_metadata(fields: dict[str, str]) -> str:
    return ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in fields.items())


def tus_upload(client: Client, path: Path, chunk: int) -> str:
    """tus 1.0.0 as a client without creation-with-upload sends it: creation, then a PATCH per chunk in turn."""
    size = path.stat().st_size
    version = {"Tus-Resumable": "1.0.0"}
    metadata = {"entity_type": "property", "entity_id": _entity(), "entity_field": "gallery", "filename": path.name}
    created = _checked(client.http.post(f"{client.base}/v1/media/tus/", headers={
        **version, "Upload-Length": str(size), "Upload-Metadata": tus_metadata(metadata)}), (201,), "tus creation")
    url = urljoin(f"{client.base}/v1/media/tus/", created.headers["Location"])
    offset = 0
    with path.open("rb") as fh:
        while offset < size:
            data = fh.read(chunk)
            reply = _checked(client.http.patch(url, data=data, headers={
                **version, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}),
                (200, 201, 204), f"tus PATCH at {offset} of {path.name}")
            offset = int(reply.headers["Upload-Offset"])
    if "Media-Id" not in reply.headers:
        raise RuntimeError(f"tus: the last PATCH of {path.name} named no item: {dict(reply.headers)}")
    return reply.headers["Media-Id"]


def direct_upload(client: Client, path: Path) -> str:
    """Direct to S3 as Uppy's `@uppy/aws-s3` drives it: a video as a multipart upload (create, sign each part, PUT
    the parts to the bucket, complete), a photo as one presigned POST form (then complete). MediaHub ingests at
    completion and answers with the item."""
    metadata = {"entity_type": "property", "entity_id": _entity(), "entity_field": "gallery"}
    api = f"{client.base}/v1/media/s3"
    with requests.Session() as bucket:  # no Authorization header towards the bucket
        if path.suffix != ".mp4":
            form = _checked(client.http.get(f"{api}/params", params={
                "filename": path.name, **{f"metadata[{name}]": value for name, value in metadata.items()}}),
                (200,), "direct: presigned POST").json()
            with path.open("rb") as fh:
                _checked(bucket.post(form["url"], data=form["fields"], files={"file": (path.name, fh)}),
                         (200, 201, 204), f"direct: POST of {path.name} to the bucket")
            return _checked(client.http.post(f"{api}/params/complete", params={"key": form["key"]}), (201,),
                            "direct: complete the POST").json()["id"]
        created = _checked(client.http.post(f"{api}/multipart", json={"filename": path.name, "metadata": metadata}),
                           (201,), "direct: create").json()
        upload_id, key = created["uploadId"], created["key"]
        parts = []
        with path.open("rb") as fh:
            for number in itertools.count(1):
                data = fh.read(DIRECT_PART)
                if not data:
                    break
                signed = _checked(client.http.get(f"{api}/multipart/{upload_id}/{number}", params={"key": key}),
                                  (200,), f"direct: sign part {number}").json()
                put = _checked(bucket.put(signed["url"], data=data), (200,), f"direct: PUT part {number}")
                parts.append({"PartNumber": number, "ETag": put.headers["ETag"]})
    return _checked(client.http.post(f"{api}/multipart/{upload_id}/complete", params={"key": key},
                                     json={"parts": parts}), (201,), "direct: complete").json()["id"]


@dataclass(frozen=True)
class Transport:
    label: str
    storage: str  # local | s3
    send: Callable[[Client, Path], str]  # the file up; the item's id


TRANSPORTS = (
    Transport("form", "local", form_upload),
    *(Transport(f"tus {mib} MiB", "local", lambda client, path, chunk=mib * MiB: tus_upload(client, path, chunk))
      for mib in TUS_CHUNKS_MIB),
    Transport("form (S3)", "s3", form_upload),
    Transport("tus 8 MiB (S3)", "s3", lambda client, path: tus_upload(client, path, 8 * MiB)),
    Transport("direct-to-S3", "s3", direct_upload),
)


# --- the server's figures ----------------------------------------------------------------------------------------

def cpu_seconds(root: int) -> float:
    """User + system CPU of a process and every process under it (with the children each has reaped)."""
    ticks = 0
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended between the listing and the read
        ticks += sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / CLOCK_TICKS


def reset_peak(pid: int) -> None:
    with open(f"/proc/{pid}/clear_refs", "w") as fh:
        fh.write("5")  # VmHWM back to the current RSS (Linux >= 4.0)


def peak_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


@dataclass
class Figures:
    """One transport's samples over the rounds."""

    video_rate: list[float] = field(default_factory=list)  # MB/s
    photo_rate: list[float] = field(default_factory=list)
    video_cpu: list[float] = field(default_factory=list)  # CPU s per MB
    photo_cpu: list[float] = field(default_factory=list)
    small_peak: list[int] = field(default_factory=list)  # KiB, the small video
    large_peak: list[int] = field(default_factory=list)


def _measured(server: Server, send: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, server CPU seconds) of `send()`."""
    cpu = cpu_seconds(server.proc.pid)
    start = time.perf_counter()
    send()
    wall = time.perf_counter() - start
    return wall, cpu_seconds(server.proc.pid) - cpu


def measure(server: Server, transport: Transport, small: Path, large: Path, photo_files: list[Path],
            figures: Figures) -> None:
    client = Client(server.base)
    try:
        for warmup in (photo_files[0], WARMUP_VIDEO):  # first calls: imports, connections, pixel workers
            transport.send(client, warmup)
        pid = server.proc.pid
        reset_peak(pid)
        transport.send(client, small)
        figures.small_peak.append(peak_kib(pid))
        reset_peak(pid)
        wall, cpu = _measured(server, lambda: transport.send(client, large))
        figures.large_peak.append(peak_kib(pid))
        size = large.stat().st_size / MB
        figures.video_rate.append(size / wall)
        figures.video_cpu.append(cpu / size)
        wall, cpu = _measured(server, lambda: [transport.send(client, path) for path in photo_files])
        size = sum(path.stat().st_size for path in photo_files) / MB
        figures.photo_rate.append(size / wall)
        figures.photo_cpu.append(cpu / size)
    finally:
        client.close()


# --- the servers -------------------------------------------------------------------------------------------------

@contextmanager
def s3_settings(work: Path) -> Iterator[dict[str, str]]:
    """A moto S3 server of its own on loopback; the settings that point `mediahub serve` at a fresh bucket there."""
    moto = Process(lambda port: [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], work,
                   work / "moto.log", env=os.environ | S3_CREDENTIALS | {"AWS_DEFAULT_REGION": "us-east-1"})
    try:
        moto.wait_ready()
        yield {"STORAGE_TYPE": "s3", "S3_ENDPOINT_URL": moto.base, "S3_BUCKET_NAME": f"bench-{uuid.uuid4().hex[:12]}",
               "AWS_REGION": "us-east-1", **S3_CREDENTIALS}
    finally:
        moto.stop()


@contextmanager
def serving(storage: str, work: Path) -> Iterator[Server]:
    """A fresh `mediahub serve` over SQLite and `storage` (with its own moto for S3), its files removed after."""
    work.mkdir(parents=True, exist_ok=True)
    with s3_settings(work) if storage == "s3" else _nothing() as store:
        server = Server(work / "mediahub", SETTINGS | store)
        try:
            server.wait_ready()
            # Readiness checks the store as a deployment's probe does (and creates the S3 bucket).
            _checked(requests.get(f"{server.base}/readyz", timeout=30), (200,), "readyz")
            yield server
        finally:
            server.stop()
            shutil.rmtree(work, ignore_errors=True)


@contextmanager
def _nothing() -> Iterator[dict[str, str]]:
    yield {}


# --- the run -----------------------------------------------------------------------------------------------------

def run(cfg: Config) -> None:
    sizes = SMOKE if cfg.smoke else FULL
    small, large = videos(sizes)
    photo_files = photos(sizes)
    figures = {transport.label: Figures() for transport in TRANSPORTS}
    for rep in range(sizes.rounds):
        order = TRANSPORTS[rep % len(TRANSPORTS):] + TRANSPORTS[:rep % len(TRANSPORTS)]
        groups = ([[transport] for transport in order] if sizes.fresh_servers else
                  [[t for t in order if t.storage == storage] for storage in dict.fromkeys(t.storage for t in order)])
        for number, group in enumerate(groups):
            with serving(group[0].storage, cfg.work / f"uploads-{rep}-{number}") as server:
                for transport in group:
                    measure(server, transport, small, large, photo_files, figures[transport.label])
    _print(figures, sizes, small, large, photo_files)


def _print(figures: dict[str, Figures], sizes: Sizes, small: Path, large: Path, photo_files: list[Path]) -> None:
    def median(values: list[float]) -> float | None:
        return statistics.median(values) if values else None

    def pair(values: list[float | None], digits: int, suffix: str = "") -> str:
        return " / ".join("-" if v is None else f"{v:,.{digits}f}{suffix}" for v in values)

    def shares(values: list[float | None], bases: list[float | None]) -> list[float | None]:
        return [v / b if v is not None and b else None for v, b in zip(values, bases, strict=True)]

    large_mb, small_mb = large.stat().st_size / MB, small.stat().st_size / MB
    photo_mb = sum(path.stat().st_size for path in photo_files) / MB
    t = table(f"Uploads: a {large_mb:.0f} MB video and {len(photo_files)} photos ({photo_mb:.0f} MB) through each "
              f"transport of `mediahub serve` on loopback, medians of {sizes.rounds} round(s) in rotating order\n"
              "  SQLite; local storage, or S3 on moto (rows marked S3); "
              f"{'a fresh server per transport and round' if sizes.fresh_servers else 'one server per storage'}, "
              "each transport warmed up; no jobs\n"
              f"  direct-to-S3: the video in {DIRECT_PART // MiB} MiB multipart parts, each photo one presigned POST; "
              "both PUT/POSTed to moto, then completed\n"
              "  MB/s: file bytes over the wall time from the first request to the answer naming the item "
              "(photos one after another)\n"
              "  CPU: the server process and its pixel workers, ms per MB of file; vs form: the form upload to "
              "the same storage; pairs: video / photos\n"
              f"  peak RSS: VmHWM of the API process (reset before each file) with a {small_mb:.0f} MB / the "
              f"{large_mb:.0f} MB video; growth: of the peak, over the {large_mb - small_mb:.0f} MB more file",
              ["transport", "video MB/s", "photos MB/s", "vs form", "CPU ms/MB", "CPU vs form", "peak RSS MiB",
               "RSS growth", "goal", "verdict"])
    form = {"local": figures["form"], "s3": figures["form (S3)"]}
    for transport in TRANSPORTS:
        mine, base = figures[transport.label], form[transport.storage]
        rates = [median(mine.video_rate), median(mine.photo_rate)]
        cpus = [median(mine.video_cpu), median(mine.photo_cpu)]
        rate_shares = shares(rates, [median(base.video_rate), median(base.photo_rate)])
        cpu_shares = shares(cpus, [median(base.video_cpu), median(base.photo_cpu)])
        peaks = [median(mine.small_peak), median(mine.large_peak)]
        growth = ((peaks[1] - peaks[0]) * 1024 / ((large_mb - small_mb) * MB) if None not in peaks else None)
        goals, checks = [f"RSS growth < {GOAL_RSS_SLOPE * 100:.0f} %"], [growth is not None and growth < GOAL_RSS_SLOPE]
        if transport.label == "tus 8 MiB":
            goals.append(f">= {GOAL_TUS_SHARE:.2f}x form MB/s")
            checks.append(None not in rate_shares and min(rate_shares) >= GOAL_TUS_SHARE)
        if transport.send is direct_upload:
            goals.append(f"video CPU < {GOAL_DIRECT_CPU:.2f}x form")
            checks.append(cpu_shares[0] is not None and cpu_shares[0] < GOAL_DIRECT_CPU)
        proxied = transport.send is form_upload
        t.add_row(transport.label, pair(rates[:1], 1), pair(rates[1:], 1),
                  "-" if proxied else pair(rate_shares, 2, "x"), pair([c and c * 1000 for c in cpus], 1),
                  "-" if proxied else pair(cpu_shares, 2, "x"), pair([p and p / 1024 for p in peaks], 0),
                  "-" if growth is None else f"{growth * 100:.1f} %", "; ".join(goals),
                  " / ".join(verdict(ok) for ok in checks))
    console.print(t)
