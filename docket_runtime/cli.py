"""The ``docket`` command: runtime-side maintenance of a store.

::

    docket db migrate --url sqlite:///docket.db   # create or upgrade the tables
    docket db migrate --url postgresql://... --with-queue
                                                  # ... and Procrastinate's, for durable workers
    docket db purge --url postgresql://...        # delete expired cached results
    docket plan gen.shop.checkout_docket:Checkout --format mermaid
                                                  # a graph's plan as text, Mermaid or DOT
    docket views apply gen/shop/checkout_views.sqlite.sql --url sqlite:///docket.db
                                                  # the typed views docket-gen --views wrote

``--url`` defaults to the ``DOCKET_DATABASE_URL`` environment variable. Plain
argparse, so that the runtime needs nothing beyond protobuf.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from . import _cli_plan, _cli_views
from .stores import SCHEMA_VERSION, StoreError, connect, open_store

__all__ = ["main"]

_URL_ENV = "DOCKET_DATABASE_URL"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="docket", description="Maintain the database where Docket keeps results."
    )
    commands = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")
    db = commands.add_parser("db", help="database maintenance", description="Database maintenance.")
    actions = db.add_subparsers(dest="action", required=True, metavar="ACTION")
    url_help = f"memory://, sqlite:///path.db or postgresql://user@host/db (default: ${_URL_ENV})"
    for name, text in (
        ("migrate", "create Docket's tables, or apply the migrations they lack"),
        ("purge", "delete cached results whose ttl has expired"),
    ):
        action = actions.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        default = os.environ.get(_URL_ENV) or None
        action.add_argument("--url", default=default, required=default is None, help=url_help)
        if name == "migrate":
            action.add_argument(
                "--with-queue",
                action="store_true",
                help="also create Procrastinate's tables (Postgres; needs the procrastinate "
                "extra), unless procrastinate_jobs exists already",
            )
    _cli_plan.register(commands)
    _cli_views.register(commands)
    return parser


async def _migrate(url: str, with_queue: bool = False) -> str:
    if with_queue:
        if not url.lower().startswith(("postgresql://", "postgres://")):
            raise StoreError(
                "--with-queue needs a postgresql:// URL: Procrastinate runs on Postgres"
            )
        try:
            from .durable import apply_queue_schema
        except ImportError as err:
            raise StoreError(str(err)) from err
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
    store = await open_store(url)
    async with store:
        count = await store.purge_expired()
    return f"purged {count} expired result(s) from {store.url}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 error, 2 usage)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if hasattr(args, "handler"):
        return int(args.handler(args))
    try:
        if args.action == "migrate":
            message = asyncio.run(_migrate(args.url, args.with_queue))
        else:
            message = asyncio.run(_purge(args.url))
    except StoreError as err:
        # Our errors say what happened and what to do: no traceback.
        print(f"docket: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
