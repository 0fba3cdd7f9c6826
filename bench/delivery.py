"""Section `delivery`: MediaHub's signed transforms against thumbor 7.8, ipx 3.1 and bare pyvips in Starlette,
side by side in one run, on five 12 MP JPEGs (one an iPhone photo stored sideways, EXIF orientation 6), an
800x600 cover crop as WebP q80 and JPEG q85.

Every server runs on this machine from what is committed in bench/peers: thumbor in a venv of its own from
`thumbor-requirements.txt` (file loader, signed URLs, file result storage on; a second instance with
RESPECT_ORIENTATION on for the orientation row), ipx from `ipx/package-lock.json` (`npm ci`) behind
`ipx/server.mjs`, the bare reference `pyvips_server.py` under uvicorn, and `mediahub serve` over SQLite + local
storage (the files uploaded through its API, each transform URL from `POST /v1/media/{id}/transform-url`). The
peers' installs are cached under MEDIAHUB_BENCH_CACHE (default ~/.cache/mediahub-bench), keyed by the
committed files. `--smoke` runs MediaHub and bare pyvips only, on one small file.

Rows: cold latency (one request at a time, each a transform never asked before: the file and the output size
by a pixel vary, so no result cache helps), cold transforms/s with 8 requests in flight, cached hits/s with the
server on one core (`taskset`-style affinity: the server on CPU 0 with one process, the load client on CPU 1),
whether the orientation-6 photo comes out upright (its pixels against the upright picture and against the
stored one), mean bytes and SSIM of the 800x600 results against the upright source resized the same way, and
the peak memory (PSS of the server's processes) under concurrent renders at 8 and 16 in flight.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import itertools
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httptools
import httpx
import numpy as np
import uvloop
from PIL import Image, ImageOps

from bench.common import Config, console, table, verdict
from bench.httpload import Server, free_port, token
from bench.inputs import SPECS, InputSpec, make_input
from bench.quality import luma, ssim

PEERS = Path(__file__).resolve().parent / "peers"
CACHE = Path(os.environ.get("MEDIAHUB_BENCH_CACHE", Path.home() / ".cache" / "mediahub-bench"))
WIDTH, HEIGHT = 800, 600
QUALITY = {"webp": 80, "jpeg": 85}
CONCURRENCY = 8
BURST = 16  # in flight for the second memory figure
# The five 12 MP JPEGs: two of the bench's inputs, three more from the corpus' photos made the same way.
FULL_SPECS = (SPECS["jpeg-12mp"], SPECS["jpeg-12mp-rot6"],
              InputSpec("jpeg-12mp-iphone", "gps_iphone6_hdr_3264x2448.jpg", 4000, 3000, seed=31, source_exif=True),
              InputSpec("jpeg-12mp-landscape", "orient_landscape_1.jpg", 4000, 3000, seed=32),
              InputSpec("jpeg-12mp-portrait", "orient_portrait_1.jpg", 3000, 4000, seed=33))
SMOKE_SPECS = (SPECS["jpeg-1mp-rot6"],)
SIDEWAYS = {"full": "jpeg-12mp-rot6", "smoke": "jpeg-1mp-rot6"}
SSIM_EQUAL = 0.001  # SSIM differences below this count as equal
MEMORY_GROWTH = 1.15  # bounded: the peak with 16 renders in flight at most this times the peak with 8
THUMBOR_KEY = "bench-thumbor-key-0123456789abcdef"
# Every cold request is a transform never asked before: more per item than MAX_STORED_TRANSFORMS lets a site keep.
MEDIAHUB_SETTINGS = {"UPLOAD_RATE_LIMIT": "0", "DEDUP_POLICY": "allow", "MAX_STORED_TRANSFORMS": "100000"}
CLIENT_CPU, SERVER_CPU = 1, 0


@dataclass(frozen=True)
class Transform:
    file: str  # input name
    width: int
    height: int
    fmt: str  # webp | jpeg

    @property
    def quality(self) -> int:
        return QUALITY[self.fmt]


def cold_transforms(files: list[str], fmt: str, first: int, count: int) -> list[Transform]:
    """`count` transforms from number `first` on: the files in turn, each round a pixel wider (then taller), so
    no two are the same and none is the plain 800x600 that the quality and cached rows ask for."""
    out = []
    for number in range(first, first + count):
        step = 1 + number // len(files)
        out.append(Transform(files[number % len(files)], WIDTH + step % 32, HEIGHT + step // 32, fmt))
    return out


# --- the servers -------------------------------------------------------------------------------------------

class Process(Server):
    """A peer's server process on a free loopback port: `command(port)` run in `cwd`, ready once it accepts a
    connection (and `health` answers 200 when given); stopped as `mediahub serve` is."""

    def __init__(self, command: Callable[[int], list[str]], cwd: Path, log: Path, env: dict[str, str] | None = None,
                 health: str | None = None) -> None:  # not Server.__init__: that one starts mediahub
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.health = health
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = log.open("w")
        self.proc = subprocess.Popen(command(self.port), cwd=cwd, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def ready(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
            pass
        return self.health is None or httpx.get(self.base + self.health, timeout=2.0).status_code == 200


def _installed(kind: str, sources: list[Path], install: Callable[[Path], None]) -> Path:
    """A folder under CACHE named after `sources`' contents, made by `install(folder)` once."""
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:12]
    folder = CACHE / f"{kind}-{digest}"
    stamp = folder / ".installed"
    if not stamp.exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        try:
            install(folder)
        except subprocess.CalledProcessError as error:
            raise RuntimeError(f"installing {kind} into {folder} failed:\n{(error.stderr or b'').decode()[-2000:]}")
        stamp.touch()
    return folder


