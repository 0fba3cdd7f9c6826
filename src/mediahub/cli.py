"""The `mediahub` command: ingest, db, verify, grant, token, serve, worker, reprocess, dedup, placeholders,
analytics, storage, tags."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from mediahub.config import DEV_SECRET_FILE, InsecureSettings, Settings, describe_settings_error, secured
from mediahub.entities import Target
from mediahub.errors import MediaHubError
from mediahub.pipeline.intake import iter_file
from mediahub.pipeline.watermark import UnknownWatermarkField, check_fields

if TYPE_CHECKING:
    from mediahub.db.session import Database
    from mediahub.runtime import Runtime

T = TypeVar("T")

app = typer.Typer(help="MediaHub: the media service.", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="The metadata database.", no_args_is_help=True)
app.add_typer(db_app, name="db")
dedup_app = typer.Typer(help="Duplicate detection.", no_args_is_help=True)
app.add_typer(dedup_app, name="dedup")
analytics_app = typer.Typer(help="Storage analytics.", no_args_is_help=True)
app.add_typer(analytics_app, name="analytics")
storage_app = typer.Typer(help="The byte store: moving objects to another one.", no_args_is_help=True)
app.add_typer(storage_app, name="storage")
placeholders_app = typer.Typer(help="Placeholders (BlurHash, ThumbHash) shown while images load.",
                               no_args_is_help=True)
app.add_typer(placeholders_app, name="placeholders")
tags_app = typer.Typer(help="Machine tags: backfill the library, export moderators' decisions.", no_args_is_help=True)
app.add_typer(tags_app, name="tags")
console = Console(stderr=True)


def load_settings() -> Settings:
    """Build the one settings object, or stop with a message naming the bad setting."""
    try:
        settings = Settings()
        check_fields(settings.watermarks)
    except (ValidationError, UnknownWatermarkField) as exc:
        console.print(f"[red]{describe_settings_error(exc)}[/red]")
        raise typer.Exit(2) from None
    return settings


def load_secured_settings() -> Settings:
    """Settings with the secrets a server needs (development mode: this install's generated secret)."""
    try:
        return secured(load_settings())
    except InsecureSettings as exc:
        console.print(f"[red]refusing to start: {exc}[/red]")
        raise typer.Exit(2) from None


def _runtime():
    from mediahub.runtime import Runtime

    return Runtime.build(load_settings())


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    )


@app.command()
def ingest(
    files: Annotated[list[Path], typer.Argument(help="Image or video files to ingest.")],
    entity: Annotated[str, typer.Option(help="TYPE:ID, e.g. user:USR-123; nested: community:C1/amenity:AM-1.")],
    field: Annotated[str, typer.Option(help="Media field of the entity (its name or route word), e.g. avatar.")],
    uploader: Annotated[str | None, typer.Option(help="Subject recorded as the uploader.")] = None,
    verified: Annotated[bool, typer.Option(help="Treat the uploader as verified (auto-approve).")] = False,
    primary: Annotated[bool, typer.Option(help="Make the (last) file the primary.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line on stdout.")] = False,
) -> None:
    """Ingest files through the full pipeline; a bad file does not stop the others."""
    from mediahub.media.access import EntityRef
    from mediahub.media.ingest import UploadRequest
    from mediahub.media.records import item_record

    try:
        ref = EntityRef.parse_label(entity)
        target = Target.parse(ref.kind.name, ref.entity_id, field, ref.parent_id)
    except MediaHubError as exc:
        console.print(f"[red]{exc.code}: {exc.message}[/red]")
        raise typer.Exit(2) from None
    runtime = _runtime()
    failures, started = 0, time.perf_counter()
    with _progress() as progress:
        task = progress.add_task("ingesting", total=len(files))
        for path in files:
            request = UploadRequest(target, uploaded_by=uploader, verified=verified, is_primary=primary,
                                    filename=path.name)
            try:
                with path.open("rb") as fh:
                    item = runtime.ingest.ingest(iter_file(fh), request)
                record = {"file": str(path), "ok": True, "item": item_record(_finished(runtime, item))}
            except (MediaHubError, OSError) as exc:
                failures += 1
                error = exc.as_dict() if isinstance(exc, MediaHubError) else {"code": "unreadable", "message": str(exc)}
                record = {"file": str(path), "ok": False, "error": error}
            _report(record, as_json, progress)
            progress.advance(task)
    elapsed = time.perf_counter() - started
    console.print(f"{len(files) - failures} stored, {failures} failed in {elapsed:.2f} s "
                  f"({len(files) / elapsed if elapsed else 0:.1f} files/s)")
    runtime.close()
    raise typer.Exit(1 if failures else 0)


