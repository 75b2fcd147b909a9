"""Typed SQL views over ``docket_results``, one per kept step (``docket-gen --views``).

A step's results are kept when its cache scope is ``WORKFLOW`` or ``GLOBAL``,
or its delivery is ``AT_MOST_ONCE``. The runtime writes each kept output as
proto3 JSON with the proto field names and every field printed, so the view
reads ``output_json`` by field name and casts each value to its SQL type:

=====================================  ====================  ==========================
proto                                  Postgres              SQLite
=====================================  ====================  ==========================
int32, sint32, sfixed32                integer               INTEGER (json_extract)
uint32, fixed32                        bigint                INTEGER
int64, sint64, sfixed64 (JSON string)  bigint                CAST(... AS INTEGER)
uint64, fixed64 (JSON string)          numeric               CAST(... AS INTEGER)
float, double                          double precision      REAL
bool                                   boolean               INTEGER (0/1)
string                                 text                  TEXT
bytes                                  text (base64)         TEXT (base64)
enum                                   text (value name)     TEXT (value name)
google.protobuf.Timestamp              timestamptz           TEXT (RFC 3339)
google.protobuf.Duration               interval              TEXT (``"1.5s"``)
wrappers (Int64Value, ...)             as the wrapped type   as the wrapped type
message (depth 1)                      its fields, flattened: ``address_city``
message (depth 2), repeated, map,      jsonb                 TEXT (JSON)
Struct, Value, ListValue, Any
=====================================  ====================  ==========================

uint64 is ``numeric`` on Postgres because a value above 2^63 - 1 would make a
``bigint`` cast, and so every query on the view, fail. Views are named
``<package>_<graph>_<step>`` in snake_case; columns after the field names
(``<field>_<subfield>`` when flattened), with a trailing ``_`` when a name is
taken (by ``execution_id``, ``created_at``, ``expires_at`` or another column).
Names longer than Postgres' 63 bytes are cut and end with a hash.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

from google.protobuf import descriptor_pb2

from docket_runtime._persistence import persisted_scope
from docket_runtime.plan import Delivery, Step

from .model import FileModel, GraphModel
from .names import snake_case
from .reader import Request

_F = descriptor_pb2.FieldDescriptorProto
_MAX_DEPTH = 2
_MAX_IDENTIFIER = 63
_METADATA = ("execution_id", "created_at", "expires_at")
_SIMPLE = re.compile(r"^[a-z_][a-z0-9_]*$")

# SQL kinds of a column: how its JSON value is read and cast.
_KINDS = {
    _F.TYPE_INT32: "int",
    _F.TYPE_SINT32: "int",
    _F.TYPE_SFIXED32: "int",
    _F.TYPE_UINT32: "uint32",
    _F.TYPE_FIXED32: "uint32",
    _F.TYPE_INT64: "int64",
    _F.TYPE_SINT64: "int64",
    _F.TYPE_SFIXED64: "int64",
    _F.TYPE_UINT64: "uint64",
    _F.TYPE_FIXED64: "uint64",
    _F.TYPE_FLOAT: "double",
    _F.TYPE_DOUBLE: "double",
    _F.TYPE_BOOL: "bool",
    _F.TYPE_STRING: "text",
    _F.TYPE_BYTES: "text",
    _F.TYPE_ENUM: "text",
}
_WELL_KNOWN = {
    "google.protobuf.Timestamp": "timestamp",
    "google.protobuf.Duration": "duration",
    "google.protobuf.FieldMask": "text",
    "google.protobuf.DoubleValue": "double",
    "google.protobuf.FloatValue": "double",
    "google.protobuf.Int64Value": "int64",
    "google.protobuf.UInt64Value": "uint64",
    "google.protobuf.Int32Value": "int",
    "google.protobuf.UInt32Value": "uint32",
    "google.protobuf.BoolValue": "bool",
    "google.protobuf.StringValue": "text",
    "google.protobuf.BytesValue": "text",
}
_POSTGRES_CASTS = {
    "int": "integer",
    "uint32": "bigint",
    "int64": "bigint",
    "uint64": "numeric",
    "double": "double precision",
    "bool": "boolean",
    "timestamp": "timestamptz",
    "duration": "interval",
}
# Reserved words of Postgres and SQLite that a field may be named after: quoted as columns.
_RESERVED_WORDS = """
    abort action add after all alter always analyze and any array as asc asymmetric attach
    autoincrement before begin between both by cascade case cast check collate column commit
    conflict constraint create cross current current_catalog current_date current_role
    current_time current_timestamp current_user database default deferrable deferred delete
    desc detach distinct do drop each else end escape except exclude exclusive exists explain
    fail false fetch filter first following for foreign from full generated glob grant group
    groups having if ignore immediate in index indexed initially inner insert instead intersect
    into is isnull join key last lateral leading left like limit localtime localtimestamp match
    materialized natural no not nothing notnull null nulls of offset on only or order others
    outer over partition placing plan pragma preceding primary query raise range recursive
    references regexp reindex release rename replace restrict returning right rollback row rows
    savepoint select session_user set some symmetric table temp temporary then ties to trailing
    transaction trigger true unbounded union unique update user using vacuum values variadic
    view virtual when where window with without
