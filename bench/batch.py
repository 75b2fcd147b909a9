"""Docket's per-item overhead in a batch run against a hand-written asyncio.Semaphore loop.

    python bench/batch.py [--items 10000] [--rounds 5] [--limit 100] [--memory-items 100000]

The code is generated from bench/protos with the real docket-gen into a temp
folder first. The graph is the classic batch: ``ComputeStats(repeated Item)``
once, then ``Enrich(Item, Stats)`` per item, at most ``--limit`` items at once.
Every step is a trivial ``async def`` that builds one message, so the figures
measure the runtime, not the work. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from generated import generate

Variant = Callable[[Sequence[Any]], Awaitable[list[Any]]]
"""Runs one batch over the items; returns the per-item results in order."""


@dataclass(frozen=True)
class Case:
    """One kind of step: the batch through Docket and by hand."""

    name: str
    docket: Variant
    by_hand: Variant


def cases(pb2: Any, docket: Any, limit: int) -> list[Case]:
    """Steps that never suspend, and steps that yield to the loop once (as I/O would)."""
    stats_cls, enriched_cls = pb2.Stats, pb2.Enriched

    def make(name: str, suspend: bool) -> Case:
        async def compute_stats(items: Sequence[Any], /) -> Any:
            return stats_cls(count=len(items))

        async def enrich(item: Any, stats: Any, /) -> Any:
            if suspend:
                await asyncio.sleep(0)
            return enriched_cls(value=item.value + stats.count)

        graph = docket.Batch(SimpleNamespace(compute_stats=compute_stats, enrich=enrich))

        async def with_docket(items: Sequence[Any]) -> list[Any]:
            results: list[Any] = await graph.run_batch(enriched_cls, items, max_concurrency=limit)
            return results

        async def by_hand(items: Sequence[Any]) -> list[Any]:
            stats = await compute_stats(items)
            semaphore = asyncio.Semaphore(limit)

            async def one(item: Any) -> Any:
                async with semaphore:
                    return await enrich(item, stats)

            return list(await asyncio.gather(*(one(item) for item in items)))

        return Case(name, with_docket, by_hand)

    return [make("trivial steps", suspend=False), make("steps yield once", suspend=True)]


async def timed(variant: Variant, items: Sequence[Any]) -> float:
    """Microseconds per item over one batch."""
    started = time.perf_counter()
    await variant(items)
    return (time.perf_counter() - started) / len(items) * 1e6


async def measure(case: Case, items: Sequence[Any], rounds: int) -> tuple[float, float]:
    """Median µs per item of (Docket, hand-written), rounds interleaved."""
    warm_up = items[: max(1, len(items) // 10)]
    ours, theirs = await case.docket(warm_up), await case.by_hand(warm_up)
    if ours != theirs:
        sys.exit(f"{case.name}: Docket and the hand-written form disagree")
    docket: list[float] = []
    by_hand: list[float] = []
    for _ in range(rounds):
        docket.append(await timed(case.docket, items))
        by_hand.append(await timed(case.by_hand, items))
    return statistics.median(docket), statistics.median(by_hand)


async def peak_memory(variant: Variant, items: Sequence[Any]) -> float:
    """Peak MB that tracemalloc sees during one batch, above what existed before it.

    The items exist before the measurement starts; the results are part of it.
    """
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        results = await variant(items)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(results) == len(items)
    return (peak - before) / 1e6


async def main(count: int, rounds: int, limit: int, memory_items: int) -> None:
    with tempfile.TemporaryDirectory(prefix="docket-bench-") as tmp:
        pb2, docket = generate(Path(tmp), "batch")
        items = [pb2.Item(value=i) for i in range(count)]
        all_cases = cases(pb2, docket, limit)
        print(
            f"Python {platform.python_version()}, {count} items x {rounds} rounds, "
            f"at most {limit} in flight, median µs per item"
        )
        print(f"{'':22} {'docket':>8} {'by hand':>8} {'ratio':>7}")
        for case in all_cases:
            ours, theirs = await measure(case, items, rounds)
            print(f"{case.name:22} {ours:8.2f} {theirs:8.2f} {ours / theirs:6.2f}x")
        big = [pb2.Item(value=i) for i in range(memory_items)]
        print()
        print(f"peak memory for {memory_items} items (tracemalloc, MB)")
        print(f"{'':22} {'docket':>8} {'by hand':>8}")
        for case in all_cases:
            ours_mb = await peak_memory(case.docket, big)
            theirs_mb = await peak_memory(case.by_hand, big)
            print(f"{case.name:22} {ours_mb:8.1f} {theirs_mb:8.1f}")

        async def results_only(items: Sequence[Any]) -> list[Any]:
            return [pb2.Enriched(value=item.value) for item in items]

        print(f"{'the results alone':22} {await peak_memory(results_only, big):8.1f}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=10_000, help="per batch (10000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per variant (5)")
    parser.add_argument("--limit", type=int, default=100, help="items in flight (100)")
    parser.add_argument(
        "--memory-items", type=int, default=100_000, help="items of the memory run (100000)"
    )
    args = parser.parse_args(argv)
    if min(args.items, args.rounds, args.limit, args.memory_items) < 1:
        parser.error("--items, --rounds, --limit and --memory-items must be at least 1")
    return args


if __name__ == "__main__":
    options = parse_args()
    asyncio.run(main(options.items, options.rounds, options.limit, options.memory_items))
