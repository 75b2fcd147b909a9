"""Reading the shipped SQL migrations (``migrations/<backend>/NNNN_name.sql``)."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Literal

from .base import SCHEMA_VERSION, MigrationRecord, SchemaVersionError

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file: its version, name (file stem) and SQL text."""

    version: int
    name: str
    sql: str


def load(backend: Literal["sqlite", "postgres"]) -> list[Migration]:
    """The backend's migrations in version order.

    Read through importlib.resources so that they are found in a wheel as in
    a checkout.
    """
    folder = resources.files(__package__) / "migrations" / backend
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), entry.name[:-4], entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    # A gap or a mismatch with SCHEMA_VERSION is a packaging bug: fail loudly.
    if [m.version for m in found] != list(range(1, SCHEMA_VERSION + 1)):
        raise RuntimeError(
            f"docket_runtime ships {backend} migrations {[m.version for m in found]}, "
            f"expected 1..{SCHEMA_VERSION}"
        )
    return found


def records(
    shipped: Iterable[Migration], applied: Iterable[tuple[int, str, datetime]]
) -> list[MigrationRecord]:
    """Every migration ``shipped`` or ``applied`` (version, name, time), by version; the
    shipped ones not applied are pending."""
    found = {m.version: MigrationRecord(m.version, m.name, None) for m in shipped}
    for version, name, applied_at in applied:
        found[version] = MigrationRecord(version, name, applied_at)
    return [found[version] for version in sorted(found)]


def too_new(found: int, url: str) -> SchemaVersionError:
    """The error for a database migrated by a newer release."""
    return SchemaVersionError(
        f"the Docket schema of {url} is at version {found}, but this docket-proto "
        f"supports versions up to {SCHEMA_VERSION}: a newer docket-proto migrated it. "
        "Upgrade docket-proto here (pip install -U docket-proto), or use another database."
    )


def sqlite_statements(script: str) -> list[str]:
    """Split a SQLite script into statements, using SQLite's own idea of where one ends.

    ``executescript`` would commit any open transaction first, and the runner
    needs every statement inside its own ``BEGIN IMMEDIATE``.
    """
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if _has_sql(pending):
                statements.append(pending.strip())
            pending = ""
    if _has_sql(pending):
        raise ValueError(f"unterminated SQL statement in migration: {pending.strip()[:80]!r}")
    return statements


def _has_sql(text: str) -> bool:
    return any(line.split("--", 1)[0].strip() for line in text.splitlines())