def thumbor_venv() -> Path:
    requirements = PEERS / "thumbor-requirements.txt"

    def install(folder: Path) -> None:
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, capture_output=True)
        subprocess.run([str(folder / "bin" / "pip"), "install", "--quiet", "--no-deps", "-r", str(requirements)],
                       check=True, capture_output=True)

    return _installed("thumbor", [requirements], install)


def ipx_folder() -> Path:
    files = [PEERS / "ipx" / name for name in ("package.json", "package-lock.json", "server.mjs")]

    def install(folder: Path) -> None:
        for path in files:
            shutil.copyfile(path, folder / path.name)
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=folder, check=True, capture_output=True)

    return _installed("ipx", files, install)


class Peer:
    """One server under test: how it starts (all cores, or one process for the cached row), and the GET path of
    a transform."""

    name: str
    in_cached_row = True

    def close(self) -> None:
        """Let go of what `prepare` and `path` opened."""

    def start(self, work: Path, single: bool) -> Server:
        raise NotImplementedError

    def prepare(self, server: Server, files: dict[str, Path]) -> None:
        """Whatever the server needs before the first transform (MediaHub: the uploads)."""

    def path(self, server: Server, transform: Transform) -> str:
        raise NotImplementedError


class Thumbor(Peer):
    def __init__(self, files: Path, respect_orientation: bool = False) -> None:
        self.name = "thumbor RESPECT_ORIENTATION" if respect_orientation else "thumbor"
        self.files = files
        self.respect_orientation = respect_orientation
        self.venv = thumbor_venv()

    def start(self, work: Path, single: bool) -> Server:
        folder = work / self.name.replace(" ", "-")
        folder.mkdir(parents=True, exist_ok=True)
        conf = folder / "thumbor.conf"
        conf.write_text(f"SECURITY_KEY = {THUMBOR_KEY!r}\nALLOW_UNSAFE_URL = False\n"
                        f"LOADER = 'thumbor.loaders.file_loader'\nFILE_LOADER_ROOT_PATH = {str(self.files)!r}\n"
                        f"STORAGE_FILE_STORAGE_ROOT_PATH = {str(folder / 'storage')!r}\n"
                        "RESULT_STORAGE = 'thumbor.result_storages.file_storage'\n"
                        f"RESULT_STORAGE_FILE_STORAGE_ROOT_PATH = {str(folder / 'results')!r}\n"
                        f"RESPECT_ORIENTATION = {self.respect_orientation}\n")
        # --processes 0: one process per core, thumbor's own way to use them (its default is one).
        processes = "1" if single else "0"
        return Process(lambda port: [str(self.venv / "bin" / "thumbor"), "-i", "127.0.0.1", "-p", str(port),
                                     "-c", str(conf), "--processes", processes],
                       folder, folder / f"thumbor-{processes}.log", health="/healthcheck")

    def path(self, server: Server, transform: Transform) -> str:
        url = (f"{transform.width}x{transform.height}/filters:format({transform.fmt}):quality({transform.quality})/"
               f"{transform.file}.jpg")
        signature = base64.urlsafe_b64encode(hmac.new(THUMBOR_KEY.encode(), url.encode(), hashlib.sha1).digest())
        return f"/{signature.decode()}/{url}"


