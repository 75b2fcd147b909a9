"""The commands of ``docketctl`` (the entry point is :mod:`docket_runtime.cli`).

One module per command group: ``executions`` (:mod:`.executions`); the
commands that change one execution, ``rerun-from``, ``settle``, ``cancel``
and ``retry`` (:mod:`.control`); ``cache`` (:mod:`.cache`); ``db``
(:mod:`.db`). Shared by all of them: the ``--url`` and ``--json`` options,
:class:`Failure` and the exit codes, opening a store that must exist
(:mod:`._common`); tables and times (:mod:`._render`); whether an execution is
stuck, and its queue jobs (:mod:`._health`); loading a generated graph's plan
(:mod:`._graphs`).

To add a command group: write a module defining a ``click.Group`` whose
commands take :func:`~._common.url_option` (and :func:`~._common.json_option`
when they print data), run their async body with :func:`~._common.run` and
raise :class:`~._common.Failure` to stop with a message; then add the group to
:data:`COMMANDS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import click

from .._cli_plan import plan_command
from .._cli_views import views_group
from .cache import cache
from .control import cancel, rerun_from, retry, settle
from .db import db
from .executions import executions

__all__ = ["COMMANDS", "docketctl", "run"]

COMMANDS: Final[tuple[click.Command, ...]] = (
    executions,
    rerun_from,
    settle,
    cancel,
    retry,
    cache,
    plan_command(),
    views_group(),
    db,
)
"""The top-level commands and groups, in the order ``--help`` lists them."""


class _InOrder(click.Group):
    """A group whose help lists its commands in the order they were added."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


@click.group(
    cls=_InOrder,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="docket-proto", prog_name="docketctl")
def docketctl() -> None:
    """Look after the database where Docket keeps executions and results.

    Every command takes --url (default: $DOCKET_DATABASE_URL). Exit status:
    0 done, 1 not found, refused or failed, 2 usage.
    """


for _command in COMMANDS:
    docketctl.add_command(_command)


def run(argv: Sequence[str] | None = None) -> int:
    """Run ``docketctl`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    try:
        docketctl.main(
            args=None if argv is None else list(argv),
            prog_name="docketctl",
            standalone_mode=False,
        )
    except click.ClickException as err:
        err.show()
        return err.exit_code
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.Abort:
        click.echo("Aborted.", err=True)
        return 130
    return 0
