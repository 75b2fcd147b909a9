"""What every command shares: its options, its errors and exit codes, opening the store.

Exit codes: 0 done; 1 not found (a database, an execution, a step), refused
(the command would be wrong in this state) or failed (the database is
unreachable); 2 usage (click's own). An error is one line on stderr,
``docketctl: error: ...``, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any, Final, TypeVar
from urllib.parse import urlsplit

import click

from ..codec import MissingKey, PayloadCodec
from ..stores import Store, StoreError, connect, open_store

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

URL_ENV: Final = "DOCKET_DATABASE_URL"

NOT_FOUND: Final = 1
"""Exit code: not found, refused or failed."""


class Failure(click.ClickException):
    """What a command says when it stops: one line on stderr, exit code 1."""

    exit_code = NOT_FOUND

    def show(self, file: IO[Any] | None = None) -> None:
        # A driver's message may span lines (psycopg adds hints): keep it to one.
        lines = (line.strip() for line in self.format_message().splitlines())
        click.echo(f"docketctl: error: {' '.join(filter(None, lines))}", err=True, file=file)


def url_option(command: F) -> F:
    """``--url`` (default ``$DOCKET_DATABASE_URL``)."""
    return click.option(
        "--url",
        envvar=URL_ENV,
        show_envvar=True,
        required=True,
        metavar="URL",
        help="The database: sqlite:///path.db or postgresql://user@host/db.",
    )(command)


def json_option(command: F) -> F:
    """``--json``: a JSON document on stdout instead of text for people."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of text."
    )(command)


def run(body: Coroutine[Any, Any, T]) -> T:
    """Run a command's body; a store error, or a payload whose key is missing, becomes a
    :class:`Failure` (one line, exit 1)."""
    try:
        return asyncio.run(body)
    except (StoreError, MissingKey) as err:
        raise Failure(str(err)) from err


def emit_json(data: Any) -> None:
    """``data`` as indented JSON on stdout."""
    click.echo(json.dumps(data, indent=2))


def sqlite_path(url: str) -> Path | None:
    """The file a SQLite store URL (or a plain path) names; ``None`` for other URLs."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "sqlite":
        path = urlsplit(url).path[1:]
        return Path(path) if path else None
    return None if scheme else Path(url)


@asynccontextmanager
async def open_existing(
    url: str, *, any_schema: bool = False, codec: PayloadCodec | None = None
) -> AsyncIterator[Store]:
    """The store at ``url``, which must exist: a missing SQLite file is an error, never
    created here (``db migrate`` creates it). Its tables must be at the schema version of
    this release, unless ``any_schema`` (for commands that report on the schema).
    ``codec`` is bound to it."""
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise Failure(
            f"no SQLite database at {path.absolute()}: check --url "
            f"(`docketctl db migrate --url {url}` creates one)"
        )
    store = await (connect(url) if any_schema else open_store(url))
    store.codec = codec
    async with store:
        yield store
