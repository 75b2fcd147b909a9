"""Helpers for the tests of a service built on Docket.

:class:`FakeClock` replaces :func:`asyncio.sleep` between retries, so that a
test of a step that fails twice neither waits for its backoff nor loses it::

    clock = FakeClock()
    graph = checkout_docket.Checkout(steps, sleep=clock.sleep)
    receipt = await graph.run(Receipt, order=order)
    assert clock.delays == [1.0, 2.0]

The rest needs no helper: ``open_store("memory://")`` is a store in the
process, and a step method called directly sees a detached
:func:`~docket_runtime.context`. docs/testing.md shows each.
"""

from __future__ import annotations

import asyncio

__all__ = ["FakeClock"]


class FakeClock:
    """Virtual time for ``Graph(steps, sleep=clock.sleep)``: retries wait without waiting.

    ``now`` is the virtual time in seconds, from ``start``; ``delays`` lists
    every wait asked of :meth:`sleep`, in order. Only the waits between retries
    go through it: a step's ``timeout`` and a ``deadline`` are measured on the
    event loop's own clock.
    """

    __slots__ = ("delays", "now")

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.delays: list[float] = []

    async def sleep(self, delay: float) -> None:
        """Record ``delay``, move ``now`` on by it, and return without waiting.

        It still yields to the event loop once, as ``asyncio.sleep(0)`` does, so
        the other steps in flight go on and a cancellation reaches the waiting step.
        """
        self.delays.append(delay)
        self.now += max(delay, 0.0)
        await asyncio.sleep(0)
