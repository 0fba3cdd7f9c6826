"""The `scale` section's library: media rows of a realistic shape, generated inside the database.

An entity plan is drawn in Python (seeded): which entities exist, of which kind and field, and
how many items each holds. Most hold 1-40 items; a few builders' portfolios hold 10^4-10^5
(more than an upload may add to a gallery today: the worst case a list must still serve).
The database then expands the plan with one INSERT ... SELECT (generate_series on PostgreSQL,
the SEQUENCE engine's seq_0_to_N on MariaDB), in random order, so one entity's rows are
scattered over the table as uploads over years scatter them. Every value of a row is derived
from an md5 of (entity, position): moderation status (95 % approved, 2 % pending, 0.3 %
flagged, the rest rejected), media type, store, byte size, pixel size, uploader (a few users
upload most), creation time over six years, SHA-256, pixel digest, and the pHash bands
(uniformly random: few near neighbours, as in a library of distinct photos). The stored
64x64 fingerprint thumbnails come from a pool of smooth random pictures. Each item gets five
variant rows, approved items one open report in a thousand (every flagged item one), one item
in a hundred a closed report, and each entity an owner.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Engine, insert, text
from sqlalchemy.orm import Session
from sqlalchemy.schema import Column, MetaData, Table
from sqlalchemy.types import Integer, LargeBinary, String

from bench.dedup_lookup import pictures
from mediahub.db.repositories.usage import UsageRepository

SEED = 14
THUMB_POOL = 256
YEARS_SECONDS = 6 * 365 * 86400
VARIANTS = (("thumbnail", "jpeg", 150, 150, 60), ("small", "jpeg", 400, 300, 18), ("medium", "jpeg", 800, 600, 6),
            ("large", "jpeg", 1600, 1200, 2), ("small", "webp", 400, 300, 25))

_meta = MetaData()
PLAN = Table("scale_plan", _meta, Column("eid", Integer, primary_key=True, autoincrement=False), Column("batch", Integer),
             Column("entity_type", String(32)), Column("entity_id", String(64)), Column("parent_id", String(64)),
             Column("entity_field", String(32)), Column("size", Integer), Column("owner", String(128)))
THUMBS = Table("scale_thumbs", _meta, Column("k", Integer, primary_key=True, autoincrement=False), Column("thumb", LargeBinary))
VARIANT_NAMES = Table("scale_variant_names", _meta, Column("name", String(64)), Column("format", String(16)),
                      Column("width", Integer), Column("height", Integer), Column("divisor", Integer))


@dataclass(frozen=True)
class PlannedEntity:
    entity_type: str
    entity_id: str
    parent_id: str
    entity_field: str
    size: int
    owner: str


def plan(count: int, batch: int, rng: random.Random) -> list[PlannedEntity]:
    """Entities holding `count` items in all: three big portfolios (count/10, /40, /100), the rest small."""
    out: list[PlannedEntity] = []
    serial = iter(range(10**9))

    def name(prefix: str) -> str:
        return f"{prefix}{batch}-{next(serial)}"

    for share in (10, 40, 100):
        if count // share:
            out.append(PlannedEntity("builder", name("BIG"), "", "portfolio", count // share, name("USR-O")))
    left = count - sum(e.size for e in out)
    communities = [name("C") for _ in range(max(1, count // 400))]
    kinds = ("property", "user", "post", "amenity", "community", "builder", "sales_rep")
    weights = (40, 25, 12, 8, 3, 4, 8)  # entities, not rows: properties and users dominate
    while left > 0:
        kind = rng.choices(kinds, weights)[0]
        if kind == "user":
            user = name("USR-")
            fields = [("avatar", 1)] + ([("cover", 1)] if rng.random() < 0.3 else [])
            entries = [PlannedEntity("user", user, "", field, size, user) for field, size in fields]
        elif kind == "sales_rep":
            rep = name("REP-")
            entries = [PlannedEntity("sales_rep", rep, "", "avatar", 1, rep)]
        elif kind == "builder":
            builder = name("B")
            entries = [PlannedEntity("builder", builder, "", "portfolio", rng.randint(5, 100), name("USR-O")),
                       PlannedEntity("builder", builder, "", "logo", 1, name("USR-O"))]
        elif kind == "amenity":
            entries = [PlannedEntity("amenity", name("AM"), rng.choice(communities), "photos", rng.randint(1, 20),
                                     name("USR-O"))]
        else:
            top = {"property": 40, "post": 10, "community": 40}[kind]
            size = min(top, max(1, int(rng.lognormvariate(1.8, 0.8))))
            field = {"property": "gallery", "post": "media", "community": "photos"}[kind]
            prefix = {"property": "P", "post": "PO", "community": "C"}[kind]
            entries = [PlannedEntity(kind, name(prefix), "", field, size, name("USR-O"))]
        for entry in entries:
            if left <= 0:
                break
            size = min(entry.size, left)
            out.append(PlannedEntity(entry.entity_type, entry.entity_id, entry.parent_id, entry.entity_field, size,
                                     entry.owner))
            left -= size
    return out


class Dialect:
    """The few SQL fragments PostgreSQL and MariaDB spell differently."""

    def __init__(self, name: str) -> None:
        self.postgres = name == "postgresql"

    def u(self, expr: str, start: int, digits: int) -> str:
        """Hex digits start..start+digits-1 (1-based, at most 7) of `expr` as a non-negative integer."""
        if self.postgres:
            return f"('x' || lpad(substr({expr}, {start}, {digits}), 8, '0'))::bit(32)::int"
        return f"CAST(CONV(SUBSTR({expr}, {start}, {digits}), 16, 10) AS UNSIGNED)"

    def seconds_after_2020(self, expr: str) -> str:
        if self.postgres:
            return f"(timestamptz '2020-01-01 00:00:00+00' + ({expr}) * interval '1 second')"
        return f"(TIMESTAMP('2020-01-01 00:00:00') + INTERVAL ({expr}) SECOND)"

    def json(self, literal: str) -> str:
        return f"CAST('{literal}' AS json)" if self.postgres else f"'{literal}'"

    def expand(self, largest: int) -> str:
        """FROM clause: one row (p, n) per item of each planned entity of the batch."""
        if self.postgres:
            return "scale_plan p CROSS JOIN LATERAL generate_series(0, p.size - 1) AS g(n)"
        return f"scale_plan p JOIN (SELECT seq AS n FROM seq_0_to_{max(0, largest - 1)}) g ON g.n < p.size"

    def true(self) -> str:
        return "true" if self.postgres else "1"


def _media_insert(d: Dialect, largest: int) -> str:
    h = "s.h"
    frac = f"{d.u(h, 1, 4)} % 1000"
    status = (f"CASE WHEN {frac} < 20 THEN 'pending' WHEN {frac} < 23 THEN 'flagged' "
              f"WHEN {frac} < 50 THEN 'rejected' ELSE 'approved' END")
    video = f"(s.entity_field IN ('gallery', 'portfolio', 'media') AND {d.u(h, 5, 2)} < 8)"
    pick = f"{d.u(h, 7, 2)} % 5"
    width = f"CASE {pick} WHEN 0 THEN 4032 WHEN 1 THEN 3024 WHEN 2 THEN 1920 WHEN 3 THEN 1600 ELSE 800 END"
    height = f"CASE {pick} WHEN 0 THEN 3024 WHEN 1 THEN 4032 WHEN 2 THEN 1080 WHEN 3 THEN 1200 ELSE 600 END"
    size_frac = f"({d.u(h, 9, 4)} / 65536.0)"
    uploader = (f"CASE WHEN s.entity_type IN ('user', 'sales_rep') THEN s.entity_id "
                f"WHEN {d.u(h, 13, 2)} < 160 THEN s.owner "
                f"ELSE CONCAT('USR-U', FLOOR(POWER({d.u(h, 15, 4)} / 65536.0, 3) * 50000)) END")
    created = d.seconds_after_2020(f"FLOOR({d.u(h, 19, 7)} / 268435456.0 * {YEARS_SECONDS})")
    hw, hc = "s.hw", "s.hc"
    bands = ", ".join([d.u(hw, 1 + 4 * i, 4) for i in range(4)] + [d.u(hc, 1 + 4 * i, 4) for i in range(4)])
    return f"""
