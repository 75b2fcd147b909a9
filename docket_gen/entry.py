"""Console-script entry points; they explain a missing generator extra instead of a traceback."""

from __future__ import annotations

import sys

_HINT = (
    "{name} needs Docket's generator toolchain ({missing} is not installed): "
    "pip install 'docket-proto[gen]'"
)


def docket_gen() -> None:
    """``docket-gen``."""
    try:
        from .cli import main
    except ModuleNotFoundError as exc:
        sys.exit(_HINT.format(name="docket-gen", missing=exc.name))
    main()


def protoc_gen_docket() -> None:
    """``protoc-gen-docket``."""
    try:
        from .plugin import main
    except ModuleNotFoundError as exc:
        sys.exit(_HINT.format(name="protoc-gen-docket", missing=exc.name))
    main()
