"""Loading a generated graph for the commands that need its plan (``--graph MODULE:Graph``),
and the store's payload codec (``--codec MODULE:NAME``).

The database does not hold a graph's plan: forgetting the steps downstream of
one needs its dependencies, and settling a step needs its output message type.
Both are in the generated module, imported here from the current directory or
a ``--path``; the steps' implementations are not needed.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

import click

from .._graph import Graph
from ..codec import PayloadCodec
from ..plan import GraphPlan
from ._common import Failure

F = TypeVar("F", bound=Callable[..., Any])

CODEC_ENV: Final = "DOCKET_CODEC"


def graph_options(command: F, *, required: bool = True) -> F:
    """``--graph MODULE:Graph`` and ``--path DIR`` (``--graph`` optional unless ``required``)."""
    command = click.option(
        "--path",
        "paths",
        multiple=True,
        type=click.Path(exists=True, file_okay=False),
        help="A folder to import the generated module from (repeatable; the current "
        "folder is always searched).",
    )(command)
    return click.option(
        "--graph",
        "graph_spec",
        required=required,
        metavar="MODULE[:GRAPH]",
        help="The generated graph, e.g. shop.orders_docket:Checkout (the class may be left "
        "out when the module has one graph, or one that the execution ran).",
    )(command)


def codec_option(command: F) -> F:
    """``--codec MODULE:NAME`` (default ``$DOCKET_CODEC``): the store's payload codec."""
    return click.option(
        "--codec",
        "codec_spec",
        envvar=CODEC_ENV,
        show_envvar=True,
        metavar="MODULE:NAME",
        help="The payload codec of the store, e.g. shop.keys:codec: an object of the module "
        "(or a function of it returning one) that decodes encrypted results and inputs, "
        "imported like --graph.",
    )(command)


def load_codec(spec: str | None, paths: Sequence[str]) -> PayloadCodec | None:
    """The codec ``spec`` names (``module:name``, an object or a function returning one)."""
    if spec is None:
        return None
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise click.BadParameter(f"{spec!r}: write MODULE:NAME", param_hint="--codec")
    found = getattr(_import(module_name, paths), attr, None)
    if callable(found) and not isinstance(found, PayloadCodec):
        try:
            found = found()
        except Exception as err:  # the user's function raised: say what, no traceback
            raise Failure(f"{spec}() failed: {type(err).__name__}: {err}") from err
    if not isinstance(found, PayloadCodec):
        raise Failure(
            f"{spec} is not a payload codec (see docket_runtime.codec): "
            f"{type(found).__name__}, with no encode and decode"
        )
    return found


def _import(module_name: str, paths: Sequence[str]) -> Any:
    for folder in [os.getcwd(), *paths][::-1]:
        folder = os.path.abspath(folder)
        if folder not in sys.path:
            sys.path.insert(0, folder)
    importlib.invalidate_caches()
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise Failure(
            f"cannot import {module_name}: {err} (run from the folder that holds the "
            "generated package, or give --path)"
        ) from err
    except Exception as err:  # the user's module raised: say what, no traceback
        raise Failure(f"importing {module_name} failed: {type(err).__name__}: {err}") from err


def load_plan(spec: str, paths: Sequence[str], ran: str | None) -> GraphPlan:
    """The plan of the graph ``spec`` names (``module:Graph``, or ``module``).

    ``ran`` is the full name of the graph the execution recorded, if any: the
    plan must be that graph's, and it picks the graph of a module that has
    several.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or (":" in spec and not attr):
        raise click.BadParameter(f"{spec!r}: write MODULE:GRAPH", param_hint="--graph")
    module = _import(module_name, paths)
    graphs = {
        name: value
        for name, value in vars(module).items()
        if inspect.isclass(value)
        and issubclass(value, Graph)
        and value is not Graph
        and isinstance(getattr(value, "plan", None), GraphPlan)
    }
    if attr:
        found = graphs.get(attr)
        if found is None:
            raise Failure(
                f"{module_name} has no graph {attr!r}; it has {', '.join(graphs) or 'none'}"
            )
    else:
        matching = [g for g in graphs.values() if ran is None or g.plan.name == ran]
        if len(matching) != 1:
            raise Failure(
                f"name the graph: --graph {module_name}:GRAPH "
                f"({module_name} has {', '.join(graphs) or 'none'})"
            )
        found = matching[0]
    plan = found.plan
    if ran is not None and plan.name != ran:
        raise Failure(f"the execution ran graph {ran}, not {plan.name} ({spec})")
    return plan