def _finished(runtime, item):
    """With the in-process runner, the item once its jobs ran (WebP, web MP4), so the printout is complete."""
    from mediahub.db.repositories import MediaRepository

    if not runtime.wait_for_jobs([item.id]):
        return item  # a separate worker finishes it (QUEUE_URL)
    with runtime.database.session() as session:
        return MediaRepository(session).get(item.id) or item  # None: replaced meanwhile in a single slot


def _report(record: dict, as_json: bool, progress: Progress) -> None:
    if as_json:
        sys.stdout.write(json.dumps(record, default=str) + "\n")
        sys.stdout.flush()
    elif record["ok"]:
        item = record["item"]
        progress.console.print(
            f"[green]stored[/green] {record['file']} -> #{item['id']} {item['public_id']} "
            f"{item['width']}x{item['height']} {item['original_key']} ({len(item['variants'])} variants, "
            f"phash {item['image_hash']}, {item['moderation_status']}, {item['processing_status']})"
        )
    else:
        err = record["error"]
        progress.console.print(f"[red]failed[/red] {record['file']}: {err['code']}: {err['message']}")


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply Alembic migrations to DATABASE_URL."""
    from mediahub.db.migrate import upgrade

    settings = load_settings()
    upgrade(settings.database_url, revision)
    console.print(f"database at {revision}")


@db_app.command("current")
def db_current() -> None:
    """Print the migration revision DATABASE_URL is at."""
    from mediahub.db.migrate import current

    typer.echo(current(load_settings().database_url) or "none")


@app.command("sync-public")
def sync_public() -> None:
    """Make approved items' objects readable at their public URLs and every other object private.

    Run once after setting S3_PUBLIC_BASE_URL or CDN_BASE_URL on a bucket that already holds objects;
    later decisions keep the bucket in step by themselves. A no-op on local storage.
    """
    from mediahub.media.exposure import sync_all

    runtime = _runtime()
    try:
        public, private = sync_all(runtime.database, runtime.storage)
    except MediaHubError as exc:
        console.print(f"[red]{exc.code}: {exc.message}[/red]")
        raise typer.Exit(1) from None
    finally:
        runtime.close()
    console.print(f"{public} items public, {private} private")


@app.command()
def verify(
    repair: Annotated[bool, typer.Option(
        help="Delete stray objects, mark rows with missing objects, remove uploads left over.")] = False,
    grace_minutes: Annotated[float, typer.Option(help="Ignore objects younger than this (uploads in flight).")] = 15,
    resume: Annotated[bool, typer.Option(
        help="Continue this store's last unfinished pass from its checkpoint (else a new pass starts).")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object per line on stdout: each finding as found, then the summary.")] = False,
) -> None:
    """Find stored objects without a row and rows whose objects are missing, streaming, in bounded memory; and
    uploads left over (expired, or staged without a row)."""
    from datetime import timedelta

    from mediahub.db.session import Database
    from mediahub.media import verify as verify_service
    from mediahub.runtime import open_stores
    from mediahub.storage.factory import build_staging

    settings = load_settings()  # the database and the store only: no pipeline, pixel workers or jobs
    database = Database(settings.database_url)
    # The store is listed; during a storage migration an object rows still record elsewhere is not missing.
    store, storage = open_stores(settings, database)
    staging = build_staging(settings, store)
    with _progress() as progress:
        task = progress.add_task("verifying", total=None)
        started = time.perf_counter()

        def advance(objects: int) -> None:
            progress.advance(task, objects)
            done = progress.tasks[task].completed
            progress.update(task, description=f"verifying, {done / (time.perf_counter() - started):.0f} objects/s")

        def found(finding: verify_service.Finding) -> None:
            if as_json:
                _report_line({"finding": finding.kind, "key": finding.key, "media_ids": list(finding.media_ids)})
            else:
                owners = f" (#{', #'.join(map(str, finding.media_ids))})" if finding.media_ids else ""
                progress.console.print(f"  {finding.kind}: {finding.key}{owners}")

        try:
            report = verify_service.verify(database, storage, staging=staging, grace=timedelta(minutes=grace_minutes),
                                           repair=repair, resume=resume, on_finding=found, progress=advance)
        except MediaHubError as exc:
            console.print(f"[red]{exc.code}: {exc.message}[/red] (--resume continues from the last checkpoint)")
            raise typer.Exit(1) from None
        finally:
            database.dispose()
    if as_json:
        _report_line({
            "objects": report.objects, "keys_in_db": report.keys_in_db,
            "stray_count": report.stray_count, "missing_count": report.missing_count,
            "stray": report.stray, "missing": {str(k): v for k, v in report.missing.items()},  # samples
            "removed": report.removed, "marked_failed": report.marked, "resumed_after": report.resumed_after,
            "expired_upload_count": report.expired_upload_count, "stray_upload_count": report.stray_upload_count,
            "expired_uploads": report.expired_uploads, "stray_uploads": report.stray_uploads,  # samples
            "uploads_removed": report.uploads_removed,
            "seconds": round(report.seconds, 3), "objects_per_second": round(report.rate, 1),
        })
    else:
        resumed = f" (resumed after {report.resumed_after})" if report.resumed_after else ""
        console.print(f"{report.objects} objects, {report.keys_in_db} keys in the database, "
                      f"{report.stray_count} stray, {report.missing_count} missing{resumed}; "
                      f"{report.objects_this_run} objects in {report.seconds:.1f} s ({report.rate:.0f} objects/s)")
        if report.expired_upload_count or report.stray_upload_count:
            console.print(f"uploads left over: {report.expired_upload_count} expired, "
                          f"{report.stray_upload_count} staged without a row")
        if repair:
            console.print(f"removed {report.removed} stray objects, marked {report.marked} rows failed, "
                          f"removed {report.uploads_removed} uploads left over")
    raise typer.Exit(0 if report.clean or repair else 1)


def _report_line(record: dict) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


@storage_app.command("migrate")
def storage_migrate(
    to: Annotated[str, typer.Option("--to", help="local or s3: the store the settings describe (STORAGE_TYPE, "
                                                 "MEDIA_ROOT, S3_*), which every item moves to.")],
    dry_run: Annotated[bool, typer.Option(help="Print what is left to move per source store; change nothing.")] = False,
    concurrency: Annotated[int, typer.Option(help="Items moved at once.", min=1, max=64)] = 4,
    max_bytes_per_second: Annotated[int | None, typer.Option(
        help="Bytes read from the stores per second, copies and checks together (default: unlimited).", min=1)] = None,
    delete_source_after: Annotated[float | None, typer.Option(
        help="Seconds after an item switched before its old copies are deleted, by this run or a later one "
             "(default STORAGE_MIGRATION_DELETE_SOURCE_AFTER).", min=0)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The plan or the report as one JSON document.")] = False,
) -> None:
    """Move every item's objects to the store the settings describe while the service keeps serving: copy,
    verify (size and SHA-256), switch each item's row; later delete the old copies. Run it again to resume, and
    after the grace period to delete the old copies; exit 1 while objects are missing or failed."""
    from datetime import timedelta

    from mediahub.db.session import Database
    from mediahub.media.storage_migration import StorageMigrator, store_name
    from mediahub.storage.factory import build_store, build_storage

    settings = load_settings()
    if to not in ("local", "s3"):
        console.print(f"[red]--to is local or s3, not {to!r}[/red]")
        raise typer.Exit(2)
    if to != settings.storage_type:
        console.print(f"[red]--to {to}, but the settings describe {settings.storage_type} storage "
                      f"(STORAGE_TYPE={settings.storage_type}): set the target store's settings first[/red]")
        raise typer.Exit(2)
    grace = settings.storage_migration_delete_source_after if delete_source_after is None else delete_source_after
    database = Database(settings.database_url)
    target = build_storage(settings)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                        TimeElapsedColumn(), console=console, transient=True)
    moving = progress.add_task("moving", total=None, visible=False)
    migrator = StorageMigrator(database, target, lambda kind, bucket: build_store(settings, kind, bucket),
                               concurrency=concurrency, max_bytes_per_second=max_bytes_per_second,
                               delete_source_after=timedelta(seconds=grace),
                               on_bytes=lambda size: progress.advance(moving, size))
    try:
        plan = migrator.plan()
        if dry_run:
            _print_plan(plan.as_dict(), as_json)
            return
        target.check()  # creates the bucket where allowed
        with progress:
            progress.update(moving, total=plan.bytes, visible=True,
                            description=f"moving to {store_name(plan.target)}")
            report = migrator.run(plan)
    except MediaHubError as exc:
        console.print(f"[red]{exc.code}: {exc.message}[/red] (run it again to continue)")
        raise typer.Exit(1) from None
    finally:
        database.dispose()
    _print_migration(report.as_dict(), as_json)
    raise typer.Exit(0 if report.ok else 1)


def _print_plan(plan: dict, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"dry_run": True, **plan}))
        return
    typer.echo(f"to {plan['target']}:" if plan["sources"] else f"every item is on {plan['target']} already")
    for store, amounts in plan["sources"].items():
        typer.echo(f"  from {store}: {amounts['items']} items, {amounts['objects']} objects, {amounts['bytes']} bytes")


def _print_migration(report: dict, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(report))
        return
    typer.echo(f"to {report['target']} (run {report['run_id']}, {report['passes']} passes): "
               f"{report['items_switched']} items switched; {report['objects']} objects ({report['bytes']} bytes) "
               f"verified: {report['copied']} copied, {report['already_there']} already there, "
               f"{report['digests_recorded']} without a recorded digest (verified against the source, recorded)")
    for why, items in report["skipped"].items():
        typer.echo(f"  skipped {items} items: {why}")
    for kind in ("missing", "failed"):
        for problem in report[kind]:
            typer.echo(f"  {kind}: #{problem['media_id']} {problem['key']} ({problem['store']}): {problem['reason']}")
    typer.echo(f"old copies: {report['sources_deleted']} deleted, {report['sources_waiting']} waiting for their "
               f"grace period" + ("; the migration is finished" if report["finished"] else ""))


@app.command()
def grant(
    entity: Annotated[str, typer.Argument(help="TYPE:ID, e.g. community:123; nested: community:123/amenity:9.")],
    sub: Annotated[str, typer.Argument(help="The subject (JWT sub) to add.")],
    role: Annotated[str, typer.Option(help="owner or editor.")] = "owner",
) -> None:
    """Make SUB a member of an entity: they may upload to it and manage its media."""
    from mediahub.media.access import EntityRef
    from mediahub.media.members import MemberService

    runtime = _runtime()
    try:
        ref = EntityRef.parse_label(entity)
        MemberService(runtime.database).grant(None, ref, sub, role)
    except MediaHubError as exc:
        console.print(f"[red]{exc.code}: {exc.message}[/red]")
        raise typer.Exit(2) from None
    finally:
        runtime.close()
    console.print(f"{sub} is now {role} of {ref.label}")


@app.command()
def token(
    sub: Annotated[str, typer.Option(help="Subject of the token, e.g. USR-1.")],
    role: Annotated[list[str] | None, typer.Option(help="A role (repeat): user, moderator, admin.")] = None,
    verified: Annotated[bool, typer.Option(help="Mark the subject verified (uploads auto-approve).")] = False,
    ttl: Annotated[int, typer.Option(help="Seconds until the token expires.", min=1)] = 3600,
    grant: Annotated[list[str] | None, typer.Option(
        help="TYPE:ID (nested: PARENT_TYPE:PARENT_ID/TYPE:ID) the token owns, like a member (repeat).")] = None,
) -> None:
    """Print a development JWT signed with JWT_SECRET (development mode: this install's generated secret)."""
    from mediahub.api.auth import issue_token

    settings = load_secured_settings()
    try:
        typer.echo(issue_token(settings, sub, roles=role or [], verified=verified, grants=grant or [], ttl=ttl))
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


@app.command()
def worker(
    threads: Annotated[int | None, typer.Option(help="Job threads (default: WORKERS).", min=1)] = None,
) -> None:
    """Run background jobs until stopped: Dramatiq workers for QUEUE_URL, else a loop over the jobs table."""
    import signal
    import threading

    from mediahub.jobs.worker import run_worker

    runtime = _runtime()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    source = f"queue {runtime.settings.queue_name}" if runtime.settings.queue_url else "the jobs table"
    console.print(f"worker started on {source}")
    try:
        run_worker(runtime.tasks, runtime.jobs, threads or runtime.settings.workers, stop, runtime.staging)
    finally:
        runtime.close()


class Role(str, Enum):
    api = "api"
    worker = "worker"


READY_TIMEOUT_SECONDS = 10.0


@app.command()
def ready(
    role: Annotated[Role, typer.Option(help="The process checked: api (a `mediahub serve`) or worker.")],
    url: Annotated[str, typer.Option(help="api: the server's own address, from inside its container.")] = (
        "http://127.0.0.1:8000"),
) -> None:
    """Readiness for an orchestrator's exec probe: exit 0 when ready, 1 when not; the checks as one JSON line.

    api: the server's GET /readyz (its own view, its pixel workers included). worker: what a worker needs,
    checked with its settings: the database, the store, the queue broker when QUEUE_URL is set, and the
    moderation checks when MODERATION_CHECKS names any. Both: the optional features' states in `features`.
    """
    if role is Role.api:
        import httpx

        try:
            answer = httpx.get(f"{url.rstrip('/')}/readyz", timeout=READY_TIMEOUT_SECONDS)
            body = answer.json()
            checks = body.get("checks", {}) if answer.status_code != 200 else {"server": "ok"}
            features = body.get("features", {})
            ok = answer.status_code == 200
        except (httpx.HTTPError, ValueError) as exc:
            checks, features, ok = {"server": type(exc).__name__}, {}, False
    else:
        runtime = _runtime()
        checks = {}
        try:
            features = runtime.features()
            for name, check in runtime.dependency_checks(runs_jobs=True).items():
                try:
                    check()
                    checks[name] = "ok"
                except MediaHubError as exc:
                    checks[name] = exc.code
        finally:
            runtime.close()
        ok = all(result == "ok" for result in checks.values())
    _report_line({"role": role.value, "ready": ok, "checks": checks, "features": features})
    raise typer.Exit(0 if ok else 1)


@app.command()
def reprocess(
    entity: Annotated[str | None, typer.Option(
        help="TYPE:ID: only this entity's items (nested kinds: PARENT_TYPE:PARENT_ID/TYPE:ID, "
             "which covers that id under every parent).")] = None,
    all_items: Annotated[bool, typer.Option("--all", help="Every item.")] = False,
) -> None:
    """Regenerate the variants of items made with other IMAGE_SIZES or stored without a focal point (found and
    recorded by the job, the crops made around it); run it again to resume."""
    from mediahub.media import reprocessing
    from mediahub.media.access import EntityRef

    if (entity is not None) == all_items:  # exactly one of the two
        console.print("[red]give either --entity TYPE:ID or --all[/red]")
        raise typer.Exit(2)
    scope = None
    if entity is not None:
        try:
            ref = EntityRef.parse_label(entity)
        except MediaHubError as exc:
            console.print(f"[red]{exc.code}: {exc.message}[/red]")
            raise typer.Exit(2) from None
        scope = (ref.kind.name, ref.entity_id)
    runtime = _runtime()
    try:
        with _progress() as progress:
            checking = progress.add_task("checking items", total=reprocessing.count_items(runtime.database, scope))
            job_ids = reprocessing.queue_stale(runtime.database, runtime.settings, scope,
                                               progress=lambda n: progress.advance(checking, n))
            runtime.jobs.dispatch(job_ids)
            counts = _follow_jobs(runtime, job_ids, progress) if runtime.jobs.runs_here else {"queued": len(job_ids)}
    finally:
        runtime.close()
    outcome = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "nothing to do"
    console.print(f"{len(job_ids)} items to reprocess: {outcome}")
    raise typer.Exit(1 if counts.get("failed") else 0)


def _follow_jobs(runtime, job_ids: list[int], progress: Progress) -> dict[str, int]:
    """Advance a bar as the in-process runner finishes the jobs; their final counts by status."""
    from mediahub.db.repositories.job_queue import status_counts

    task = progress.add_task("reprocessing", total=len(job_ids))
    while True:
        counts = status_counts(runtime.database, job_ids)
        finished = counts.get("done", 0) + counts.get("failed", 0)
        progress.update(task, completed=finished)
        if finished == len(job_ids):
            return counts
        time.sleep(0.2)


@dedup_app.command("scan")
def dedup_scan(
    threshold: Annotated[int | None, typer.Option(help="Largest pHash distance (default DEDUP_THRESHOLD).",
                                                  min=0, max=32)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The groups as one JSON document on stdout.")] = False,
) -> None:
    """Report duplicate groups over the whole library (exact and near duplicates, any entity)."""
    from mediahub.dedup import policy as dedup

    runtime = _runtime()
    limit = runtime.settings.dedup_threshold if threshold is None else threshold
    try:
        with _progress() as progress, runtime.database.session() as session:
            task = progress.add_task("scanning", total=None)
            report = dedup.scan(session, limit, progress=lambda done, total: progress.update(
                task, completed=done, total=total), index=runtime.dedup_index)
    finally:
        runtime.close()
    if as_json:
        typer.echo(json.dumps({"items": report.items, "threshold": limit, "groups": report.groups}))
    else:
        duplicates = sum(len(group) - 1 for group in report.groups)
        typer.echo(f"{report.items} items scanned, {len(report.groups)} duplicate groups "
                   f"({duplicates} duplicates) at threshold {limit}")
        for number, group in enumerate(report.groups, 1):
            typer.echo(f"group {number}:")
            for member in group:
                how = "original" if member["reason"] == "first" else f"{member['reason']}, distance {member['distance']}"
                typer.echo(f"  #{member['id']} {member['public_id']} {member['entity']}:{member['field']} ({how})")


@dedup_app.command("backfill")
def dedup_backfill(
    as_json: Annotated[bool, typer.Option("--json", help="The counts as one JSON document on stdout.")] = False,
) -> None:
    """Compute the missing fingerprints of image rows stored before duplicate detection, from their bytes."""
    from mediahub.media import backfill

    report = _backfill("fingerprinting", backfill.pending, lambda runtime, advance: backfill.backfill(
        runtime.database, runtime.storage, runtime.ingest.image_options, progress=advance))
    _backfill_report(as_json, report, f"{report.examined} image rows without fingerprints: {report.filled} filled "
                                      f"({report.from_variant} from a variant), {len(report.failed)} failed")


@placeholders_app.command("backfill")
def placeholders_backfill(
    as_json: Annotated[bool, typer.Option("--json", help="The counts as one JSON document on stdout.")] = False,
) -> None:
    """Compute the placeholders of rows stored without them, from their smallest whole-picture rendition."""
    from mediahub.media import placeholders

    report = _backfill("placeholders", placeholders.pending,
                       lambda runtime, advance: placeholders.backfill(runtime.database, runtime.storage, advance))
    _backfill_report(as_json, report, f"{report.examined} rows without placeholders: {report.filled} filled, "
                                      f"{report.without_rendition} without a rendition yet, "
                                      f"{len(report.failed)} failed")


def _backfill(label: str, pending: Callable[[Database], int], fill: Callable[[Runtime, Callable[[], None]], T]) -> T:
    """Run a backfill over this install's rows with a progress bar (`pending` rows to go)."""
    runtime = _runtime()
    try:
        with _progress() as progress:
            task = progress.add_task(label, total=pending(runtime.database))
            return fill(runtime, lambda: progress.advance(task))
    finally:
        runtime.close()


def _backfill_report(as_json: bool, report: Any, summary: str) -> NoReturn:
    """Print a backfill's report (a dataclass of counts and `failed`: id -> why) as JSON, or the summary and a
    line per failed row; exit 1 if a row failed."""
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(report)))  # the ids in `failed` become strings
    else:
        typer.echo(summary)
        for media_id, why in report.failed.items():
            typer.echo(f"  #{media_id}: {why}")
    raise typer.Exit(1 if report.failed else 0)


