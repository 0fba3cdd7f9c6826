"""Section `tagging`: the bundled tagger (pipeline/tagger.py) on the rooms dev set (../shared/rooms).

Per room label: precision, recall and the share answered `unknown`, by the shipped room model (data/rooms.json)
and by its fitting procedure (bench/rooms_fit.py) cross-validated: leave-one-out around the whole procedure,
so each photo is answered by a model whose L2 strength, weights and thresholds were all chosen on the other
86 (a model or threshold that only fits its own photos shows here); whether what the procedure fits on the
whole set is what is shipped; how often the pictures of the corpus, none of them a listing room, get a room.
Then the cost of the tag step (decode and inference, one thread) per image, on the rooms photos, on full-size
phone photos of the corpus and on their 800 px renditions (what a job reads when it tags the `medium`
variant instead of the original), and the RSS the tagger adds to a fresh process. Last, what tagging costs an
upload: two `mediahub serve` processes side by side, one tagging (its in-process runner tags each listing photo
after the 201) and one not; one client uploads the photos back to back to one, waits for its jobs to end, then
does the same to the other, in turn; the ratio of their upload latencies, and how many of the uploads the
tagging server did tag. No figure is asserted.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from bench import rooms_fit
from bench.common import Config, console, ms, ratio, table, verdict
from bench.httpload import Server, p, token
from bench.corpus import CORPUS_DIR, ROOMS_DIR, manifest, object_judgements, rooms_manifest
from mediahub.config import Settings
from mediahub.pipeline.scene import ObjectTable, room_features
from mediahub.pipeline.tagger import build_tagger
from mediahub.pipeline.tagging import UNKNOWN

GOAL_PRECISION = rooms_fit.GOAL_PRECISION
GOAL_MS = 30.0
GOAL_RSS_MIB = 150.0
GOAL_UPLOAD_RATIO = 1.05  # tagging's upload latency / without: no effect beyond the noise of one run
SETTLE_SECONDS = 120.0  # the longest wait for one server's jobs to end
UPLOAD_ROUNDS = 6  # even: each server goes first in as many rounds
PHONE_ORIGINALS = "phone photos of the corpus (8-16 MP JPEG, HEIC)"
PHONE_PHOTOS = ("images/good/jpeg_large_jolla_3264x2448.jpg", "images/good/gps_iphone6_hdr_3264x2448.jpg",
                "images/good/heic_iphone13_3024x4032.heic", "images/good/heic_gps_nokia_hdr_4608x3456.heif")


def _label_rows(rooms: tuple[str, ...], labels: list[str], answers: list[str]) -> dict[str, tuple[int, int, int, int]]:
    """Per room: photos, answered that room, right among those, answered unknown."""
    rows = {}
    for room in rooms:
        answered = [label for label, answer in zip(labels, answers) if answer == room]
        rows[room] = (labels.count(room), len(answered), answered.count(room),
                      sum(1 for label, answer in zip(labels, answers) if label == room and answer == UNKNOWN))
    return rows


def _precision(right: int, answered: int) -> str:
    return f"{right}/{answered} = {right / answered:.2f}" if answered else "- (never answered)"


def _ok(right: int, answered: int) -> bool | None:
    return None if not answered else right / answered >= GOAL_PRECISION


def _quality(tagger, cfg: Config) -> None:
    model = tagger.room_model
    photos = rooms_manifest()
    labels = [photo["label"] for photo in photos]
    probabilities = np.stack([tagger.classifier.probabilities(ROOMS_DIR / photo["path"]) for photo in photos])
    shipped = [model.decide(row)[0] for row in model.scores(probabilities)]
    features = room_features(probabilities, model.floor)
    truth = np.array([model.rooms.index(label) for label in labels])
    indices, strengths = rooms_fit.cross_validated(features, truth, len(model.rooms))
    crossed = [model.rooms[index] if index >= 0 else UNKNOWN for index in indices]
    t = table(f"Tagging: room type on the rooms dev set ({len(photos)} photos), {tagger.model}; "
              f"goal precision >= {GOAL_PRECISION} where answered, else unknown",
              ["label", "photos", "precision (shipped)", "recall", "unknown", "goal",
               "precision (leave-one-out)", "recall", "unknown", "goal"])
    ours, theirs = _label_rows(model.rooms, labels, shipped), _label_rows(model.rooms, labels, crossed)
    for room in model.rooms:
        count, answered, right, unknown = ours[room]
        _, cv_answered, cv_right, cv_unknown = theirs[room]
        t.add_row(room, str(count), _precision(right, answered), f"{right}/{count}", f"{unknown / count:.0%}",
                  verdict(_ok(right, answered)), _precision(cv_right, cv_answered), f"{cv_right}/{count}",
                  f"{cv_unknown / count:.0%}", verdict(_ok(cv_right, cv_answered)))
    right = sum(label == answer for label, answer in zip(labels, shipped))
    cv_right = sum(label == answer for label, answer in zip(labels, crossed))
    t.add_row("all", str(len(labels)), f"{right} right", "", f"{shipped.count(UNKNOWN) / len(labels):.0%}", "",
              f"{cv_right} right", "", f"{crossed.count(UNKNOWN) / len(labels):.0%}", "")
    console.print(t)
    chosen = {strength: strengths.count(strength) for strength in sorted(set(strengths))}
    console.print("L2 strength chosen by the leave-one-out runs: "
                  + ", ".join(f"{strength} {count}x" for strength, count in chosen.items()), markup=False)
    fitted = rooms_fit.tune(features, truth, len(model.rooms))
    same = (fitted.thresholds == model.thresholds and np.allclose(fitted.weights, model.weights, rtol=1e-4, atol=1e-6)
            and np.allclose(fitted.bias, model.bias, rtol=1e-4, atol=1e-6))
    console.print(f"fitted on the whole dev set: strength {fitted.strength}, thresholds "
                  + ", ".join(f"{room} {threshold}" for room, threshold in zip(model.rooms, fitted.thresholds))
                  + (" (as shipped)" if same else " (NOT as shipped: `python -m bench.rooms_fit` rewrites "
                     "data/rooms.json)"), markup=False)
    others = [entry for entry in manifest()["files"] if entry["expected"] == "accept"
              and not entry["path"].startswith("video/")]
    roomed, objected = {}, {}
    for entry in others:
        room, *things = tagger.tag(CORPUS_DIR / entry["path"])
        name = entry["path"].rsplit("/", 1)[-1]
        if room.label != UNKNOWN:
            roomed[name] = room.label
        if things:
            objected[name] = "+".join(thing.label for thing in things)
    for what, found in (("a room", roomed), ("object tags", objected)):
        console.print(f"corpus test pictures (few are rooms) given {what}: {len(found)} of {len(others)}"
                      + (": " + ", ".join(f"{name} {tags}" for name, tags in found.items()) if found else ""),
                      markup=False)
    _objects(tagger.object_table, photos, probabilities, shipped)


def _objects(objects: ObjectTable, photos: list[dict], probabilities: np.ndarray, rooms: list[str]) -> None:
    """Precision of the shipped object table on the dev set, by the judgments of bench/object_judgements.json."""
    judged = object_judgements()
    tallies: dict[str, list[int]] = {}  # tag -> [given, right, not judged]
    for photo, row, room in zip(photos, probabilities, rooms):
        for label, _ in objects.tags(row, room):
            verdict_of = judged.get((photo["path"], label))
            tally = tallies.setdefault(label, [0, 0, 0])
            tally[0] += 1
            tally[1] += verdict_of is True
            tally[2] += verdict_of is None
    t = table(f"Tagging: object tags on the rooms dev set, {objects.version}, judged by eye "
              f"(bench/object_judgements.json; precision only), goal precision >= {GOAL_PRECISION}",
              ["tag", "given", "right", "precision", "not judged", "goal"])
    for label, (given, right, unjudged) in sorted(tallies.items()):
        t.add_row(label, str(given), str(right), f"{right / given:.2f}", str(unjudged),
                  verdict(None if unjudged else right / given >= GOAL_PRECISION))
    given, right, unjudged = (sum(tally[n] for tally in tallies.values()) for n in range(3))
    t.add_row("all", str(given), str(right), f"{right / given:.2f}" if given else "-", str(unjudged),
              verdict(None if unjudged or not given else right / given >= GOAL_PRECISION))
    console.print(t)


def _timings(tagger, cfg: Config) -> None:
    rounds = 1 if cfg.smoke else 3
    phones = [CORPUS_DIR / name for name in PHONE_PHOTOS]
    sets = {"rooms dev set photos": [ROOMS_DIR / photo["path"] for photo in rooms_manifest()],
            PHONE_ORIGINALS: phones,
            "the same as 800 px JPEG renditions": _renditions(phones, cfg.work / "tagging")}
    t = table(f"Tagging: ms per image of the tag step (decode + inference, 1 thread), goal <= {GOAL_MS:.0f} ms",
              ["images", "count", "median ms", "p90 ms", "max ms", "goal"])
    tagger.tag(sets["rooms dev set photos"][0])  # the session is made on first use: not an image's cost
    for name, paths in sets.items():
        samples = []
        for _ in range(rounds):
            for path in paths:
                began = time.perf_counter()
                tagger.tag(path)
                samples.append((time.perf_counter() - began) * 1000)
        samples.sort()
        p90 = samples[min(len(samples) - 1, int(len(samples) * 0.9))]
        read_by_jobs = name != PHONE_ORIGINALS  # a job reads a rendition of those, never the original
        t.add_row(name, str(len(paths)), ms(statistics.median(samples)), ms(p90), ms(samples[-1]),
                  verdict(statistics.median(samples) <= GOAL_MS if read_by_jobs else None))
    console.print(t)


def _renditions(paths: list[Path], folder: Path) -> list[Path]:
    """Each picture upright in 800 px at most, JPEG quality 85: the `medium` variant's size."""
    from mediahub.pipeline import vips

    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for path in paths:
        target = folder / f"{path.stem}-800.jpg"
        pillow = vips.to_pillow(vips.from_pillow(_upright_rgb(path)).thumbnail_image(800))
        pillow.save(target, quality=85)
        made.append(target)
    return made


