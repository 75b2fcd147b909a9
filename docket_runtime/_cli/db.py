"""``docketctl db``: create, upgrade and purge Docket's tables."""

from __future__ import annotations

import click

from ..stores import SCHEMA_VERSION, MigrationRecord, StoreError, connect
from ._common import Failure, emit_json, json_option, open_existing, run, url_option
from ._health import queue_tables
from ._render import iso, table, when


@click.group()
def db() -> None:
    """Create, upgrade and inspect Docket's tables."""


@db.command()
@url_option
@click.option(
    "--with-queue",
    is_flag=True,
    help="Also create Procrastinate's tables (Postgres; needs the procrastinate extra), "
    "unless procrastinate_jobs exists already.",
)
def migrate(url: str, with_queue: bool) -> None:
    """Create Docket's tables, or apply the migrations they lack."""
    click.echo(run(_migrate(url, with_queue)))


@db.command()
@url_option
def purge(url: str) -> None:
    """Delete cached results whose ttl has expired."""
    click.echo(run(_purge(url)))


@db.command()
@url_option
@json_option
def status(url: str, as_json: bool) -> None:
    """Show the schema version, and the migrations applied and pending."""
    where, version, migrations, queue = run(_status(url))
    applied = [m for m in migrations if m.applied_at is not None]
    pending = [m for m in migrations if m.applied_at is None]
    if as_json:
        emit_json(
            {
                "url": where,
                "schema_version": version,
                "supported_version": SCHEMA_VERSION,
                "applied": [
                    {"version": m.version, "name": m.name, "applied_at": iso(m.applied_at)}
                    for m in applied
                ],
                "pending": [{"version": m.version, "name": m.name} for m in pending],
                "queue": queue,
            }
        )
        return
    click.echo(f"database  {where}")
    click.echo(f"schema    version {version} (this docketctl knows up to {SCHEMA_VERSION})")
    if queue is not None:
        tables = "present" if queue else "absent (db migrate --with-queue creates them)"
        click.echo(f"queue     Procrastinate's tables {tables}")
    rows = [[m.name, "applied", when(m.applied_at)] for m in applied]
    rows += [[m.name, "pending", ""] for m in pending]
    if rows:
        click.echo("")
        click.echo(table(["MIGRATION", "STATE", "APPLIED"], rows))
    if pending:
        click.echo("")
        click.echo(f"{len(pending)} pending: docketctl db migrate --url {where} applies them")
    elif version > SCHEMA_VERSION:
        click.echo("")
        click.echo("a newer docket-proto migrated this database: upgrade docket-proto here")


async def _status(url: str) -> tuple[str, int, list[MigrationRecord], bool | None]:
    async with open_existing(url, any_schema=True) as store:
        version, migrations = await store.schema_version(), await store.get_migrations()
        return store.url, version, migrations, await queue_tables(url)


async def _migrate(url: str, with_queue: bool = False) -> str:
    if with_queue:
        if not url.lower().startswith(("postgresql://", "postgres://")):
            raise Failure("--with-queue needs a postgresql:// URL: Procrastinate runs on Postgres")
        try:
            from ..durable import apply_queue_schema
        except ImportError as err:
            raise Failure(str(err)) from err
    store = await connect(url)
    async with store:
        applied = await store.migrate()
    if not applied:
        message = f"{store.url} is up to date (schema version {SCHEMA_VERSION})"
    else:
        names = ", ".join(f"{version:04d}" for version in applied)
        message = f"applied migration(s) {names} to {store.url}; schema version {SCHEMA_VERSION}"
    if with_queue:
        try:
            created = await apply_queue_schema(url)
        except Exception as err:  # psycopg's errors: say what failed, no traceback
            raise StoreError(f"could not create Procrastinate's tables: {err}") from err
        message += (
            "; created Procrastinate's tables"
            if created
            else "; Procrastinate's tables exist already (not upgraded)"
        )
    return message


async def _purge(url: str) -> str:
    async with open_existing(url) as store:
        count = await store.purge_expired()
        return f"purged {count} expired result(s) from {store.url}"
