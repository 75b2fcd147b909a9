"""``docketctl views apply FILE... --url URL``: create the typed views ``docket-gen --views``
wrote.

:func:`views_group` builds the click group that docketctl lists (click is imported
only then).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .stores import StoreError, redact_url
from .views import apply_views

if TYPE_CHECKING:
    import click

__all__ = ["apply_message", "views_group"]

URL_ENV = "DOCKET_DATABASE_URL"
HELP = "typed SQL views of the kept step results"
APPLY_HELP = (
    "create or replace the views of FILE(s) (written by docket-gen --views) next to Docket's "
    "tables, each file in one transaction"
)
URL_HELP = f"sqlite:///path.db or postgresql://user@host/db (default: ${URL_ENV})"


def apply_message(url: str, files: Sequence[str]) -> str:
    """Apply ``files`` to ``url``; what the command prints."""
    names = asyncio.run(apply_views(url, files))
    return f"applied {len(names)} view(s) to {redact_url(url)}: {', '.join(names) or 'none'}"


def views_group() -> click.Group:
    """``views`` as a click group, for a click CLI: ``cli.add_command(views_group())``."""
    import click

    from ._cli._common import Failure

    @click.group("views", help=HELP[0].upper() + HELP[1:] + ".")
    def views() -> None:
        pass

    @views.command("apply", help=APPLY_HELP[0].upper() + APPLY_HELP[1:] + ".")
    @click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
    @click.option("--url", envvar=URL_ENV, required=True, help=URL_HELP)
    def apply(files: tuple[str, ...], url: str) -> None:
        try:
            click.echo(apply_message(url, files))
        except StoreError as err:
            raise Failure(str(err)) from err

    return views
