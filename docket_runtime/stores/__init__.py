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
  parameters such as ``?options=-csearch_path%3Ddocket`` or
  ``connect_timeout`` pass through): needs ``pip install
  'docket-proto[postgres]'``. Query options of the connection pool:
  ``pool_min_size`` (default 2), ``pool_max_size`` (default 10) and
  ``pool_timeout`` (seconds an operation waits for a free connection,
  default 10).

The SQL that creates the tables is in ``migrations/``; ``docketctl db migrate
--url URL`` applies it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal, cast
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from ..codec import PayloadCodec
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
    StepEnd,
    StepRunRecord,
    StepStatus,
    Store,
    StoredResult,
    StoreError,
    StoreRejected,
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
    "StepEnd",
    "StepRunRecord",
    "StepStatus",
    "Store",
    "StoreError",
    "StoreRejected",
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
    migrate the schema themselves. A missing SQLite file is created.
    """
    return await _connect(url, create=True)


async def _connect(url: str, *, create: bool) -> Store:
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
        return await _open_sqlite(url, scheme, create)
    raise StoreUrlError(
        f"unknown store URL scheme {scheme!r} in {redact_url(url)!r}: "
        "use memory://, sqlite:///path.db or postgresql://..."
    )


async def open_store(
    url: str, *, migrate: bool = False, codec: PayloadCodec | None = None
) -> Store:
    """Open the store at ``url`` and make sure its schema is the one this release knows.

    With ``migrate=True`` missing migrations are applied first; otherwise a
    database that lacks them is refused with a message saying how to apply
    them, and a SQLite file that does not exist is not created. A database
    migrated by a newer release is always refused (:class:`SchemaVersionError`).
    ``codec`` (:mod:`docket_runtime.codec`) encodes the payloads written
    through the store and decodes those read (``Store.codec``).
    """
    store = await _connect(url, create=migrate)
    store.codec = codec
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


async def _open_sqlite(url: str, scheme: str, create: bool) -> Store:
    from .sqlite import SqliteStore

    if not scheme:
        return await SqliteStore.open(url, create=create)
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
        create=create,
    )


_POOL_OPTIONS = {
    "pool_min_size": "min_size",
    "pool_max_size": "max_size",
    "pool_timeout": "timeout",
}
_POOL_DEFAULTS = {"min_size": 2, "max_size": 10}  # PostgresStore.open's
_POOL_VALUES: dict[str, tuple[str, Callable[[float], bool]]] = {
    "pool_min_size": ("a whole number of connections, 0 or more", lambda v: v >= 0),
    "pool_max_size": ("a whole number of connections, 1 or more", lambda v: v >= 1),
    "pool_timeout": ("a number of seconds above 0", lambda v: v > 0),
}


async def _open_postgres(url: str) -> Store:
    try:
        from .postgres import PostgresStore
    except ImportError as err:
        raise StoreError(
            f"{redact_url(url)} needs the Postgres driver: "
            "pip install 'docket-proto[postgres]' (psycopg and psycopg-pool)"
        ) from err
    conninfo, pool = _pool_options(url)
    return await PostgresStore.open(conninfo, **pool)


def _pool_options(url: str) -> tuple[str, dict[str, Any]]:
    """``url`` without Docket's pool parameters (libpq would refuse them), and their values.

    The other parameters are kept as written, for libpq to decode.
    """
    parts = urlsplit(url)
    given: dict[str, float] = {}
    kept: list[str] = []
    for item in parts.query.split("&") if parts.query else ():
        name, _, text = item.partition("=")
        if name not in _POOL_OPTIONS:
            kept.append(item)
            continue
        try:
            value = float(text) if name == "pool_timeout" else int(text)
        except ValueError:
            value = -1
        what, fits = _POOL_VALUES[name]
        if not (math.isfinite(value) and fits(value)):
            raise StoreUrlError(f"{name} must be {what}, not {text!r}, in {redact_url(url)!r}")
        given[name] = value
    if not given:
        return url, {}
    low, high = given.get("pool_min_size"), given.get("pool_max_size")
    if low is not None and high is not None and low > high:
        raise StoreUrlError(
            f"pool_min_size ({low:g}) is above pool_max_size ({high:g}), in {redact_url(url)!r}"
        )
    pool: dict[str, Any] = {_POOL_OPTIONS[name]: value for name, value in given.items()}
    # One bound alone moves the other's default out of its way.
    if high is not None and low is None:
        pool["min_size"] = min(_POOL_DEFAULTS["min_size"], int(high))
    if low is not None and high is None:
        pool["max_size"] = max(_POOL_DEFAULTS["max_size"], int(low))
    return urlunsplit(parts._replace(query="&".join(kept))), pool
