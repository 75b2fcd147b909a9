"""``docketctl``: look after the database where Docket keeps executions and results.

::

    docketctl db migrate --url sqlite:///docket.db   # create or upgrade the tables
    docketctl db migrate --url postgresql://... --with-queue
                                                    # ... and Procrastinate's, for durable workers
    docketctl db purge --url postgresql://...       # delete expired cached results

``--url`` defaults to the ``DOCKET_DATABASE_URL`` environment variable; see
``docketctl --help`` for every command, and docs/operations.md.

The command is ``docketctl``, not ``docket``: pydocket (another job queue)
installs a ``docket`` console script too, and pip lets one package overwrite
the other's script without a word.

It needs click (``pip install 'docket-proto[cli]'``), which the runtime does
not: this module is only the entry point (the console script, and ``python -m
docket_runtime.cli``); the commands are in :mod:`docket_runtime._cli`,
imported when the command runs, so ``import docket_runtime.cli`` works
without click and ``docketctl`` without it says what to install.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]

_NO_CLICK = "docketctl needs click, which is not installed: pip install 'docket-proto[cli]'"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``docketctl``; return the exit status (0 ok, 1 not found/refused/failed, 2 usage)."""
    try:
        from ._cli import run
    except ModuleNotFoundError as err:
        if err.name != "click":
            raise
        print(_NO_CLICK, file=sys.stderr)
        return 1
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
