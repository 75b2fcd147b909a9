"""Files the generator ships: the Jinja2 templates and the options proto.

In a wheel they live inside the packages (``docket_gen/_templates``,
``docket_runtime/_proto``); in a source checkout or an editable install they
are read from the repository's ``templates/`` and ``protos/`` folders.
"""

from __future__ import annotations

from pathlib import Path

import docket_runtime

_GEN = Path(__file__).resolve().parent
_RUNTIME = Path(docket_runtime.__file__).resolve().parent
_OPTIONS = Path("docket_runtime") / "options.proto"


def templates_dir() -> Path:
    """The folder holding the module templates."""
    return _first_dir([_GEN / "_templates", _GEN.parent / "templates"], "templates")


def options_include_dir() -> Path:
    """The include root under which ``docket_runtime/options.proto`` lives."""
    candidates = [_RUNTIME / "_proto", _RUNTIME.parent / "protos"]
    for candidate in candidates:
        if (candidate / _OPTIONS).is_file():
            return candidate
    raise FileNotFoundError(
        f"{_OPTIONS} not found in {', '.join(map(str, candidates))}; reinstall docket-proto"
    )


def _first_dir(candidates: list[Path], what: str) -> Path:
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"Docket's {what} not found in {', '.join(map(str, candidates))}; reinstall docket-proto"
    )