def _upright_rgb(path: Path):
    import pillow_heif
    from PIL import Image, ImageOps

    pillow_heif.register_heif_opener()
    with Image.open(path) as image:
        return ImageOps.exif_transpose(image).convert("RGB")


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def rss_probe(warm: str, paths: list[str]) -> None:
    """Child process: RSS of a worker's imports (`warm` "1": after decoding `paths` as the tag step does, as a
    worker that has handled pictures already), then after building the tagger and tagging `paths`."""
    import gc

    from mediahub.pipeline import image  # noqa: F401 - the pipeline a worker has loaded anyway
    from mediahub.pipeline import vips
    from mediahub.pipeline.classifier import model_input
    from mediahub.pipeline.options import image_limits

    settings = Settings(_env_file=None)
    vips.module()
    if warm == "1":
        for path in paths:
            model_input(Path(path), image_limits(settings))
    gc.collect()
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # VmHWM from here
    tagger, status = build_tagger(settings)
    assert tagger is not None, status
    for path in paths:
        tagger.tag(Path(path))
    gc.collect()
    print(json.dumps({"before": before, "after": _status_kib("VmRSS"), "peak": _status_kib("VmHWM")}))


def _rss(cfg: Config) -> None:
    # What a tagging job reads: listing photos, and a phone photo's rendition (never a phone original).
    paths = [str(ROOMS_DIR / photo["path"]) for photo in rooms_manifest()]
    paths += [str(path) for path in _renditions([CORPUS_DIR / name for name in PHONE_PHOTOS], cfg.work / "rss")]
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    t = table(f"Tagging: RSS the tagger adds to a fresh process (onnxruntime, the session, the tag steps of "
              f"{len(paths)} images), goal <= {GOAL_RSS_MIB:.0f} MiB",
              ["process", "before MiB", "added after", "goal", "added at the peak", "goal"])
    for warm, name in (("0", "cold: the pipeline's imports only"),
                       ("1", "warm: those images decoded once before")):
        done = subprocess.run([sys.executable, "-c", "import sys; from bench.tagging import rss_probe; "
                               "rss_probe(sys.argv[1], sys.argv[2:])", warm, *paths], cwd=root, env=env,
                              capture_output=True, text=True, timeout=600, check=True)
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        added = (figures["after"] - figures["before"]) / 1024
        peak = (figures["peak"] - figures["before"]) / 1024
        t.add_row(name, f"{figures['before'] / 1024:,.0f}", f"{added:,.0f}", verdict(added <= GOAL_RSS_MIB),
                  f"{peak:,.0f}", verdict(peak <= GOAL_RSS_MIB))
    console.print(t)


