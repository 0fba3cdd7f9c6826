"""Section `library`: the web library's entity page at 10^4 items in one entity, on the server and in a browser.

    python -m bench library [--smoke]

For SQLite (the embedded default) and PostgreSQL (a database of its own), `mediahub serve` runs over a
library holding one builder portfolio of 10^4 items (`--smoke`: 10^3) among 10^4 items of other
entities, each item with three variant rows; 60 real thumbnail files stand behind them (item i shows
file i mod 60, so the first page's thumbnails are distinct requests). One keep-alive client then
sends, interleaved round by round: the entity page as its owner (every status) and as a stranger
(approved only), the page's "show more" of the last items (a keyset cursor deep in the portfolio),
and the API's JSON list of the same items (a page's worth) as the owner, the same data without the
page around it: its ratio shows what rendering costs. p50 and p99 of what the client waits for on loopback (an upper
bound of the server's time). Then Debian's chromium (Playwright) loads the page as the owner with
an empty cache: first contentful paint, the requests the page makes until the network is quiet,
and how many of those are thumbnails (at most a few at a time: library.js).
"""

from __future__ import annotations

import io
import re
import secrets
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from sqlalchemy import create_engine, insert, select

from bench.common import Config, console, scratch_database, table, verdict
from bench.httpload import SECRET, Server, p
from mediahub.api.auth import issue_token
from mediahub.api.library.pages.entity import PAGE_SIZE
from mediahub.config import Settings
from mediahub.db.models import MediaItem, MediaVariant

GOAL_P99_MS = 100.0
ENTITY = ("builder", "B-BIG", "portfolio")
OWNER = "USR-OWNER"
FILES = 60  # distinct thumbnail objects
FULL_ITEMS, SMOKE_ITEMS = 10**4, 10**3
OTHER_ITEMS = 10**4
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NEXT_CURSOR = re.compile(r'data-next="([^"]+)"')


def _token(sub: str, *roles: str) -> str:
    settings = Settings(_env_file=None, jwt_secret=SECRET)
    return issue_token(settings, sub, roles=roles or ("user",), grants=(f"{ENTITY[0]}:{ENTITY[1]}",)
                       if sub == OWNER else (), ttl=6 * 3600)


def _thumbnail(index: int) -> bytes:
    hue = (index * 37) % 255
    picture = Image.new("RGB", (150, 150), (hue, 255 - hue, (hue * 3) % 255))
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=80)
    return out.getvalue()


def _rows(count: int, entity: tuple[str, str, str], first_id: int) -> tuple[list[dict], list[dict]]:
    """Items of one entity field in gallery order, 90 % approved, and three variant rows each."""
    entity_type, entity_id, field = entity
    start = datetime(2024, 1, 1, tzinfo=UTC)
    items, variants = [], []
    for n in range(count):
        media_id = first_id + n
        thumb = f"bench/thumbs/{media_id % FILES}.jpg"
        items.append({
            "id": media_id, "public_id": secrets.token_urlsafe(16), "entity_type": entity_type,
            "entity_id": entity_id, "parent_id": "", "entity_field": field, "position": n, "is_primary": False,
            "claims_primary": False, "media_type": "image", "storage_type": "local", "bucket_name": None,
            "original_key": thumb, "content_type": "image/jpeg", "byte_size": 2_000_000, "width": 4032,
            "height": 3024, "tags": [], "meta": {}, "alt_text": f"Photo {n} of {entity_id}",
            "moderation_status": "approved" if n % 10 else "pending", "processing_status": "ready",
            "sha256": secrets.token_hex(32), "md5": secrets.token_hex(16), "uploaded_by": OWNER,
            "created_at": start + timedelta(minutes=n), "updated_at": start + timedelta(minutes=n),
        })
        for name, fmt, width in (("thumbnail", "jpeg", 150), ("small", "jpeg", 400), ("small", "webp", 400)):
            variants.append({"media_id": media_id, "name": name, "format": fmt, "storage_key": thumb,
                             "width": width, "height": width, "byte_size": 6000,
                             "content_type": f"image/{fmt}", "created_at": start})
    return items, variants