INSERT INTO media_items (public_id, entity_type, entity_id, parent_id, entity_field, position, is_primary,
    primary_marker, claims_primary, media_type, storage_type, bucket_name, original_key, content_type, byte_size,
    width, height, duration, tags, metadata, caption, alt_text, moderation_status, moderation_reason,
    processing_status, image_hash, pixel_sha256, dedup_thumb, hash_w0, hash_w1, hash_w2, hash_w3, hash_c0, hash_c1,
    hash_c2, hash_c3, sha256, md5, uploaded_by, created_at, updated_at)
SELECT SUBSTR({h}, 1, 22), s.entity_type, s.entity_id, s.parent_id, s.entity_field, s.n, s.n = 0,
    CASE WHEN s.n = 0 THEN {d.true()} END, s.n < 0,
    CASE WHEN {video} THEN 'video' ELSE 'image' END,
    'local', NULL,
    CONCAT(s.entity_type, '/', s.entity_field, '/', s.entity_id, '/', SUBSTR({h}, 1, 24),
           CASE WHEN {video} THEN '.mp4' ELSE '.jpg' END),
    CASE WHEN {video} THEN 'video/mp4' ELSE 'image/jpeg' END,
    CASE WHEN {video} THEN FLOOR(2000000 + {size_frac} * {size_frac} * 200000000)
         ELSE FLOOR(60000 + {size_frac} * {size_frac} * {size_frac} * 12000000) END,
    {width}, {height}, CASE WHEN {video} THEN 5 + {d.u(h, 9, 2)} % 120 END,
    CASE WHEN {d.u(h, 17, 1)} < 4 THEN {d.json('["outdoor", "kitchen"]')} ELSE {d.json('[]')} END,
    CASE WHEN {d.u(h, 18, 1)} < 8
         THEN {d.json('{"exif": {"make": "Apple", "model": "iPhone 13 Pro", "orientation": 1}}')}
         ELSE {d.json('{}')} END,
    CASE WHEN {d.u(h, 17, 1)} < 5 THEN CONCAT('Photo ', s.n + 1, ' of ', s.entity_id) END,
    CASE WHEN {d.u(h, 17, 1)} < 3 THEN 'A room with a view' END,
    {status}, CASE WHEN {frac} >= 23 AND {frac} < 50 THEN 'not a photo of this listing' END,
    'ready', SUBSTR({hw}, 1, 16), CONCAT(MD5(CONCAT({h}, 'p')), MD5(CONCAT({h}, 'q'))), t.thumb, {bands},
    CONCAT(MD5(CONCAT({h}, 's')), MD5(CONCAT({h}, 't'))), MD5(CONCAT({h}, 'm')), {uploader}, {created}, {created}