"""
_RESERVED = frozenset(_RESERVED_WORDS.split())


@dataclass(frozen=True)
class Column:
    """One typed column of a view: its name, the JSON keys that reach it and its kind."""

    name: str
    path: tuple[str, ...]
    kind: str  # a value of _KINDS or _WELL_KNOWN, or "json"


@dataclass(frozen=True)
class View:
    """The view of one kept step."""

    name: str
    graph: GraphModel
    step: Step
    columns: tuple[Column, ...]

    @property
    def scope(self) -> str:
        return persisted_scope(self.step) or "workflow"


def views_of(file: FileModel, index: Request) -> list[View]:
    """The views of every kept step of ``file``'s graphs that is not sensitive, in proto
    order."""
    found = []
    for graph in file.graphs:
        package = graph.full_name.rpartition(".")[0]
        for step in graph.steps:
            if persisted_scope(step.spec) is None:  # the runtime keeps nothing of it
                continue
            if step.spec.sensitive:  # its rows have no JSON to read
                continue
            parts = [package.replace(".", "_"), snake_case(graph.name), snake_case(step.spec.name)]
            name = identifier("_".join(p for p in parts if p).lower())
            columns = _unique(list(_columns(index, step.spec.output, (), "", 1)))
            found.append(View(name, graph, step.spec, tuple(columns)))
    return found


def identifier(name: str) -> str:
    """``name`` cut to Postgres' 63 bytes, ending with a hash of the whole when cut."""
    if len(name.encode()) <= _MAX_IDENTIFIER:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name.encode()[: _MAX_IDENTIFIER - 9].decode(errors='ignore')}_{digest}"


def _columns(
    index: Request, message: str, path: tuple[str, ...], prefix: str, depth: int
) -> Iterator[Column]:
    for field in index.message_protos[message].field:
        keys = (*path, field.name)
        name = prefix + snake_case(field.name).lower()
        type_name = field.type_name.lstrip(".")
        if field.label == _F.LABEL_REPEATED:
            yield Column(name, keys, "json")  # maps too: a map is a repeated entry message
        elif field.type in _KINDS:
            yield Column(name, keys, _KINDS[field.type])
        elif type_name in _WELL_KNOWN:
            yield Column(name, keys, _WELL_KNOWN[type_name])
        elif depth < _MAX_DEPTH and not type_name.startswith("google.protobuf."):
            yield from _columns(index, type_name, keys, f"{name}_", depth + 1)
        else:
            yield Column(name, keys, "json")


def _unique(columns: list[Column]) -> list[Column]:
    taken = set(_METADATA)
    unique = []
    for column in columns:
        name = identifier(column.name)
        while name in taken:
            name = identifier(name + "_")
        taken.add(name)
        unique.append(Column(name, column.path, column.kind))
    return unique


def quoted(name: str) -> str:
    """``name`` as a SQL identifier: quoted when reserved or not plain lower case."""
    if _SIMPLE.match(name) and name not in _RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# Rendering ------------------------------------------------------------------------------------


def render_views(file: FileModel, views: list[View], dialect: str) -> str:
    """The SQL file of ``views`` for ``dialect`` (``postgres`` or ``sqlite``)."""
    title = "Postgres" if dialect == "postgres" else "SQLite"
    out_name = views_path(file.name, dialect).rsplit("/", 1)[-1]
    lines = [
        f"-- Typed views of the results Docket keeps for the graphs of {file.name} ({title}).",
        "--",
        "-- Generated by docket-gen --views from the proto file: do not edit.",
        f"-- Apply next to Docket's tables: docketctl views apply {out_name} --url URL",
    ]
    for view in views:
        lines += ["", *_view_sql(view, dialect)]
    return "\n".join(lines) + "\n"


def views_path(proto_file: str, dialect: str) -> str:
    """The path of the views file of ``proto_file`` for ``dialect``."""
    return proto_file[: -len(".proto")].replace("-", "_") + f"_views.{dialect}.sql"


def _view_sql(view: View, dialect: str) -> list[str]:
    step = view.step
    kept = "by content (GLOBAL)" if view.scope == "global" else "per execution (WORKFLOW)"
    if step.delivery is Delivery.AT_MOST_ONCE:
        kept += ", at most once"
    lines = [f"-- {view.graph.full_name}.{step.name} -> {step.output}: kept {kept}."]
    if dialect == "postgres":
        lines.append(f"CREATE OR REPLACE VIEW {quoted(view.name)} AS")
    else:
        name = quoted(view.name)
        lines += [f"DROP VIEW IF EXISTS {name};", f"CREATE VIEW {name} AS"]
    select = [*_METADATA]
    for column in view.columns:
        reader = _postgres if dialect == "postgres" else _sqlite
        select.append(f"{reader(column)} AS {quoted(column.name)}")
    lines.append("SELECT " + select[0] + ",")
    lines += [f"       {item}," for item in select[1:-1]]
    if len(select) > 1:
        lines.append(f"       {select[-1]}")
    lines.append("FROM docket_results")
    lines.append(
        f"WHERE step = {_literal(step.name)} AND output_type = {_literal(step.output)}"
        f" AND scope = {_literal(view.scope)};"
    )
    return lines


def _postgres(column: Column) -> str:
    parents = "".join(f"->{_literal(key)}" for key in column.path[:-1])
    last = _literal(column.path[-1])
    if column.kind == "json":
        return f"output_json{parents}->{last}"
    text = f"output_json{parents}->>{last}"
    cast = _POSTGRES_CASTS.get(column.kind)
    return f"({text})::{cast}" if cast else text


def _sqlite(column: Column) -> str:
    extract = f"json_extract(output_json, {_literal('$.' + '.'.join(column.path))})"
    if column.kind in ("int64", "uint64"):
        return f"CAST({extract} AS INTEGER)"
    return extract
