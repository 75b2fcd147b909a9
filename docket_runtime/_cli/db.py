"""``docketctl db``: create, upgrade and purge Docket's tables."""

from __future__ import annotations

import click

from ..stores import SCHEMA_VERSION, StoreError, connect
from ._common import Failure, open_existing, run, url_option


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