FROM (SELECT p.entity_type, p.entity_id, p.parent_id, p.entity_field, p.owner, g.n,
             MD5(CONCAT(p.eid, ':', g.n)) AS h, MD5(CONCAT(p.eid, ':', g.n, 'w')) AS hw,
             MD5(CONCAT(p.eid, ':', g.n, 'c')) AS hc
      FROM {d.expand(largest)} WHERE p.batch = :batch) s
JOIN scale_thumbs t ON t.k = {d.u(h, 26, 4)} % {THUMB_POOL}
ORDER BY s.h
"""


def _variants_insert() -> str:
    return """
INSERT INTO media_variants (media_id, name, format, storage_key, width, height, byte_size, content_type, created_at)
SELECT m.id, v.name, v.format, CONCAT(m.original_key, '_', v.name, '.', v.format), v.width, v.height,
       FLOOR(m.byte_size / v.divisor) + 1, CONCAT('image/', v.format), m.created_at
FROM media_items m CROSS JOIN scale_variant_names v WHERE m.id > :after
"""


def _reports_insert(d: Dialect) -> str:
    """Open reports (every flagged item, one approved item in a thousand) and the closed ones that pile up
    (one item in a hundred had a report a moderator dismissed)."""
    return f"""
INSERT INTO media_reports (media_id, reporter, reason, open_marker, resolution, created_at, closed_at)
SELECT id, CONCAT('USR-R', MOD(id, 977)), 'not this listing',
       CASE WHEN MOD(id, 100) = 3 THEN NULL ELSE {d.true()} END,
       CASE WHEN MOD(id, 100) = 3 THEN 'dismissed' END, created_at,
       CASE WHEN MOD(id, 100) = 3 THEN created_at END
