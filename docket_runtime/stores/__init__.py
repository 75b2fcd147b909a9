"""Where Docket keeps precious results, executions and step runs.

Open a store by URL::

    store = await open_store("sqlite:///state/docket.db", migrate=True)
    async with store:
        found = await store.get_results([key])

URLs:

- ``memory://``: dicts in this process (nothing survives it);
- ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` (three
  slashes then the path, as in SQLAlchemy), or a plain file path. Query
  options: ``busy_timeout`` (milliseconds, default 5000) and ``synchronous``
  (``full``, the default, ``normal`` or ``extra``);
- ``postgresql://user@host:5432/db`` (or ``postgres://``; libpq query
  parameters such as ``?options=-csearch_path%3Ddocket`` pass through): needs
  ``pip install 'docket-proto[postgres]'``.

The SQL that creates the tables is in ``migrations/``; ``docketctl db migrate
--url URL`` applies it.
"""

from __future__ import annotations

from typing import Literal, cast
from urllib.parse import parse_qsl, urlsplit

from . import _migrations
from .base import (
    SCHEMA_VERSION,
    AttemptRecord,
    AttemptStatus,
    Claim,
    ExecutionRecord,
    ExecutionStatus,
    MigrationRecord,
    SchemaVersionError,
    Scope,
    StepRunRecord,
    StepStatus,
    Store,
    StoredResult,
    StoreError,
    StoreUnavailable,
    StoreUrlError,
    default_owner,
    global_key,
    redact_url,
    workflow_key,
)
from .memory import MemoryStore

__all__ = [
    "SCHEMA_VERSION",
    "AttemptRecord",
    "AttemptStatus",
    "Claim",
    "ExecutionRecord",
    "ExecutionStatus",
    "MemoryStore",
    "MigrationRecord",
    "SchemaVersionError",
    "Scope",
    "StepRunRecord",
    "StepStatus",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "StoreUrlError",
    "StoredResult",
    "connect",
    "default_owner",
    "global_key",
    "open_store",
    "redact_url",
    "workflow_key",
]


async def connect(url: str) -> Store:
    """Connect to the store at ``url`` without looking at its schema.

    Most callers want :func:`open_store`; this is for tools that inspect or
    migrate the schema themselves.
    """
    if not isinstance(url, str) or not url.strip():
        raise StoreUrlError("a store URL is required, e.g. sqlite:///docket.db")
    url = url.strip()
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "memory":
        if url.lower() != "memory://":
            raise StoreUrlError(f"a memory store URL is just 'memory://', not {url!r}")
        return MemoryStore()
    if scheme in ("postgresql", "postgres"):
        return await _open_postgres(url)
    if scheme == "sqlite" or not scheme:
        return await _open_sqlite(url, scheme)
    raise StoreUrlError(
        f"unknown store URL scheme {scheme!r} in {redact_url(url)!r}: "
        "use memory://, sqlite:///path.db or postgresql://..."
    )


async def open_store(url: str, *, migrate: bool = False) -> Store:
    """Open the store at ``url`` and make sure its schema is the one this release knows.

    With ``migrate=True`` missing migrations are applied first; otherwise a
    database that lacks them is refused with a message saying how to apply
    them. A database migrated by a newer release is always refused
    (:class:`SchemaVersionError`).
    """
    store = await connect(url)
    try:
        if migrate:
            await store.migrate()
            return store
        found = await store.schema_version()
        if found > SCHEMA_VERSION:
            raise _migrations.too_new(found, store.url)
        if found < SCHEMA_VERSION:
            what = "has no Docket tables" if found == 0 else f"is at schema version {found}"
            raise SchemaVersionError(
                f"{store.url} {what}; this docket-proto needs version {SCHEMA_VERSION}. "
                f"Run `docketctl db migrate --url {store.url}`, or open it with migrate=True."
            )
    except BaseException:
        await store.close()
        raise
    return store


async def _open_sqlite(url: str, scheme: str) -> Store:
    from .sqlite import SqliteStore

    if not scheme:
        return await SqliteStore.open(url)
    parts = urlsplit(url)
    if parts.netloc:
        raise StoreUrlError(
            f"a SQLite URL has no host: write sqlite:///relative.db or sqlite:////abs.db, "
            f"not {url!r}"
        )
    # urlsplit keeps the leading "/" of the path: "sqlite:///a.db" -> "/a.db".
    path = parts.path[1:]
    if not path:
        raise StoreUrlError(f"no file path in SQLite URL {url!r}")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = set(options) - {"busy_timeout", "synchronous"}
    if unknown:
        raise StoreUrlError(
            f"unknown SQLite URL option(s) {sorted(unknown)} in {url!r}: "
            "known are busy_timeout and synchronous"
        )
    try:
        busy = int(options.get("busy_timeout", "5000"))
    except ValueError:
        raise StoreUrlError(f"busy_timeout must be milliseconds, in {url!r}") from None
    synchronous = options.get("synchronous", "full").lower()
    if synchronous not in ("normal", "full", "extra"):
        raise StoreUrlError(f"synchronous must be normal, full or extra, in {url!r}")
    return await SqliteStore.open(
        path,
        busy_timeout_ms=busy,
        synchronous=cast(Literal["normal", "full", "extra"], synchronous),
    )


async def _open_postgres(url: str) -> Store:
    try:
        from .postgres import PostgresStore
    except ImportError as err:
        raise StoreError(
            f"{redact_url(url)} needs the Postgres driver: "
            "pip install 'docket-proto[postgres]' (psycopg and psycopg-pool)"
        ) from err
    return await PostgresStore.open(url)