def fill(url: str, media_root: Path, items: int) -> None:
    for index in range(FILES):
        path = media_root / "bench" / "thumbs" / f"{index}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_thumbnail(index))
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            big_items, big_variants = _rows(items, ENTITY, 1)
            connection.execute(insert(MediaItem.__table__), big_items)
            connection.execute(insert(MediaVariant.__table__), big_variants)
            per_entity = 20
            for start in range(0, OTHER_ITEMS, 2000):
                other_items, other_variants = [], []
                for e in range(start // per_entity, (start + 2000) // per_entity):
                    i, v = _rows(per_entity, ("property", f"P-{e}", "gallery"), items + 1 + e * per_entity)
                    other_items += i
                    other_variants += v
                connection.execute(insert(MediaItem.__table__), other_items)
                connection.execute(insert(MediaVariant.__table__), other_variants)
            assert connection.scalar(select(MediaItem.id).order_by(MediaItem.id.desc()).limit(1)) == items + OTHER_ITEMS
    finally:
        engine.dispose()


def _get(http: httpx.Client, path: str, headers: dict[str, str]) -> httpx.Response:
    reply = http.get(path, headers=headers)
    if reply.status_code != 200:
        raise RuntimeError(f"GET {path}: {reply.status_code} {reply.text[:300]}")
    return reply


def time_requests(base: str, smoke: bool) -> dict[str, list[float]]:
    owner_cookie = {"Cookie": f"mediahub_session={_token(OWNER)}"}
    page = f"/library/{ENTITY[0]}/{ENTITY[1]}"
    tiles = f"{page}/tiles?field={ENTITY[2]}&after="
    with httpx.Client(base_url=base, timeout=60.0) as http:
        found = NEXT_CURSOR.search(_get(http, page, owner_cookie).text)
        if found is None:
            raise RuntimeError("the entity page has no 'show more' cursor (data-next)")
        # Follow the cursor deep into the portfolio: the page a "show more" far down asks for.
        cursor = found.group(1)
        for _ in range(3 if smoke else 150):
            following = NEXT_CURSOR.search(_get(http, tiles + cursor, owner_cookie).text)
            if following is None:
                break
            cursor = following.group(1)
        deep = tiles + cursor
        rows = {
            "entity page, owner": (page, owner_cookie),
            "entity page, stranger": (page, {}),
            "show more, deep cursor": (deep, owner_cookie),
            "API list, same items (JSON)": (f"/v1/media/entity/{ENTITY[0]}/{ENTITY[1]}?field={ENTITY[2]}"
                                            f"&limit={PAGE_SIZE}",
                                            {"Authorization": f"Bearer {_token(OWNER)}"}),
        }
        for path, headers in rows.values():  # warm-up
            _get(http, path, headers)
        samples: dict[str, list[float]] = {name: [] for name in rows}
        for _ in range(20 if smoke else 300):
            for name, (path, headers) in rows.items():
                started = time.perf_counter()
                _get(http, path, headers)
                samples[name].append((time.perf_counter() - started) * 1000)
    return samples


def browser_load(base: str) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(base_url=base, viewport={"width": 1280, "height": 900})
            context.add_cookies([{"name": "mediahub_session", "value": _token(OWNER), "url": base}])
            page = context.new_page()
            requests: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            page.goto(f"/library/{ENTITY[0]}/{ENTITY[1]}", wait_until="networkidle")
            paint = page.evaluate("performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null")
            loaded = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
            transferred = page.evaluate(
                "performance.getEntriesByType('resource').reduce((n, e) => n + e.transferSize, 0)"
                " + performance.getEntriesByType('navigation')[0].transferSize")
        finally:
            browser.close()
    thumbnails = sum(1 for url in requests if "/v1/media/files/bench/thumbs/" in url)
    return {"fcp_ms": paint, "load_ms": loaded, "requests": len(requests), "thumbnails": thumbnails,
            "kib": transferred / 1024}


def run_database(cfg: Config, label: str, url: str | None) -> tuple[dict[str, list[float]], dict[str, Any]]:
    root = cfg.work / f"library-{label}"
    items = SMOKE_ITEMS if cfg.smoke else FULL_ITEMS
    settings = {"PIXEL_WORKERS": "0"} | ({"DATABASE_URL": url} if url else {})
    server = Server(root, settings)
    try:
        server.wait_ready()
        fill(url or f"sqlite:///{root / 'mediahub.db'}", root / "media", items)
        samples = time_requests(server.base, cfg.smoke)
        loaded = browser_load(server.base)
    finally:
        server.stop()
    return samples, loaded


def run(cfg: Config) -> None:
    items = SMOKE_ITEMS if cfg.smoke else FULL_ITEMS
    results: dict[str, tuple[dict[str, list[float]], dict[str, Any]]] = {}
    with ExitStack() as stack:
        results["SQLite"] = run_database(cfg, "sqlite", None)
        pg = stack.enter_context(scratch_database("postgresql", "bench_library"))
        results["PostgreSQL"] = run_database(cfg, "postgresql", pg)
    t = table(f"Library entity page, one entity of {items:,} items (loopback client, ms)",
              ["request", "database", "p50", "p99", "p99 / API list", "goal p99", "verdict"])
    for database, (samples, _) in results.items():
        api_p99 = p(samples["API list, same items (JSON)"], 0.99)
        for name, values in samples.items():
            p99 = p(values, 0.99)
            is_page = not name.startswith("API")
            t.add_row(name, database, f"{p(values, 0.5):.1f}", f"{p99:.1f}", f"{p99 / api_p99:.2f}x",
                      f"< {GOAL_P99_MS:.0f}" if is_page else "", verdict(p99 < GOAL_P99_MS) if is_page else "")
    console.print(t)
    b = table("Library entity page in Debian's chromium, empty cache, as the owner",
              ["database", "first contentful paint ms", "load event ms", "requests", "of them thumbnails",
               "KiB transferred"])
    for database, (_, loaded) in results.items():
        b.add_row(database, f"{loaded['fcp_ms']:.0f}" if loaded["fcp_ms"] is not None else "-",
                  f"{loaded['load_ms']:.0f}", str(loaded["requests"]), str(loaded["thumbnails"]),
                  f"{loaded['kib']:,.0f}")
    console.print(b)
