"""Docket's per-execution overhead against the same steps wired by hand with asyncio.

    python bench/diamond.py [--executions 20000] [--rounds 5] [--tracing]

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


def cases(pb2: Any, docket: Any, tracing: bool = False) -> list[Case]:
    """The diamond and the chain, each as a Docket graph and as plain asyncio.

    The diamond runs a second time bound with one Events hook that does nothing: the cost
    of dispatching events (a graph bound without hooks builds its runners without them).
    With ``tracing``, twice more bound with ``docket_runtime.otel.Tracing``: on the
    API's no-op providers (Docket's side alone), and on the OpenTelemetry SDK (see
    :func:`sdk_tracing`).
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

    traced = docket.Diamond(diamond_steps, events=[sdk_tracing()]) if tracing else None
    glued = docket.Diamond(diamond_steps, events=[noop_tracing()]) if tracing else None

    async def diamond_traced(n: int) -> Any:
        assert traced is not None
        for _ in range(n):
            d = await traced.run(d_cls, seed=seed)
        return d

    async def diamond_glued(n: int) -> Any:
        assert glued is not None
        for _ in range(n):
            d = await glued.run(d_cls, seed=seed)
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

    found = [
        Case("diamond  A; B, C at once; D", diamond_docket, diamond_by_hand),
        Case("diamond + one no-op Events hook", diamond_hooked, diamond_by_hand),
        Case("chain    A -> B -> C -> D", chain_docket, chain_by_hand),
    ]
    if tracing:
        found[2:2] = [
            Case("diamond + Tracing, no-op API", diamond_glued, diamond_by_hand),
            Case("diamond + Tracing (OTel SDK)", diamond_traced, diamond_by_hand),
        ]
    return found


def sdk_tracing() -> Any:
    """A ``Tracing`` on the OpenTelemetry SDK, as a service would run it, minus the network.

    Every span is made, ended and handed to an exporter that drops it (a
    ``SimpleSpanProcessor``: in a loop this tight a ``BatchSpanProcessor``'s
    queue overflows and drops spans, which would flatter the figure); metrics
    are aggregated by a ``MeterProvider`` whose reader is never collected.
    """
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    from docket_runtime.otel import Tracing

    class Dropped(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Dropped()))
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return Tracing(tracer_provider=provider, meter_provider=meters)


def noop_tracing() -> Any:
    """A ``Tracing`` on the API's no-op providers: Docket's own side of tracing alone."""
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import NoOpTracerProvider

    from docket_runtime.otel import Tracing

    return Tracing(tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider())


def sdk_alone(tracing: Any, executions: int, rounds: int) -> float:
    """Median µs to make what a traced diamond execution makes, with the SDK directly:
    an execution span, four attempt spans under it (each current for a moment), their
    attributes, and the ten metric points. The floor of the tracing row: the SDK's cost."""
    from opentelemetry import context, trace

    tracer = tracing._tracer
    counter, histogram = tracing._attempts, tracing._step_duration
    run = {"docket.graph": "g", "docket.target": "t", "docket.execution_id": "e"}
    step = {**run, "docket.step": "s", "docket.delivery": "at_least_once", "docket.attempt": 1}
    measured = {"docket.graph": "g", "docket.step": "s", "docket.outcome": "succeeded"}

    def one() -> None:
        execution = tracer.start_span("docket.execution t", attributes=run)
        outer = context.attach(trace.set_span_in_context(execution))
        for _ in range(4):
            counter.add(1, measured)
            span = tracer.start_span("docket.step s", attributes=step)
            context.detach(context.attach(trace.set_span_in_context(span)))
            span.set_attribute("docket.outcome", "succeeded")
            span.end()
            histogram.record(0.001, measured)
        context.detach(outer)
        execution.set_attribute("docket.outcome", "succeeded")
        execution.end()
        counter.add(1, measured)
        histogram.record(0.001, measured)

    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(executions):
            one()
        times.append((time.perf_counter() - started) / executions * 1e6)
    return statistics.median(times)


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


async def main(executions: int, rounds: int, tracing: bool = False) -> None:
    with tempfile.TemporaryDirectory(prefix="docket-bench-") as tmp:
        pb2, docket = generate(Path(tmp), "diamond")
        print(
            f"Python {platform.python_version()}, {executions} executions x {rounds} rounds, "
            "median µs per execution"
        )
        print(f"{'':32} {'docket':>8} {'by hand':>8} {'ratio':>7}")
        for case in cases(pb2, docket, tracing):
            ours, theirs = await measure(case, executions, rounds)
            print(f"{case.name:32} {ours:8.2f} {theirs:8.2f} {ours / theirs:6.2f}x")
        if tracing:
            floor = sdk_alone(sdk_tracing(), executions, rounds)
            print(f"{'  its spans and points, SDK alone':32} {floor:8.2f}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--executions", type=int, default=20_000, help="per round (20000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per variant (5)")
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="add the diamond bound with docket_runtime.otel.Tracing (needs opentelemetry-sdk)",
    )
    args = parser.parse_args(argv)
    if args.executions < 1 or args.rounds < 1:
        parser.error("--executions and --rounds must be at least 1")
    return args


if __name__ == "__main__":
    options = parse_args()
    asyncio.run(main(options.executions, options.rounds, options.tracing))