class Ipx(Peer):
    name = "ipx"

    def __init__(self, files: Path) -> None:
        self.files = files
        self.folder = ipx_folder()

    def start(self, work: Path, single: bool) -> Server:
        return Process(lambda port: ["node", "server.mjs", str(self.files), str(port)], self.folder,
                       work / f"ipx-{int(single)}.log")

    def path(self, server: Server, transform: Transform) -> str:
        return (f"/s_{transform.width}x{transform.height},fit_cover,f_{transform.fmt},q_{transform.quality}/"
                f"{transform.file}.jpg")


class BarePyvips(Peer):
    name = "bare pyvips"
    in_cached_row = False  # no result cache: nothing to learn from hitting it again

    def __init__(self, files: Path) -> None:
        self.files = files

    def start(self, work: Path, single: bool) -> Server:
        env = dict(os.environ, PYVIPS_SERVER_ROOT=str(self.files),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(PEERS.parents[1]), os.environ.get("PYTHONPATH")])))
        return Process(lambda port: [sys.executable, "-m", "uvicorn", "bench.peers.pyvips_server:app",
                                     "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
                       PEERS.parents[1], work / f"{self.name.replace(' ', '-')}-{int(single)}.log", env)

    def path(self, server: Server, transform: Transform) -> str:
        return (f"/{transform.file}.jpg?w={transform.width}&h={transform.height}&format={transform.fmt}"
                f"&q={transform.quality}")


class MediaHub(Peer):
    """`mediahub serve` (one process, PIXEL_WORKERS unset) over one SQLite + local store that outlives restarts;
    the files uploaded by an admin (approved at upload, or by the moderation endpoint)."""

    name = "MediaHub"

    def __init__(self) -> None:
        self.items: dict[str, str] = {}  # input name -> media id
        self.root: Path | None = None
        self.clients: dict[str, httpx.Client] = {}  # server base URL -> an admin's client

    def start(self, work: Path, single: bool) -> Server:  # one server process either way: `serve`'s default
        self.root = self.root or work / "mediahub"
        return Server(self.root, MEDIAHUB_SETTINGS)

    def _http(self, server: Server) -> httpx.Client:
        if server.base not in self.clients:
            self.clients[server.base] = httpx.Client(base_url=server.base, timeout=120.0,
                                                     headers={"Authorization": f"Bearer {token()}"})
        return self.clients[server.base]

    def close(self) -> None:
        for client in self.clients.values():
            client.close()

    def prepare(self, server: Server, files: dict[str, Path]) -> None:
        http = self._http(server)
        for number, (name, path) in enumerate(files.items()):
            reply = http.post(f"/v1/media/properties/delivery{number}/photos",
                              files={"file": (path.name, path.read_bytes(), "image/jpeg")})
            if reply.status_code != 201:
                raise RuntimeError(f"MediaHub upload of {path.name}: {reply.status_code} {reply.text[:300]}")
            item = reply.json()
            if item["moderation_status"] != "approved":
                http.post(f"/v1/media/{item['id']}/moderation", json={"status": "approved"}).raise_for_status()
            self.items[name] = item["id"]
        # The upload's jobs (WebP, AVIF renditions) finish first: they would take cores from the rows.
        deadline = time.monotonic() + 300
        for media_id in self.items.values():
            while (status := http.get(f"/v1/media/{media_id}").raise_for_status().json()["processing_status"]) \
                    not in ("ready", "failed"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"MediaHub: item {media_id} still {status} after 300 s")
                time.sleep(0.1)

    def path(self, server: Server, transform: Transform) -> str:
        # The centre, as the peers crop: the same pixels for the bytes and SSIM rows (the focal point is
        # found at upload, so focal crops cost the same).
        options = {"width": transform.width, "height": transform.height, "fit": "cover", "gravity": "center",
                   "format": transform.fmt, "quality": transform.quality}
        reply = self._http(server).post(f"/v1/media/{self.items[transform.file]}/transform-url", json=options)
        if reply.status_code != 200:
            raise RuntimeError(f"MediaHub transform-url: {reply.status_code} {reply.text[:300]}")
        url = urlsplit(reply.json()["url"])
        return url.path + (f"?{url.query}" if url.query else "")


@contextmanager
def on_cpus(cpus: set[int]) -> Iterator[None]:
    """This thread (and every process it starts meanwhile) on `cpus` only."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


# --- the load client ---------------------------------------------------------------------------------------

@dataclass
class Reply:
    status: int
    ms: float
    size: int


class _Response:
    """httptools' callbacks for one response."""

    def __init__(self) -> None:
        self.size = 0
        self.complete = False

    def on_body(self, body: bytes) -> None:
        self.size += len(body)

    def on_message_complete(self) -> None:
        self.complete = True


async def _connection_loop(port: int, next_path: Callable[[], str | None], replies: list[Reply]) -> None:
    """One keep-alive connection sending GETs one after another until `next_path` gives None."""
    reader = writer = None
    try:
        while (path := next_path()) is not None:
            for attempt in (1, 2):  # a keep-alive connection the server closed meanwhile is opened again once
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                start = time.perf_counter()
                writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
                response = _Response()
                parser = httptools.HttpResponseParser(response)
                received = False
                while not response.complete:
                    data = await reader.read(262144)
                    if not data:
                        break
                    received = True
                    parser.feed_data(data)
                if response.complete:
                    replies.append(Reply(parser.get_status_code(), (time.perf_counter() - start) * 1000,
                                         response.size))
                    if not parser.should_keep_alive():
                        writer.close()
                        writer = None
                    break
                writer.close()
                writer = None
                if received or attempt == 2:
                    raise RuntimeError(f"the server closed the connection during GET {path}")
    finally:
        if writer is not None:
            writer.close()


def load(server: Server, paths: list[str], connections: int, seconds: float | None = None) -> tuple[list[Reply], float]:
    """GET `paths` over `connections` keep-alive connections, each path once (or round and round for `seconds`);
    the replies and the wall time."""
    cycle = itertools.cycle(paths) if seconds else iter(paths)
    deadline = time.perf_counter() + (seconds or 0)

    def next_path() -> str | None:
        if seconds and time.perf_counter() >= deadline:
            return None
        return next(cycle, None)

    async def main() -> list[Reply]:
        replies: list[Reply] = []
        await asyncio.gather(*(_connection_loop(server.port, next_path, replies) for _ in range(connections)))
        return replies

    start = time.perf_counter()
    replies = uvloop.run(main())
    wall = time.perf_counter() - start
    failed = [r for r in replies if r.status != 200]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(replies)} GETs failed on {server.base}, first status "
                           f"{failed[0].status}")
    return replies, wall