class ExportFormat(str, Enum):
    jsonl = "jsonl"
    csv = "csv"


@tags_app.command("backfill")
def tags_backfill(
    entity_type: Annotated[str | None, typer.Option(help="Only this kind's room-tagged fields, e.g. property.")] = None,
    limit: Annotated[int | None, typer.Option(help="Queue at most this many jobs.", min=1)] = None,
    redo: Annotated[bool, typer.Option(help="Also the images the current model tagged already.")] = False,
) -> None:
    """Queue tagging jobs for the listing photos without machine tags from the current model, a page at a time
    (with the in-process runner, each page's jobs run before the next page is read); run it again to resume."""
    from mediahub.media import tagging

    runtime = _runtime()
    counts: dict[str, int] = {}
    examined = queued = 0
    try:
        tagger = runtime.tasks.tagger
        if tagger is None:
            console.print(f"[red]tagging is {runtime.tagging}[/red]")
            raise typer.Exit(2)
        with _progress() as progress:
            task = progress.add_task(f"tagging with {tagger.model}", total=limit)
            for batch in tagging.backfill(runtime.database, tagger.model, entity_type=entity_type, limit=limit,
                                          redo=redo, max_attempts=runtime.settings.job_max_attempts):
                examined += batch.examined
                queued += len(batch.job_ids)
                runtime.jobs.dispatch(batch.job_ids)
                if runtime.jobs.runs_here:  # this process runs them: the page's jobs finish before the next page
                    for status, n in _finished_jobs(runtime, batch.job_ids).items():
                        counts[status] = counts.get(status, 0) + n
                progress.advance(task, len(batch.job_ids))
    except MediaHubError as exc:
        console.print(f"[red]{exc.code}: {exc.message}[/red]")
        raise typer.Exit(2) from None
    finally:
        runtime.close()
    outcome = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or f"{queued} queued"
    console.print(f"{examined} images examined, {queued} tagging jobs: {outcome}")
    raise typer.Exit(1 if counts.get("failed") else 0)


