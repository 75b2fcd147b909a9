"""Docket's per-execution overhead against the same steps wired by hand with asyncio.

    python bench/diamond.py [--executions 20000] [--rounds 5]

The code is generated from bench/protos with the real docket-gen into a temp
folder first. Every step is a trivial ``async def`` that builds one message, so
the figures measure the runtime, not the work. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from generated import generate

import docket_runtime

Variant = Callable[[int], Awaitable[Any]]
"""Runs ``n`` executions one after another; returns the last result."""


@dataclass(frozen=True)
class Case:
    """One graph shape: its Docket form and its hand-written form."""

    name: str
    docket: Variant
    by_hand: Variant


def cases(pb2: Any, docket: Any) -> list[Case]:
    """The diamond and the chain, each as a Docket graph and as plain asyncio.

    The diamond runs a second time bound with one Events hook that does nothing: the cost
    of dispatching events (a graph bound without hooks builds its runners without them).
    """
    a_cls, b_cls, c_cls, d_cls = pb2.A, pb2.B, pb2.C, pb2.D
    seed = pb2.Seed(value=1)

    async def step_a(seed: Any, /) -> Any:
        return a_cls(value=seed.value + 1)

    async def step_b(a: Any, /) -> Any:
        return b_cls(value=a.value * 2)

    async def step_c(a: Any, /) -> Any:
        return c_cls(value=a.value * 3)

    async def step_d(b: Any, c: Any, /) -> Any:
        return d_cls(value=b.value + c.value)

    async def link3(b: Any, /) -> Any:
        return c_cls(value=b.value * 3)

    async def link4(c: Any, /) -> Any:
        return d_cls(value=c.value + 1)

    diamond_steps = SimpleNamespace(step_a=step_a, step_b=step_b, step_c=step_c, step_d=step_d)
    diamond = docket.Diamond(diamond_steps)
    hooked = docket.Diamond(diamond_steps, events=[docket_runtime.Events()])
    chain = docket.Chain(SimpleNamespace(link1=step_a, link2=step_b, link3=link3, link4=link4))

    async def diamond_docket(n: int) -> Any:
        for _ in range(n):
            d = await diamond.run(d_cls, seed=seed)
        return d

    async def diamond_hooked(n: int) -> Any:
        for _ in range(n):
            d = await hooked.run(d_cls, seed=seed)
        return d

    async def diamond_by_hand(n: int) -> Any:
        for _ in range(n):
            a = await step_a(seed)
            b, c = await asyncio.gather(step_b(a), step_c(a))
            d = await step_d(b, c)
        return d

    async def chain_docket(n: int) -> Any:
        for _ in range(n):
            d = await chain.run(d_cls, seed=seed)
        return d

    async def chain_by_hand(n: int) -> Any:
        for _ in range(n):
            d = await link4(await link3(await step_b(await step_a(seed))))
        return d

    return [
        Case("diamond  A; B, C at once; D", diamond_docket, diamond_by_hand),
        Case("diamond + one no-op Events hook", diamond_hooked, diamond_by_hand),
        Case("chain    A -> B -> C -> D", chain_docket, chain_by_hand),
    ]


async def timed(variant: Variant, n: int) -> float:
    """Microseconds per execution over ``n`` executions."""
    started = time.perf_counter()
    await variant(n)
    return (time.perf_counter() - started) / n * 1e6


async def measure(case: Case, executions: int, rounds: int) -> tuple[float, float]:
    """Median µs per execution of (Docket, hand-written), rounds interleaved."""
    warm_up = max(1, executions // 10)
    ours, theirs = await case.docket(warm_up), await case.by_hand(warm_up)
    if ours != theirs:
        sys.exit(f"{case.name}: Docket returned {ours}, the hand-written form {theirs}")
    docket: list[float] = []
    by_hand: list[float] = []
    for _ in range(rounds):
        docket.append(await timed(case.docket, executions))
        by_hand.append(await timed(case.by_hand, executions))
    return statistics.median(docket), statistics.median(by_hand)


async def main(executions: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="docket-bench-") as tmp:
        pb2, docket = generate(Path(tmp), "diamond")
        print(
            f"Python {platform.python_version()}, {executions} executions x {rounds} rounds, "
            "median µs per execution"
        )
        print(f"{'':32} {'docket':>8} {'by hand':>8} {'ratio':>7}")
        for case in cases(pb2, docket):
            ours, theirs = await measure(case, executions, rounds)
            print(f"{case.name:32} {ours:8.2f} {theirs:8.2f} {ours / theirs:6.2f}x")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--executions", type=int, default=20_000, help="per round (20000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per variant (5)")
    args = parser.parse_args(argv)
    if args.executions < 1 or args.rounds < 1:
        parser.error("--executions and --rounds must be at least 1")
    return args


if __name__ == "__main__":
    options = parse_args()
    asyncio.run(main(options.executions, options.rounds))
