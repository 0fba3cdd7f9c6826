"""The `mediahub` command: ingest, db, verify, serve."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mediahub.config import Settings, describe_settings_error
from mediahub.entities import Target
from mediahub.errors import MediaHubError
from mediahub.pipeline.intake import iter_file

app = typer.Typer(help="MediaHub: the media service.", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="The metadata database.", no_args_is_help=True)
app.add_typer(db_app, name="db")
console = Console(stderr=True)


def load_settings() -> Settings:
    """Build the one settings object, or stop with a message naming the bad setting."""
    try:
        return Settings()
    except ValidationError as exc:
        console.print(f"[red]{describe_settings_error(exc)}[/red]")
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
    entity: Annotated[str, typer.Option(help="TYPE:ID, e.g. user:USR-123.")],
    field: Annotated[str, typer.Option(help="Media field of the entity, e.g. avatar.")],
    uploader: Annotated[str | None, typer.Option(help="Subject recorded as the uploader.")] = None,
    verified: Annotated[bool, typer.Option(help="Treat the uploader as verified (auto-approve).")] = False,
    primary: Annotated[bool, typer.Option(help="Make the (last) file the primary.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line on stdout.")] = False,
) -> None:
    """Ingest files through the full pipeline; a bad file does not stop the others."""
    from mediahub.services.ingest import UploadRequest
    from mediahub.services.records import item_record

    entity_type, _, entity_id = entity.partition(":")
    try:
        target = Target.parse(entity_type, entity_id, field)
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
                record = {"file": str(path), "ok": True, "item": item_record(item)}
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


def _report(record: dict, as_json: bool, progress: Progress) -> None:
    if as_json:
        sys.stdout.write(json.dumps(record, default=str) + "\n")
        sys.stdout.flush()
    elif record["ok"]:
        item = record["item"]
        progress.console.print(
            f"[green]stored[/green] {record['file']} -> #{item['id']} {item['public_id']} "
            f"{item['width']}x{item['height']} {item['original_key']} ({len(item['variants'])} variants, "
            f"phash {item['image_hash']}, {item['moderation_status']})"
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


@app.command()
def verify(
    repair: Annotated[bool, typer.Option(help="Delete stray objects, mark rows with missing objects.")] = False,
    grace_minutes: Annotated[float, typer.Option(help="Ignore objects younger than this (uploads in flight).")] = 15,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Find stored objects without a row and rows whose objects are missing."""
    from datetime import timedelta

    from mediahub.services import verify as verify_service

    runtime = _runtime()
    with _progress() as progress:
        task = progress.add_task("listing objects", total=None)
        report = verify_service.verify(runtime.database, runtime.storage, grace=timedelta(minutes=grace_minutes),
                                       progress=lambda n: progress.advance(task, n))
    if repair:
        verify_service.repair(runtime.database, runtime.storage, report)
    summary = {
        "objects": report.objects, "keys_in_db": report.keys_in_db, "stray": report.stray,
        "missing": {str(k): v for k, v in report.missing.items()}, "removed": report.removed,
        "marked_failed": report.marked,
    }
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        console.print(f"{report.objects} objects, {report.keys_in_db} keys in the database, "
                      f"{len(report.stray)} stray, {len(report.missing)} rows with missing objects")
        for key in report.stray:
            console.print(f"  stray: {key}")
        for media_id, keys in report.missing.items():
            console.print(f"  missing for #{media_id}: {', '.join(keys)}")
        if repair:
            console.print(f"removed {report.removed} stray objects, marked {report.marked} rows failed")
    runtime.close()
    raise typer.Exit(0 if report.clean or repair else 1)


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the HTTP API with uvicorn."""
    import uvicorn

    from mediahub.api.app import create_app

    uvicorn.run(create_app(load_settings()), host=host, port=port, timeout_keep_alive=5, log_level="info")


if __name__ == "__main__":
    app()