def run(cfg: Config) -> None:
    settings = Settings(_env_file=None)
    tagger, status = build_tagger(settings)
    if tagger is None:
        message = f"Tagging: no tagger ({status}; MODELS_DIR={settings.models_dir}): `make install` installs the model"
        if os.environ.get("CI") == "true":
            raise RuntimeError(message)
        console.print(message + "; section skipped", markup=False)
        return
    _quality(tagger, cfg)
    _timings(tagger, cfg)
    _rss(cfg)
    _upload_latency(settings, cfg)


def _upload_latency(settings: Settings, cfg: Config) -> None:
    photos = [ROOMS_DIR / photo["path"] for photo in rooms_manifest()][: 8 if cfg.smoke else None]
    photos += [CORPUS_DIR / name for name in PHONE_PHOTOS[: 1 if cfg.smoke else None]]
    common = {"UPLOAD_RATE_LIMIT": "0", "DEDUP_POLICY": "allow"}
    models = str(settings.models_dir.resolve())
    servers = {"tagging": Server(cfg.work / "upload-tagging", common | {"TAGGING_ENABLED": "true",
                                                                        "MODELS_DIR": models}),
               "no tagging": Server(cfg.work / "upload-plain", common | {"TAGGING_ENABLED": "false"})}
    clients: dict[str, httpx.Client] = {}
    latencies: dict[tuple[str, str], list[float]] = {}
    made: list[int] = []
    tagged = 0
    try:
        for server in servers.values():
            server.wait_ready()
        clients = {name: httpx.Client(base_url=server.base, timeout=120.0,
                                      headers={"Authorization": f"Bearer {token()}"})
                   for name, server in servers.items()}
        rounds = 1 if cfg.smoke else UPLOAD_ROUNDS
        bodies = [path.read_bytes() for path in photos]  # read once, before any clock runs
        for number in range(rounds + 1):  # the first round warms both servers up: not counted
            for name in list(clients) if number % 2 else list(clients)[::-1]:
                ids = []
                for index, (path, body) in enumerate(zip(photos, bodies)):
                    began = time.perf_counter()
                    reply = clients[name].post(f"/v1/media/properties/tag{number}-{index}/photos",
                                               files={"file": (path.name, body, "application/octet-stream")})
                    took = (time.perf_counter() - began) * 1000
                    if reply.status_code != 201:
                        raise RuntimeError(f"upload of {path.name} to {name}: {reply.status_code} {reply.text[:300]}")
                    ids.append(reply.json()["id"])
                    if number:
                        kind = "phone photo" if path.parent == CORPUS_DIR / "images" / "good" else "listing photo"
                        latencies.setdefault((kind, name), []).append(took)
                # The server's jobs end before the other server's uploads start: each pays only for its own.
                done = _settled(clients[name], ids, tags=name == "tagging")
                if name == "tagging" and number:
                    made += ids
                    tagged += done
    finally:
        for client in clients.values():
            client.close()
        for server in servers.values():
            server.stop()
    t = table("Tagging: what it costs an upload (ms until the 201; one client uploads the photos back to back to a "
              "server that tags (in-process runner), then to one that does not, in turn, each server's jobs ending "
              f"before the other's turn), goal tagging/without <= {GOAL_UPLOAD_RATIO:g}x",
              ["photos", "n", "without p50", "tagging p50", "tagging/without", "without p90", "tagging p90", "goal"])
    for kind in sorted({kind for kind, _ in latencies}):
        plain, tagging = latencies[(kind, "no tagging")], latencies[(kind, "tagging")]
        share = statistics.median(tagging) / statistics.median(plain)
        t.add_row(kind, str(len(plain)), ms(statistics.median(plain)), ms(statistics.median(tagging)), ratio(share),
                  ms(p(plain, 0.9)), ms(p(tagging, 0.9)), verdict(share <= GOAL_UPLOAD_RATIO))
    console.print(t)
    console.print(f"uploads the tagging server tagged (a room tag within {SETTLE_SECONDS:g} s): "
                  f"{tagged} of {len(made)}", markup=False)


def _settled(client: httpx.Client, media_ids: list[int], tags: bool) -> int:
    """Wait until each item is ready (its jobs done) and, with `tags`, has its room tag; how many got one."""
    deadline = time.monotonic() + SETTLE_SECONDS
    tagged = 0
    for media_id in media_ids:
        while True:
            item = client.get(f"/v1/media/{media_id}").raise_for_status().json()
            has_room = any(tag["kind"] == "room" for tag in item["machine_tags"])
            if item["processing_status"] == "ready" and (has_room or not tags):
                tagged += has_room
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
    return tagged
