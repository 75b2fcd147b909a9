"""Python names derived from proto names."""

from __future__ import annotations

import keyword
import re

_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
# Soft keywords of every supported Python, fixed rather than read from the running
# interpreter so the generated code does not depend on it (3.12 added ``type``).
_SOFT_KEYWORDS = frozenset({"_", "case", "match", "type"})


def snake_case(name: str) -> str:
    """``FetchProfile`` -> ``fetch_profile``, ``HTTPGet`` -> ``http_get``."""
    return _BOUNDARY.sub("_", name).lower()


def python_name(name: str) -> str:
    """A usable Python identifier: keywords get a trailing underscore (``from`` -> ``from_``)."""
    return f"{name}_" if keyword.iskeyword(name) or name in _SOFT_KEYWORDS else name


def is_identifier(name: str) -> bool:
    """True when ``name`` is a plain ASCII identifier."""
    return bool(_IDENTIFIER.match(name))


def is_dotted_name(name: str) -> bool:
    """True when ``name`` is a dotted path of identifiers (an exception class name)."""
    return bool(_DOTTED.match(name))


def module_of(proto_file: str) -> str:
    """The Python module protoc generates for ``proto_file`` (``a/b-c.proto`` -> ``a.b_c_pb2``)."""
    return proto_file[: -len(".proto")].replace("-", "_").replace("/", ".") + "_pb2"


def docket_module_path(proto_file: str) -> str:
    """The path of the module Docket generates for ``proto_file``."""
    return proto_file[: -len(".proto")].replace("-", "_") + "_docket.py"