def _finished_jobs(runtime, job_ids: list[int]) -> dict[str, int]:
    """Wait for the in-process runner to finish these jobs; their counts by final status."""
    from mediahub.db.repositories.job_queue import status_counts

    while True:
        counts = status_counts(runtime.database, job_ids)
        if counts.get("done", 0) + counts.get("failed", 0) == len(job_ids):
            return counts
        time.sleep(0.1)


@tags_app.command("export")
def tags_export(
    fmt: Annotated[ExportFormat, typer.Option("--format", help="JSON Lines or CSV.")] = ExportFormat.jsonl,
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """Write the moderators' tag decisions as labels (item public id and SHA-256, the label, what the machine
    said and its model, who decided and when), for training and evaluation."""
    from mediahub.db.session import Database
    from mediahub.media.tagging import export_lines

    database = Database(load_settings().database_url)
    lines = 0
    try:
        with (output.open("w", encoding="utf-8", newline="") if output else _stdout()) as out:
            for line in export_lines(database, fmt.value):
                out.write(line)
                lines += 1
    finally:
        database.dispose()
    console.print(f"{max(0, lines - (fmt is ExportFormat.csv))} decisions written")


def _stdout():
    from contextlib import nullcontext

    return nullcontext(sys.stdout)


@analytics_app.command("recount")
def analytics_recount(
    as_json: Annotated[bool, typer.Option("--json", help="The groups that differed as one JSON document.")] = False,
) -> None:
    """Rebuild the storage analytics totals from the media rows, in one transaction.

    Every write through the application keeps them in step; this is for rows written around it
    (a bulk import over a bare connection) and prints the groups whose totals it corrected.
    """
    from mediahub.db.repositories import Amounts, UsageRepository
    from mediahub.db.session import Database

    database = Database(load_settings().database_url)
    try:
        with database.session() as session:
            kept, counted = UsageRepository(session).recount()
    except MediaHubError as exc:
        console.print(f"[red]{exc.code}: {exc.message}[/red]")
        raise typer.Exit(1) from None
    finally:
        database.dispose()
    changed = {f"{column}={value}": {"kept": kept.get((column, value), Amounts()).as_values(),
                                     "counted": counted.get((column, value), Amounts()).as_values()}
               for column, value in sorted(kept.keys() | counted.keys())
               if kept.get((column, value)) != counted.get((column, value))}
    if as_json:
        typer.echo(json.dumps({"groups": len(counted), "corrected": changed}))
        return
    typer.echo(f"{len(counted)} groups recounted, {len(changed)} corrected")
    for group, amounts in changed.items():
        typer.echo(f"  {group}: {amounts['kept']} -> {amounts['counted']}")


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


DEV_SIGN_IN_SECONDS = 12 * 3600


def _print_library_sign_in(settings: Settings, host: str, port: int) -> None:
    """Development mode: where the library is, and a token to sign in with (an admin's, for this install)."""
    from mediahub.api.auth import issue_token

    shown_host = f"[{host}]" if ":" in host else host
    console.print(f"Library: http://{shown_host}:{port}/library/login. Sign in with this development token "
                  f"(admin, {DEV_SIGN_IN_SECONDS // 3600} h; `mediahub token --sub NAME` mints others):")
    console.print(issue_token(settings, "dev-admin", roles=["user", "admin"], ttl=DEV_SIGN_IN_SECONDS),
                  soft_wrap=True, highlight=False)


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: Annotated[int, typer.Option(help="Server processes sharing the port.", min=1, max=64)] = 1,
) -> None:
    """Serve the HTTP API with uvicorn (PIXEL_WORKERS unset: the cores shared among the server processes)."""
    import os

    import uvicorn

    from mediahub.api.app import create_app
    from mediahub.api.serving import serving_settings, uvicorn_options

    settings = serving_settings(load_secured_settings(), workers)
    if settings.mediahub_env == "development":
        if host not in LOOPBACK_HOSTS:
            console.print(f"[red]refusing to serve development mode on {host}: it binds to 127.0.0.1 only[/red]")
            raise typer.Exit(2)
        source = "JWT_SECRET" if load_settings().jwt_secret else f"the secret in {DEV_SECRET_FILE}"
        console.print(f"[bold yellow]DEVELOPMENT MODE (MEDIAHUB_ENV=development): tokens are signed with "
                      f"{source}; never expose this server[/bold yellow]")
        _print_library_sign_in(settings, host, port)
    options = {"host": host, "port": port, "log_level": "info", **uvicorn_options(settings)}
    if workers == 1:
        uvicorn.run(create_app(settings), **options)
        return
    # Each worker process builds its own app from the environment: hand it the pixel processes chosen here.
    os.environ["PIXEL_WORKERS"] = str(settings.pixel_workers)
    uvicorn.run("mediahub.api.app:create_app_from_environment", factory=True, workers=workers, **options)


if __name__ == "__main__":
    app()
