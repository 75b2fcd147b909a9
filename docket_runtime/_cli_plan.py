"""``docketctl plan MODULE:Graph``: print a graph's plan as text, Mermaid or DOT.

The logic is :func:`load_plan` and :func:`plan_text`; :func:`plan_command`
builds the click command that docketctl lists (click is imported only then).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import diagram
from .plan import GraphPlan

if TYPE_CHECKING:
    import click

__all__ = ["PlanNotFound", "load_plan", "plan_command", "plan_text"]

HELP = "print a graph's plan: its steps, their options and how they connect"
SPEC_HELP = (
    "the graph: MODULE:NAME, where NAME is a generated graph class (UserGraph) or a plan "
    "(USER_GRAPH_PLAN); MODULE alone when it holds one graph"
)
TARGET_HELP = "only the steps that produce this type (a full name, or relative to the package)"
PATH_HELP = "a folder to import from, e.g. the generated gen/ (repeatable; the current one is too)"


class PlanNotFound(LookupError):
    """The module or the graph named on the command line cannot be found."""


def load_plan(spec: str, paths: Sequence[str] = ()) -> GraphPlan:
    """The plan named by ``MODULE:NAME`` (or ``MODULE``), importing with ``paths`` on sys.path."""
    module_name, _, attribute = spec.partition(":")
    if not module_name:
        raise PlanNotFound(f"{spec!r} names no module: write MODULE:Graph")
    for folder in reversed([*paths, os.getcwd()]):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise PlanNotFound(
            f"cannot import {module_name}: {err}; add the folder it lives in with --path"
        ) from err
    if not attribute:
        plans = {name: value for name, value in vars(module).items() if _plan_of(value)}
        found = {id(_plan_of(value)): name for name, value in sorted(plans.items())}
        if len(found) != 1:
            names = ", ".join(sorted(n for n, v in plans.items() if isinstance(v, type))) or "none"
            raise PlanNotFound(f"{module_name} holds {len(found)} graphs ({names}): name one")
        attribute = next(iter(found.values()))
    value: object = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise PlanNotFound(f"{module_name} has no {attribute}")
        value = getattr(value, part)
    plan = _plan_of(value)
    if plan is None:
        raise PlanNotFound(f"{spec} is not a graph: name a generated graph class or its plan")
    return plan


def _plan_of(value: object) -> GraphPlan | None:
    if isinstance(value, GraphPlan):
        return value
    found = getattr(value, "plan", None)
    return found if isinstance(found, GraphPlan) else None


def plan_text(
    spec: str, *, target: str | None = None, format: str = "text", paths: Sequence[str] = ()
) -> str:
    """What ``docketctl plan`` prints."""
    plan = load_plan(spec, paths)
    try:
        return diagram.render(plan, format, target=target)
    except KeyError as err:
        raise PlanNotFound(err.args[0]) from err


def plan_command() -> click.Command:
    """``plan`` as a click command, for a click CLI: ``cli.add_command(plan_command())``."""
    import click

    from ._cli._common import Failure

    @click.command("plan", help=HELP[0].upper() + HELP[1:] + ".")
    @click.argument("graph", metavar="MODULE:Graph")
    @click.option("--target", "-t", default=None, help=TARGET_HELP)
    @click.option("--format", "-f", "format_", type=click.Choice(diagram.FORMATS), default="text")
    @click.option("--path", "-p", "paths", multiple=True, metavar="DIR", help=PATH_HELP)
    def plan(graph: str, target: str | None, format_: str, paths: tuple[str, ...]) -> None:
        try:
            click.echo(plan_text(graph, target=target, format=format_, paths=paths), nl=False)
        except PlanNotFound as err:
            raise Failure(err.args[0]) from err

    return plan