# --- memory --------------------------------------------------------------------------------------------------

def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as fh:
                    parent = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    tree, frontier = [root], [root]
    while frontier:
        frontier = [child for pid in frontier for child in children.get(pid, [])]
        tree += frontier
    return tree


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass  # the process ended between the listing and the read
    return 0


@contextmanager
def peak_memory(server: Server, interval: float = 0.05) -> Iterator[list[int]]:
    """Sample the PSS (KiB) of the server's processes while the block runs; the peak ends up in the list."""
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], sum(_pss_kib(pid) for pid in process_tree(server.proc.pid)))
            stop.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()


# --- pixels ------------------------------------------------------------------------------------------------

class References:
    """Each input's picture upright (EXIF applied) and as stored, resized to cover an output's size, as luma."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files
        self.cache: dict[tuple[str, bool, int, int], np.ndarray] = {}

    def covered(self, name: str, upright: bool, width: int, height: int) -> np.ndarray:
        key = (name, upright, width, height)
        if key not in self.cache:
            with Image.open(self.files[name]) as image:
                picture = (ImageOps.exif_transpose(image) if upright else image).convert("RGB")
            scale = max(width / picture.width, height / picture.height)
            size = (max(width, round(picture.width * scale)), max(height, round(picture.height * scale)))
            self.cache[key] = luma(picture.resize(size, Image.Resampling.LANCZOS))
        return self.cache[key]

    def match(self, name: str, output: Image.Image, upright: bool) -> float:
        """SSIM of the output against the reference crop it matches best (any crop offset: focal and smart
        crops need not be centred)."""
        mine = luma(output)
        reference = self.covered(name, upright, *output.size)
        spare_rows, spare_cols = reference.shape[0] - mine.shape[0], reference.shape[1] - mine.shape[1]

        def error(dy: int, dx: int, ref: np.ndarray, out: np.ndarray) -> float:
            return float(np.mean((ref[dy:dy + out.shape[0], dx:dx + out.shape[1]] - out) ** 2))

        # Coarse (every 4th pixel) first, then every offset near the best.
        coarse = [(dy, dx) for dy in range(spare_rows // 4 + 1) for dx in range(spare_cols // 4 + 1)]
        dy, dx = min(coarse, key=lambda o: error(*o, reference[::4, ::4], mine[::4, ::4]))
        fine = [(y, x) for y in range(max(0, 4 * dy - 4), min(spare_rows, 4 * dy + 4) + 1)
                for x in range(max(0, 4 * dx - 4), min(spare_cols, 4 * dx + 4) + 1)]
        y, x = min(fine, key=lambda o: error(*o, reference, mine))
        return ssim(reference[y:y + mine.shape[0], x:x + mine.shape[1]], mine)

    def upright(self, name: str, output: Image.Image) -> tuple[bool, float]:
        """(comes out upright, SSIM against the reference in the orientation it came out in)."""
        with Image.open(self.files[name]) as image:
            orientation = image.getexif().get(0x0112, 1)
        straight = self.match(name, output, upright=True)
        if orientation == 1:
            return True, straight
        stored = self.match(name, output, upright=False)
        return straight > stored, max(straight, stored)


# --- the run -------------------------------------------------------------------------------------------------

@dataclass
class Figures:
    latency: dict[str, list[float]] = field(default_factory=lambda: {fmt: [] for fmt in QUALITY})
    rate: dict[str, list[float]] = field(default_factory=lambda: {fmt: [] for fmt in QUALITY})
    quality: dict[str, list[tuple[int, float]]] = field(default_factory=lambda: {fmt: [] for fmt in QUALITY})
    upright: bool | None = None
    memory: dict[int, int] = field(default_factory=dict)  # in flight -> peak PSS KiB
    hits: float | None = None


def _inputs(cfg: Config) -> dict[str, Path]:
    folder = cfg.work / "delivery-files"
    files = {}
    for spec in SMOKE_SPECS if cfg.smoke else FULL_SPECS:
        made = cfg.inputs.get(spec.name) or make_input(spec, folder)
        files[spec.name] = folder / f"{spec.name}.jpg"
        if made != files[spec.name]:
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(made, files[spec.name])  # every peer serves the files of one folder
    return files


def run(cfg: Config) -> None:
    files = _inputs(cfg)
    names = list(files)
    folder = next(iter(files.values())).parent
    sideways = SIDEWAYS["smoke" if cfg.smoke else "full"]
    peers: list[Peer] = [] if cfg.smoke else [Thumbor(folder), Ipx(folder)]
    peers += [BarePyvips(folder), MediaHub()]
    respecting = None if cfg.smoke else Thumbor(folder, respect_orientation=True)
    figures = {peer.name: Figures() for peer in peers}
    if respecting:
        figures[respecting.name] = Figures()
    references = References(files)
    rounds = 1 if cfg.smoke else 3
    per_round = CONCURRENCY if cfg.smoke else 5 * CONCURRENCY
    work = cfg.work / "delivery"
    servers: dict[str, Server] = {}
    try:
        for peer in [*peers, respecting] if respecting else peers:
            servers[peer.name] = peer.start(work, single=False)
        for peer in [*peers, respecting] if respecting else peers:
            servers[peer.name].wait_ready()
            peer.prepare(servers[peer.name], files)
        if respecting:
            _quality(respecting, servers[respecting.name], [sideways], ("jpeg",), references, figures)
            servers.pop(respecting.name).stop()
        for peer in peers:
            _quality(peer, servers[peer.name], names, tuple(QUALITY), references, figures)
        made = dict.fromkeys(figures, 0)  # cold transforms asked of each server so far: every server gets the same

        def transforms(peer: Peer, fmt: str, count: int) -> list[str]:
            first, made[peer.name] = made[peer.name], made[peer.name] + count
            return [peer.path(servers[peer.name], t) for t in cold_transforms(names, fmt, first, count)]

        for rep in range(rounds):
            order = peers[rep % len(peers):] + peers[:rep % len(peers)]
            for peer in order:  # one at a time, in rotating order: the machine's noise hits every server alike
                for fmt in QUALITY:
                    replies, _ = load(servers[peer.name], transforms(peer, fmt, len(names)), 1)
                    figures[peer.name].latency[fmt] += [r.ms for r in replies]
            for peer in order:
                for fmt in QUALITY:
                    paths = transforms(peer, fmt, per_round)
                    with peak_memory(servers[peer.name]) as peak:
                        replies, wall = load(servers[peer.name], paths, CONCURRENCY)
                    figures[peer.name].rate[fmt].append(len(replies) / wall)
                    figures[peer.name].memory[CONCURRENCY] = max(figures[peer.name].memory.get(CONCURRENCY, 0),
                                                                 peak[0])
        for peer in peers:
            paths = transforms(peer, "jpeg", BURST if cfg.smoke else 2 * BURST)
            with peak_memory(servers[peer.name]) as peak:
                load(servers[peer.name], paths, BURST)
            figures[peer.name].memory[BURST] = peak[0]
    finally:
        for server in servers.values():
            server.stop()
    try:
        _cached(cfg, work, peers, files, figures)
    finally:
        for peer in peers:
            peer.close()
    _print(peers, figures, respecting, sideways, len(names), cfg.smoke)


def _quality(peer: Peer, server: Server, names: list[str], formats: tuple[str, ...], references: References,
             figures: dict[str, Figures]) -> None:
    """The plain 800x600 of every file and format (rendered now, cached afterwards where the server caches):
    bytes, SSIM, and for the sideways photo whether it comes out upright."""
    with httpx.Client(base_url=server.base, timeout=120.0) as http:
        for name in names:
            for fmt in formats:
                reply = http.get(peer.path(server, Transform(name, WIDTH, HEIGHT, fmt)))
                if reply.status_code != 200:
                    raise RuntimeError(f"{peer.name}: {name} as {fmt}: {reply.status_code} {reply.text[:300]}")
                output = Image.open(io.BytesIO(reply.content))
                output.load()
                if output.size != (WIDTH, HEIGHT) or output.format.lower() != fmt:
                    raise RuntimeError(f"{peer.name}: {name} as {fmt} came out {output.format} {output.size}")
                upright, score = references.upright(name, output)
                figures[peer.name].quality[fmt].append((len(reply.content), score))
                if fmt == "jpeg" and name in SIDEWAYS.values():
                    figures[peer.name].upright = upright


def _cached(cfg: Config, work: Path, peers: list[Peer], files: dict[str, Path], figures: dict[str, Figures]) -> None:
    """Each server again with one process on CPU 0, the client on CPU 1: hits/s on the plain 800x600s (rendered
    by `_quality`, stored by the servers that store results)."""
    seconds = 1.0 if cfg.smoke else 5.0
    for peer in peers:
        if not peer.in_cached_row:
            continue
        with on_cpus({SERVER_CPU}):
            server = peer.start(work, single=True)
        try:
            server.wait_ready()
            paths = [peer.path(server, Transform(name, WIDTH, HEIGHT, fmt)) for name in files for fmt in QUALITY]
            with on_cpus({CLIENT_CPU}):
                load(server, paths, 4, seconds=0.3 if cfg.smoke else 1.0)  # warm-up: connections, first hits
                replies, wall = load(server, paths, 16, seconds)
            figures[peer.name].hits = len(replies) / wall
        finally:
            server.stop()


def _print(peers: list[Peer], figures: dict[str, Figures], respecting: Peer | None, sideways: str, files: int,
           smoke: bool) -> None:
    names = [peer.name for peer in peers]
    mine = figures["MediaHub"]
    others = [name for name in names if name != "MediaHub"]

    def median(values: list[float]) -> float | None:
        return statistics.median(values) if values else None

    def pair(values: list[float | None], digits: int = 0) -> str:
        return " / ".join("-" if v is None else f"{v:,.{digits}f}" for v in values)

    def mean_bytes(f: Figures, fmt: str) -> float | None:
        return statistics.mean(b for b, _ in f.quality[fmt]) / 1024 if f.quality[fmt] else None

    def mean_ssim(f: Figures, fmt: str) -> float | None:
        return statistics.mean(s for _, s in f.quality[fmt]) if f.quality[fmt] else None

    rows = [("cold p50 ms, WebP / JPEG", [pair([median(figures[n].latency[fmt]) for fmt in QUALITY]) for n in names],
             "", "", None)]

    rates = {n: [median(figures[n].rate[fmt]) for fmt in QUALITY] for n in names}
    checks, against = [], []
    for peer, factor in (("ipx", 1.0), ("thumbor", 2.0)):
        if peer in rates and all(rates[peer]) and all(rates["MediaHub"]):
            shares = [ours / theirs for ours, theirs in zip(rates["MediaHub"], rates[peer], strict=True)]
            checks += [share >= factor for share in shares]
            against.append(f"{pair(shares, 2)}x {peer}")
    rows.append((f"cold transforms/s, {CONCURRENCY} in flight, WebP / JPEG", [pair(rates[n], 1) for n in names],
                 ", ".join(against), ">= 1x ipx, >= 2x thumbor", all(checks) if checks else None))

    thumbor_hits = figures["thumbor"].hits if "thumbor" in figures else None
    share = mine.hits / thumbor_hits if mine.hits and thumbor_hits else None
    hits = ["-" if figures[n].hits is None else f"{figures[n].hits:,.1f}" for n in names]
    rows.append(("cached hits/s, 1 core", hits,
                 "" if share is None else f"{share:.2f}x thumbor", ">= 1x thumbor",
                 None if share is None else share >= 1))

    def upright(n: str) -> str:
        text = "-" if figures[n].upright is None else "yes" if figures[n].upright else "no"
        if n == "thumbor" and respecting and figures[respecting.name].upright is not None:
            text += f"; {'yes' if figures[respecting.name].upright else 'no'} with RO"
        return text

    rows.append((f"EXIF 6 photo upright ({sideways})", [upright(n) for n in names], "", "yes", mine.upright))

    for fmt in QUALITY:
        smallest = min((n for n in others if figures[n].quality[fmt]), key=lambda n: mean_bytes(figures[n], fmt),
                       default=None)
        ok, versus = None, ""
        if smallest and mine.quality[fmt]:
            size = mean_bytes(mine, fmt) / mean_bytes(figures[smallest], fmt)
            gap = mean_ssim(mine, fmt) - mean_ssim(figures[smallest], fmt)
            ok = size <= 1 and gap >= -SSIM_EQUAL
            versus = f"{size:.3f}x bytes, SSIM {gap:+.4f} vs {smallest}"
        rows.append((f"{fmt} q{QUALITY[fmt]}: mean KiB @ SSIM",
                     [f"{mean_bytes(figures[n], fmt):,.1f} @ {mean_ssim(figures[n], fmt):.4f}"
                      if figures[n].quality[fmt] else "-" for n in names],
                     versus, "<= smallest peer's, SSIM >=", ok))

    growth = (mine.memory[BURST] / mine.memory[CONCURRENCY]
              if mine.memory.get(CONCURRENCY) and mine.memory.get(BURST) else None)
    rows.append((f"peak PSS MiB, {CONCURRENCY} / {BURST} in flight",
                 [pair([figures[n].memory[k] / 1024 if k in figures[n].memory else None for k in (CONCURRENCY, BURST)])
                  for n in names],
                 "" if growth is None else f"{growth:.2f}x from {CONCURRENCY} to {BURST}",
                 f"<= {MEMORY_GROWTH:g}x (bounded)", None if growth is None else growth <= MEMORY_GROWTH))

    title = (f"Delivery: {WIDTH}x{HEIGHT} cover crops of {files} JPEG(s), WebP q80 and JPEG q85, every server on this "
             f"machine in one run{' (smoke: thumbor and ipx skipped)' if smoke else ''}\n"
             "  thumbor 7.8: signed URLs, file result storage, --processes 0 (1 for cached); "
             "RO: RESPECT_ORIENTATION on\n"
             "  ipx 3.1: sharp's defaults; bare pyvips: thumbnail_buffer + crop under uvicorn\n"
             "  MediaHub: `mediahub serve`, PIXEL_WORKERS unset, centre crops as the peers; "
             "every hit checks signature and moderation\n"
             "  cold: a transform never asked before; cached: the server on CPU 0 in one process, the client on CPU 1\n"
             "  SSIM: bench.quality.ssim (numpy/scipy, luma) against the source resized to cover, at the best crop\n"
             "    offset, upright (as stored for a result that came out sideways)\n"
             "  memory: PSS summed over the server's processes, sampled every 50 ms during the cold renders")
    t = table(title, ["row", *names, "MediaHub vs peers", "goal", "verdict"])
    for label, values, versus, goal, ok in rows:
        t.add_row(label, *values, versus, goal, verdict(ok))
    console.print(t)