FROM media_items
WHERE id > :after AND (moderation_status = 'flagged' OR (moderation_status = 'approved' AND MOD(id, 1000) = 7)
                       OR MOD(id, 100) = 3)
"""


def _members_insert() -> str:
    return """
INSERT INTO entity_members (entity_type, entity_id, parent_id, subject, role, created_at)
SELECT entity_type, entity_id, parent_id, MIN(owner), 'owner', CURRENT_TIMESTAMP FROM scale_plan
WHERE batch = :batch AND entity_type NOT IN ('user', 'sales_rep')
GROUP BY entity_type, entity_id, parent_id
"""


class Library:
    """The growing library in one migrated database: `grow(n)` tops it up to n media rows."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = Dialect(engine.dialect.name)
        self.rows = 0
        self.batch = 0
        self.rng = random.Random(SEED)
        self.entities: list[PlannedEntity] = []
        _meta.create_all(engine)
        with engine.begin() as connection:
            connection.execute(insert(THUMBS), [{"k": k, "thumb": picture.thumb}
                                                for k, picture in enumerate(pictures(THUMB_POOL, SEED, windows=False))])
            connection.execute(insert(VARIANT_NAMES), [
                {"name": n, "format": f, "width": w, "height": h, "divisor": div} for n, f, w, h, div in VARIANTS])

    def grow(self, count: int) -> None:
        if count <= self.rows:
            return
        self.batch += 1
        planned = plan(count - self.rows, self.batch, self.rng)
        eid = len(self.entities)
        with self.engine.begin() as connection:
            after = connection.execute(text("SELECT COALESCE(MAX(id), 0) FROM media_items")).scalar_one()
            for chunk in _chunks([{"eid": eid + i, "batch": self.batch, **e.__dict__} for i, e in enumerate(planned)]):
                connection.execute(insert(PLAN), chunk)
            largest = max(e.size for e in planned)
            connection.execute(text(_media_insert(self.dialect, largest)), {"batch": self.batch})
            connection.execute(text(_variants_insert()), {"after": after})
            connection.execute(text(_reports_insert(self.dialect)), {"after": after})
            connection.execute(text(_members_insert()), {"batch": self.batch})
        # Rows inserted on a bare connection: the storage analytics totals are rebuilt from them.
        with Session(self.engine) as session, session.begin():
            UsageRepository(session).recount()
        self.entities.extend(planned)
        self.rows = count
        self.analyze()

    def analyze(self) -> None:
        """Fresh statistics and visibility maps, and the writes flushed, before anything is timed."""
        if self.dialect.postgres:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                for table in ("media_items", "media_variants", "media_reports", "entity_members"):
                    connection.execute(text(f"VACUUM ANALYZE {table}"))
                connection.execute(text("CHECKPOINT"))
        else:
            with self.engine.begin() as connection:
                connection.execute(text("ANALYZE TABLE media_items, media_variants, media_reports, entity_members"))

    def biggest(self) -> PlannedEntity:
        return max(self.entities, key=lambda e: e.size)

    def typical(self, count: int) -> list[PlannedEntity]:
        """Up to `count` property galleries of 5-20 items (what most lists ask for), spread over the plan."""
        found = [e for e in self.entities if e.entity_type == "property" and 5 <= e.size <= 20]
        step = max(1, len(found) // count)
        return found[::step][:count]


def _chunks(rows: list[dict], size: int = 5000) -> Iterator[list[dict]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]
