"""Docket's overhead per execution and per step against the same steps wired by hand with asyncio.

    python bench/diamond.py [--executions 20000] [--rounds 7] [--quick] [--tracing] [--profile]

The code is generated from bench/protos with the real docket-gen into a temp
folder first. Every step is a trivial ``async def`` that builds one message, so
the figures measure the runtime, not the work. Every variant of every row runs
once per round, in turn, and each ratio is the median of the rounds' own
ratios, so that a shared machine's drift cancels out. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import platform
import pstats
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

QUICK = (4_000, 5)
"""``--quick``: executions per round and rounds; the whole run takes well under a minute."""


@dataclass(frozen=True)
class Case:
    """One graph shape: its Docket form and the hand-written forms it is compared with."""

    name: str
    docket: Variant
    baselines: tuple[tuple[str, Variant], ...]


@dataclass(frozen=True)
class Figures:
    """A case's µs per execution in every round: Docket's, then each baseline's."""

    docket: list[float]
    baselines: list[list[float]]

    def ratio(self, index: int) -> float:
        """The median over rounds of Docket's time over baseline ``index``'s."""
        pairs = zip(self.docket, self.baselines[index], strict=True)
        return statistics.median(ours / theirs for ours, theirs in pairs)

    def overheads(self) -> list[float]:
        """Per round, µs per execution of Docket above the first baseline."""
        return [ours - theirs for ours, theirs in zip(self.docket, self.baselines[0], strict=True)]


