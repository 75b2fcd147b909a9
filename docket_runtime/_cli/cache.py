"""``docketctl cache``: delete kept results."""

from __future__ import annotations

import click

from ._common import emit_json, json_option, open_existing, run, url_option


@click.group()
def cache() -> None:
    """Kept results: the GLOBAL cache, and expired rows."""


@cache.command()
@url_option
@click.option("--step", metavar="STEP", help="Only the results of this step (its name).")
@click.option(
    "--graph", metavar="GRAPH", help="Only the results written by this graph (its full name)."
)
@click.option("--expired", is_flag=True, help="Only expired results, of either scope.")
@json_option
def purge(url: str, step: str | None, graph: str | None, expired: bool, as_json: bool) -> None:
    """Delete kept results: GLOBAL ones of a --step or a --graph, or --expired ones.

    GLOBAL results are the cache shared by executions: the next run with the
    same inputs computes them again. Without --expired, WORKFLOW checkpoints
    are left alone: they belong to their execution (`docketctl rerun-from`
    forgets them, with the step runs). With --expired, the expired results of
    either scope go, of the --step or --graph if given. Rows written before
    schema version 3 name no graph: --graph does not find them.
    """
    if step is None and graph is None and not expired:
        raise click.UsageError("say what to purge: --step, --graph and/or --expired")
    deleted = run(_purge(url, step, graph, expired))
    if as_json:
        emit_json({"deleted": deleted})
        return
    what = [f"step {step}" if step else "", f"graph {graph}" if graph else ""]
    kind = "expired" if expired else "GLOBAL"
    scope = ", ".join(filter(None, what))
    click.echo(f"deleted {deleted} {kind} result(s)" + (f" of {scope}" if scope else ""))


async def _purge(url: str, step: str | None, graph: str | None, expired: bool) -> int:
    async with open_existing(url) as store:
        return await store.purge_results(
            scope=None if expired else "global", step=step, graph=graph, expired=expired
        )
