"""Procrastinate's tables, created once."""

from __future__ import annotations

from typing import Final

import psycopg
from procrastinate.schema import SchemaManager

_SCHEMA_LOCK: Final = int.from_bytes(b"dkqueue", "big")


async def apply_queue_schema(url: str) -> bool:
    """Create Procrastinate's tables at ``url`` unless ``procrastinate_jobs`` exists.

    Procrastinate's ``schema --apply`` cannot run twice; this can. It runs in
    one transaction under an advisory lock, in the first schema of the
    connection's ``search_path`` (as Docket's own tables). ``True`` if it
    created them. An existing schema is not upgraded: apply Procrastinate's
    migrations for that (``procrastinate schema --migrations-path``).
    """
    connect = psycopg.AsyncConnection.connect(url, autocommit=True)
    async with await connect as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        cur = await conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
        row = await cur.fetchone()
        if row is not None and row[0]:
            return False
        await conn.execute(SchemaManager.get_schema())
    return True