def cases(pb2: Any, docket: Any, tracing: bool = False) -> list[Case]:
    """The diamond and two chains, each as a Docket graph and as plain asyncio.

    The diamond is compared with ``asyncio.gather`` twice: on bare coroutines
    that add integers (asyncio's own floor) and on the very proto step bodies
    Docket runs. It runs a second time bound with one Events hook that does
    nothing: the cost of dispatching events. With ``tracing``, twice more bound
    with ``docket_runtime.otel.Tracing``: on the API's no-op providers
    (Docket's side alone), and on the OpenTelemetry SDK (see :func:`sdk_tracing`).
    The chains of 4 and 10 steps against the same steps awaited one after
    another give, between them, the cost per step and per execution.
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

    links = [step_a, step_b, link3] + [_link(getattr(pb2, n)) for n in "DEFGHIJ"]

    diamond_steps = SimpleNamespace(step_a=step_a, step_b=step_b, step_c=step_c, step_d=step_d)
    diamond = docket.Diamond(diamond_steps)
    hooked = docket.Diamond(diamond_steps, events=[docket_runtime.Events()])
    chain = docket.Chain(SimpleNamespace(**{f"link{i}": s for i, s in enumerate(links[:4], 1)}))
    chain10 = docket.Chain10(SimpleNamespace(**{f"link{i}": s for i, s in enumerate(links, 1)}))

    def runs(graph: Any, target: type[Any]) -> Variant:
        async def run(n: int) -> Any:
            for _ in range(n):
                result = await graph.run(target, seed=seed)
            return result

        return run

    async def gather_proto(n: int) -> Any:
        for _ in range(n):
            a = await step_a(seed)
            b, c = await asyncio.gather(step_b(a), step_c(a))
            d = await step_d(b, c)
        return d

    async def gather_bare(n: int) -> Any:
        for _ in range(n):
            a = await _plus(1, 1)
            b, c = await asyncio.gather(_times(a, 2), _times(a, 3))
            d = await _plus(b, c)
        return d_cls(value=d)

    def awaits(count: int) -> Variant:
        steps = links[:count]

        async def run(n: int) -> Any:
            for _ in range(n):
                value = seed
                for step in steps:
                    value = await step(value)
            return value

        return run

    proto_gather = ("same proto steps under asyncio.gather", gather_proto)
    found = [
        Case(
            "diamond  A; B, C at once; D",
            runs(diamond, d_cls),
            (proto_gather, ("asyncio.gather of bare coroutines", gather_bare)),
        ),
        Case("diamond + one no-op Events hook", runs(hooked, d_cls), (proto_gather,)),
        Case("chain of 4 steps", runs(chain, d_cls), (("sequential awaits", awaits(4)),)),
        Case("chain of 10 steps", runs(chain10, pb2.J), (("sequential awaits", awaits(10)),)),
    ]
    if tracing:
        glued = docket.Diamond(diamond_steps, events=[noop_tracing()])
        traced = docket.Diamond(diamond_steps, events=[sdk_tracing()])
        found[2:2] = [
            Case("diamond + Tracing, no-op API", runs(glued, d_cls), (proto_gather,)),
            Case("diamond + Tracing (OTel SDK)", runs(traced, d_cls), (proto_gather,)),
        ]
    return found


def _link(out_cls: type[Any]) -> Callable[[Any], Awaitable[Any]]:
    async def link(previous: Any, /) -> Any:
        return out_cls(value=previous.value + 1)

    return link


async def _plus(x: int, y: int) -> int:
    return x + y


async def _times(x: int, y: int) -> int:
    return x * y


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
        started = time.process_time()  # as the other rows (see timed)
        for _ in range(executions):
            one()
        times.append((time.process_time() - started) / executions * 1e6)
    return statistics.median(times)


async def timed(variant: Variant, n: int) -> float:
    """Microseconds of this process's CPU time per execution over ``n`` executions.

    Every variant runs on the CPU alone (no I/O, no thread), so its CPU time is its
    wall time on an idle machine; on a shared one it leaves out the time the process
    waited for a CPU, which is noise.
    """
    started = time.process_time()
    await variant(n)
    return (time.process_time() - started) / n * 1e6


async def measure(found: list[Case], executions: int, rounds: int) -> list[Figures]:
    """Every case's figures; in each round every variant of every case runs once, in turn."""
    warm_up = max(1, executions // 10)
    for case in found:
        ours = await case.docket(warm_up)
        for name, baseline in case.baselines:
            theirs = await baseline(warm_up)
            if ours != theirs:
                sys.exit(f"{case.name}: Docket returned {ours}, {name} {theirs}")
    figures = [Figures([], [[] for _ in case.baselines]) for case in found]
    for _ in range(rounds):
        for case, figure in zip(found, figures, strict=True):
            figure.docket.append(await timed(case.docket, executions))
            for (_, baseline), times in zip(case.baselines, figure.baselines, strict=True):
                times.append(await timed(baseline, executions))
    return figures


def per_step(short: list[float], long: list[float], steps: tuple[int, int]) -> tuple[float, float]:
    """Median µs per step and per execution of a chain, from per-round µs per execution of
    chains of ``steps`` lengths measured in the same rounds (a straight line through both)."""
    slopes, intercepts = [], []
    for low, high in zip(short, long, strict=True):
        slope = (high - low) / (steps[1] - steps[0])
        slopes.append(slope)
        intercepts.append(low - slope * steps[0])
    return statistics.median(slopes), statistics.median(intercepts)


def report(found: list[Case], figures: list[Figures]) -> None:
    print(f"{'':40} {'µs':>8} {'ratio':>7}")
    for case, figure in zip(found, figures, strict=True):
        print(f"{case.name:40} {statistics.median(figure.docket):8.2f}")
        for index, (name, _) in enumerate(case.baselines):
            theirs = statistics.median(figure.baselines[index])
            print(f"  {name:38} {theirs:8.2f} {figure.ratio(index):6.2f}x")
    chains = {case.name: figure for case, figure in zip(found, figures, strict=True)}
    short, long = chains["chain of 4 steps"], chains["chain of 10 steps"]
    lines = [
        ("Docket", per_step(short.docket, long.docket, (4, 10))),
        ("the awaits", per_step(short.baselines[0], long.baselines[0], (4, 10))),
        ("Docket above the awaits", per_step(short.overheads(), long.overheads(), (4, 10))),
    ]
    for name, (step, execution) in lines:
        print(f"chain, {name + ':':24} {step:5.2f} µs per step + {execution:5.2f} µs per execution")


def profile(found: list[Case], executions: int) -> None:
    """Print where Docket's time goes in the diamond and the 10-step chain (cProfile)."""
    for case in found:
        if case.name.startswith(("diamond  ", "chain of 10")):
            profiler = cProfile.Profile()
            asyncio.run(_profiled(profiler, case.docket, executions))
            print(f"\n{case.name}: cProfile of {executions} executions, by own time")
            pstats.Stats(profiler).strip_dirs().sort_stats("tottime").print_stats(12)


async def _profiled(profiler: cProfile.Profile, variant: Variant, executions: int) -> None:
    await variant(max(1, executions // 10))
    profiler.enable()
    await variant(executions)
    profiler.disable()


async def main(executions: int, rounds: int, tracing: bool = False) -> None:
    with tempfile.TemporaryDirectory(prefix="docket-bench-") as tmp:
        pb2, docket = generate(Path(tmp), "diamond")
        print(
            f"Python {platform.python_version()}, {executions} executions x {rounds} rounds; "
            "median µs per execution, median of the rounds' ratios"
        )
        found = cases(pb2, docket, tracing)
        report(found, await measure(found, executions, rounds))
        if tracing:
            floor = sdk_alone(sdk_tracing(), executions, rounds)
            print(f"{'  its spans and points, SDK alone':40} {floor:8.2f}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--executions", type=int, default=20_000, help="per round (20000)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds (7)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK[0]} executions x {QUICK[1]} rounds, well under a minute",
    )
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="add the diamond bound with docket_runtime.otel.Tracing (needs opentelemetry-sdk)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead of timing, print cProfile's top functions for the diamond and the chain",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.executions, args.rounds = QUICK
    if args.executions < 1 or args.rounds < 1:
        parser.error("--executions and --rounds must be at least 1")
    return args


if __name__ == "__main__":
    options = parse_args()
    if options.profile:
        with tempfile.TemporaryDirectory(prefix="docket-bench-") as folder:
            profile(cases(*generate(Path(folder), "diamond")), options.executions)
    else:
        asyncio.run(main(options.executions, options.rounds, options.tracing))
