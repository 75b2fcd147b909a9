"""Retrying a store's idempotent writes through a transient failure: the SQL stores' one policy.

A write that meets a dropped connection, a restarting server or a lock held
too long raises :class:`~docket_runtime.stores.StoreUnavailable`: whether it
happened is unknown. For a write whose second run leaves the same rows and
gives the same answer as the first (an upsert of a result, the end of a step
run, the end of an execution), trying again is safe, and it spares a step
that already had its effect from being reported unrecorded. So the SQL stores
send those writes through :func:`retry_transient`, and only those: a write
whose answer changes when it ran before is never sent through it:

- ``claim_step``: run again after its first run committed, it finds its own
  claim and answers that it lost;
- ``step_started``: counts one more attempt each time it runs;
- ``take_over_claim`` and ``release_claim``: run again, they answer ``False``
  for what the first run did;
- ``delete_results``, ``purge_expired``, ``purge_results``: count what they
  delete, which is nothing the second time;
- ``queue_execution`` and ``cancel_execution`` answer with the row, which a
  caller reads to learn what happened, and may run inside the caller's
  transaction; ``start_execution`` and ``migrate`` come before any step runs,
  so their caller sees the error and nothing is lost.

Retried: ``put_result``, ``step_finished`` (the step run's end, its result and
its attempt row: the same values again, and the owner test matches again),
``record_cache_hit``, ``settle_step``, ``finish_execution`` and
``suspend_execution``.

A Postgres store that already knows its server is down when a write starts
does not retry it: it fails at once, as :mod:`~docket_runtime.stores.postgres`
says; a write that finds the server gone retries through a restart.

The policy is bounded twice: at most ``len(DELAYS) + 1`` attempts, and none
started once :data:`BUDGET` seconds have passed since the first (an attempt
that itself waited for a lock or a pool uses up the budget).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from .base import StoreUnavailable

__all__ = ["BUDGET", "DELAYS", "retry_transient"]

T = TypeVar("T")

DELAYS: Final = (0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
"""Seconds slept before each retry. The first retry is at once: the store has dropped the
dead connections by then, and a fresh one usually works."""

BUDGET: Final = 4.0
"""Seconds after the first attempt past which no new attempt starts."""


async def retry_transient(
    write: Callable[[], Awaitable[T]],
    *,
    delays: tuple[float, ...] = DELAYS,
    budget: float = BUDGET,
) -> T:
    """Run ``write`` (an idempotent write) until it succeeds, retrying ``StoreUnavailable``.

    Any other error is raised at once. When the last attempt fails too, the
    error raised is a ``StoreUnavailable`` that says so (how many attempts,
    over how long) with the first failure's cause kept as ``__cause__``.
    """
    started = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        try:
            return await write()
        except StoreUnavailable as err:
            elapsed = time.monotonic() - started
            delay = delays[attempts - 1] if attempts <= len(delays) else None
            if delay is None or elapsed + delay > budget:
                if attempts == 1:
                    raise
                raise StoreUnavailable(
                    f"{err} (an idempotent write, tried {attempts} times over {elapsed:.1f}s)"
                ) from (err.__cause__ or err)
        await asyncio.sleep(delay)
