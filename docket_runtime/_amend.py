"""Amending an execution's records by hand: forgetting steps so that they run again
(:func:`rerun_from`), and deciding an ``AT_MOST_ONCE`` claim (:func:`settle`).

They need only a graph's plan and a store, not a bound graph: ``Graph.rerun_from``
and ``Graph.settle`` call them, and so does ``docketctl``, which has no step
implementations to bind.
"""

from __future__ import annotations

from google.protobuf.message import Message

from . import _deps
from ._persistence import encode
from .plan import Delivery, GraphPlan
from .stores.base import Store, workflow_key

__all__ = ["rerun_from", "settle"]


async def rerun_from(
    plan: GraphPlan, store: Store, step: str, execution_id: str
) -> tuple[list[str], int]:
    """Forget ``step`` and every step after it in ``execution_id``: their checkpoints,
    step runs and attempts (an ``AT_MOST_ONCE`` claim is released too).

    Returns the names of the steps forgotten, in plan order, and how many kept
    results were deleted. ``KeyError`` if the plan has no such step.
    """
    plan.step(step)  # KeyError naming the graph if there is no such step
    downstream = _deps.downstream(_deps.needs_of(plan.steps), (step,))
    deleted = await store.delete_results(execution_id, downstream)
    return downstream, deleted


async def settle(
    plan: GraphPlan,
    store: Store,
    step: str,
    execution_id: str,
    result: Message | None,
    *,
    release: bool,
    owner: str,
    rerun: str = "rerun_from({step!r}, {execution_id!r})",
) -> None:
    """Decide an ``AT_MOST_ONCE`` step whose claim has no result (see ``Graph.settle``).

    With ``result``, it becomes the step's checkpoint, recorded ``succeeded``
    by ``owner``; with ``release=True`` the claim is dropped. Raises
    ``KeyError`` for an unknown step, ``TypeError`` for a result of another
    message type, ``ValueError`` when the step is not ``AT_MOST_ONCE``, when
    there is no claim to settle, or when it already succeeded. ``rerun`` is
    how the caller's user runs a step again, for the messages (a format
    string of ``step`` and ``execution_id``).
    """
    again = rerun.format(step=step, execution_id=execution_id)
    plan_step = plan.step(step)  # KeyError naming the graph if there is no such step
    if plan_step.delivery is not Delivery.AT_MOST_ONCE:
        raise ValueError(
            f"step {step!r} of {plan.name} is not AT_MOST_ONCE: it has no claim to "
            f"settle ({again} runs it again)"
        )
    if (result is None) == (not release):
        raise ValueError("settle takes a result message, or release=True, not both")
    out_cls = plan.types[plan_step.output]
    if result is not None and type(result) is not out_cls:
        raise TypeError(
            f"step {step!r} of {plan.name} returns "
            f"{out_cls.DESCRIPTOR.full_name}, not {type(result).__qualname__}"
        )
    runs = {run.step: run for run in await store.get_step_runs(execution_id)}
    run = runs.get(step)
    if run is None:
        raise ValueError(f"step {step!r} has no claim in execution {execution_id!r}")
    if run.status == "succeeded":
        raise ValueError(
            f"step {step!r} of execution {execution_id!r} succeeded already; {again} runs it again"
        )
    if result is None:
        await store.delete_results(execution_id, [step])
        return
    key = workflow_key(execution_id, step, plan_step.cache.version)
    row = encode(
        plan_step, key, "workflow", execution_id, result, graph=plan.name, codec=store.codec
    )
    await store.settle_step(execution_id, step, result=row, owner=owner)
