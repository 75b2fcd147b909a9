"""OpenTelemetry tracing and metrics (docket_runtime.otel), read back with the SDK's
in-memory span exporter and metric reader.

- a step that fails three times then succeeds: one execution span, four
  attempt spans (three in error), one trace; a span the step opens is a
  child of its attempt's span, also in a thread and in steps run at once;
- failures, timeouts, cache hits and misses, batches and their items, child
  graphs: their spans, events and metrics;
- without a ``Tracing`` nothing imports OpenTelemetry (in a subprocess);
- durable executions: each resume joins the trace of the enqueue, in
  process and across a worker SIGKILLed mid-execution and the worker that
  finishes it (worker subprocesses writing their spans to a file).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
from conftest import PgSession
from durable_support import ROOT, WORKER, generated, wait_for
from durable_worker import EFFECTS_TABLE, MemoryEffects, build
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from docket_runtime import StepFailed, StepTimedOut, context
from docket_runtime.durable._record import record_execution
from docket_runtime.durable._resume import Continue, Done, resume
from docket_runtime.otel import Tracing
from docket_runtime.stores import MemoryStore

T = TypeVar("T")

SAFETY_NET = 30.0


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, SAFETY_NET))


class Otel:
    """A tracer and a meter provider of the SDK, read back in memory, and a Tracing on them."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meters = MeterProvider(metric_readers=[self.reader])
        self.tracing = Tracing(tracer_provider=self.provider, meter_provider=self.meters)
        self.user = self.provider.get_tracer("user-code")

    def spans(self, prefix: str = "") -> list[ReadableSpan]:
        """The ended spans whose name starts with ``prefix``, in the order they ended."""
        return [s for s in self.exporter.get_finished_spans() if s.name.startswith(prefix)]

    def one(self, name: str) -> ReadableSpan:
        (found,) = self.spans(name)
        return found

    def metric(self, name: str) -> dict[frozenset[tuple[str, Any]], Any]:
        """The data points of metric ``name``, by their attributes."""
        points: dict[frozenset[tuple[str, Any]], Any] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        for point in metric.data.data_points:
                            points[frozenset((point.attributes or {}).items())] = point
        return points

    def value(self, name: str, **attributes: Any) -> Any:
        """The value of counter ``docket.<name>`` (or the count of a histogram) at
        ``attributes``, named without their ``docket.`` prefix (0 if none)."""
        key = frozenset((f"docket.{k}", v) for k, v in attributes.items())
        point = self.metric(f"docket.{name}").get(key)
        if point is None:
            return 0
        return point.count if hasattr(point, "count") else point.value


@pytest.fixture
def otel() -> Otel:
    return Otel()


def parent_of(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.trace_id)


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


# -- graphs of tests/protos -----------------------------------------------------------------


@pytest.fixture(scope="module")
def rpb(gen_dir: Path) -> Any:
    return importlib.import_module("testgraphs.resilience_pb2")


@pytest.fixture(scope="module")
def rdk(gen_dir: Path) -> Any:
    return importlib.import_module("testgraphs.resilience_docket")


@pytest.fixture(scope="module")
def opb(gen_dir: Path) -> Any:
    return importlib.import_module("testgraphs.orders_pb2")


@pytest.fixture(scope="module")
def odk(gen_dir: Path) -> Any:
    return importlib.import_module("testgraphs.orders_docket")


@pytest.fixture(scope="module")
def mpb(gen_dir: Path) -> Any:
    return importlib.import_module("testgraphs.movies_pb2")


@pytest.fixture(scope="module")
def mdk(gen_dir: Path) -> Any:
    return importlib.import_module("testgraphs.movies_docket")


async def no_wait(delay: float) -> None:
    await asyncio.sleep(0)


class RetryingSteps:
    """The Retrying steps run here: Flaky fails its first ``failures`` attempts with
    ``error``; Slow never returns; Threaded runs in a thread. Flaky and Threaded open a
    span of the user's own (``user <step>``) in each attempt."""

    def __init__(self, pb: Any, otel: Otel, *, failures: int = 0, error: type = ConnectionError):
        self.pb, self.otel, self.failures, self.error = pb, otel, failures, error
        self.threads: list[int] = []

    async def flaky(self, ticket: Any, /) -> Any:
        with self.otel.user.start_as_current_span("user Flaky"):
            attempt = context().attempt
            if attempt <= self.failures:
                raise self.error(f"try {attempt}")
            return self.pb.Done(value=ticket.id + 1)

    async def slow(self, ticket: Any, /) -> Any:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    def threaded(self, ticket: Any, /) -> Any:
        self.threads.append(threading.get_ident())
        with self.otel.user.start_as_current_span("user Threaded"):
            return self.pb.InThread(value=ticket.id + 7)

    async def jittery(self, ticket: Any, /) -> Any:
        raise AssertionError("not run here")

    async def plain(self, ticket: Any, /) -> Any:
        raise AssertionError("not run here")

    async def strict(self, ticket: Any, /) -> Any:
        raise AssertionError("not run here")

    def slow_thread(self, ticket: Any, /) -> Any:
        raise AssertionError("not run here")


class BranchesSteps:
    """Branches: Main, Side and Enrich run at once, each in a user span; Combine joins them."""

    def __init__(self, pb: Any, otel: Otel) -> None:
        self.pb, self.otel = pb, otel
        self.gate = asyncio.Event()
        self.waiting = 0

    async def _at_once(self, name: str) -> None:
        with self.otel.user.start_as_current_span(f"user {name}"):
            # The three wait for one another: they are in flight together, each in its task.
            self.waiting += 1
            if self.waiting == 3:
                self.gate.set()
            await self.gate.wait()

    async def main(self, ticket: Any, /) -> Any:
        await self._at_once("Main")
        return self.pb.Core(value=ticket.id * 10)

    async def side(self, ticket: Any, /) -> Any:
        await self._at_once("Side")
        return self.pb.Aside(value=ticket.id * 100)

    async def enrich(self, ticket: Any, /) -> Any:
        await self._at_once("Enrich")
        return self.pb.Bonus(value=ticket.id * 1000)

    async def combine(self, core: Any, aside: Any, bonus: Any, /) -> Any:
        return self.pb.Report(core=core.value, aside=aside.value, bonus=bonus.value)


# -- the acceptance case: fails three times, then succeeds ----------------------------------


def test_three_failures_then_a_success_make_one_trace_of_an_execution_and_four_attempts(
    rpb: Any, rdk: Any, otel: Otel
) -> None:
    graph = rdk.Retrying(RetryingSteps(rpb, otel, failures=3), events=[otel.tracing], sleep=no_wait)

    async def body() -> Any:
        with otel.user.start_as_current_span("request"):
            return await graph.run(rpb.Done, ticket=rpb.Ticket(id=1), execution_id="flaky-1")

    assert run(body()).value == 2
    request = otel.one("request")
    execution = otel.one("docket.execution testgraphs.Done")
    attempts = otel.spans("docket.step Flaky")
    users = otel.spans("user Flaky")
    assert len(attempts) == 4 and len(users) == 4
    # One trace: the caller's request, the execution in it, the attempts in the execution.
    everything = otel.spans()
    assert {trace_id(s) for s in everything} == {trace_id(request)}
    assert parent_of(execution) == span_id(request)
    assert all(parent_of(a) == span_id(execution) for a in attempts)
    # A span the step opens is a child of its attempt's span.
    assert [parent_of(u) for u in users] == [span_id(a) for a in attempts]

    assert attrs(execution) == {
        "docket.graph": "testgraphs.Retrying",
        "docket.target": "testgraphs.Done",
        "docket.execution_id": "flaky-1",
        "docket.outcome": "succeeded",
    }
    assert execution.status.status_code is StatusCode.UNSET
    assert execution.kind is SpanKind.INTERNAL
    for number, attempt in enumerate(attempts, start=1):
        assert attrs(attempt) == {
            "docket.graph": "testgraphs.Retrying",
            "docket.step": "Flaky",
            "docket.delivery": "at_least_once",
            "docket.execution_id": "flaky-1",
            "docket.attempt": number,
            "docket.outcome": "failed" if number < 4 else "succeeded",
        }
    assert [a.status.status_code for a in attempts] == [StatusCode.ERROR] * 3 + [StatusCode.UNSET]
    for number, attempt in enumerate(attempts[:3], start=1):
        assert attempt.status.description == f"ConnectionError: try {number}"
        (exception,) = attempt.events
        assert exception.name == "exception"
        assert dict(exception.attributes or {})["exception.message"] == f"try {number}"
    # The backoffs: a retry event on the execution's span before each next attempt.
    retries = [e for e in execution.events if e.name == "docket.retry"]
    assert [dict(e.attributes or {}) for e in retries] == [
        {
            "docket.step": "Flaky",
            "docket.attempt": number,
            "docket.retry.delay": delay,
            "exception.type": "builtins.ConnectionError",
            "exception.message": f"try {number}",
        }
        for number, delay in ((1, 0.1), (2, 0.2), (3, 0.3))
    ]

    assert otel.value("step.attempts", graph="testgraphs.Retrying", step="Flaky") == 4
    assert otel.value("step.retries", graph="testgraphs.Retrying", step="Flaky") == 3
    durations = {
        outcome: otel.value(
            "step.duration", graph="testgraphs.Retrying", step="Flaky", outcome=outcome
        )
        for outcome in ("failed", "succeeded")
    }
    assert durations == {"failed": 3, "succeeded": 1}
    finished = {"graph": "testgraphs.Retrying", "target": "testgraphs.Done"}
    assert otel.value("executions", **finished, outcome="succeeded") == 1
    assert otel.value("execution.duration", **finished, outcome="succeeded") == 1
    (failed, succeeded) = sorted(
        otel.metric("docket.step.duration").values(), key=lambda p: p.count, reverse=True
    )
    assert failed.sum > 0 and succeeded.sum > 0


# -- failures, timeouts, threads, steps at once ----------------------------------------------


def test_a_failed_execution_has_error_status_and_its_exception(
    rpb: Any, rdk: Any, otel: Otel
) -> None:
    steps = RetryingSteps(rpb, otel, failures=9, error=ValueError)  # ValueError: not retried
    graph = rdk.Retrying(steps, events=[otel.tracing], sleep=no_wait)
    with pytest.raises(StepFailed):
        run(graph.run(rpb.Done, ticket=rpb.Ticket(id=1)))
    execution = otel.one("docket.execution testgraphs.Done")
    (attempt,) = otel.spans("docket.step Flaky")
    assert attrs(execution)["docket.outcome"] == "failed"
    assert execution.status.status_code is StatusCode.ERROR
    assert execution.status.description is not None
    assert execution.status.description.startswith("StepFailed: step 'Flaky' failed")
    (exception,) = (e for e in execution.events if e.name == "exception")
    assert str(dict(exception.attributes or {})["exception.type"]).endswith("StepFailed")
    assert (attrs(attempt)["docket.outcome"], attempt.status.status_code) == (
        "failed",
        StatusCode.ERROR,
    )
    finished = {"graph": "testgraphs.Retrying", "target": "testgraphs.Done"}
    assert otel.value("executions", **finished, outcome="failed") == 1
    assert otel.value("step.retries", graph="testgraphs.Retrying", step="Flaky") == 0


def test_an_attempt_cut_by_its_timeout_is_timed_out_and_one_cut_by_the_deadline_cancelled(
    rpb: Any, rdk: Any, otel: Otel
) -> None:
    steps = RetryingSteps(rpb, otel)
    graph = rdk.Retrying(steps, events=[otel.tracing], sleep=no_wait)
    with pytest.raises(StepTimedOut):
        run(graph.run(rpb.Late, ticket=rpb.Ticket(id=1)))  # three attempts of 50ms
    attempts = otel.spans("docket.step Slow")
    assert [attrs(a)["docket.outcome"] for a in attempts] == ["timed_out"] * 3
    assert {(a.status.status_code, a.status.description) for a in attempts} == {
        (StatusCode.ERROR, "timed out after 0.05s")
    }
    execution = otel.one("docket.execution testgraphs.Late")
    assert (attrs(execution)["docket.outcome"], execution.status.status_code) == (
        "timed_out",
        StatusCode.ERROR,
    )
    otel.exporter.clear()

    with pytest.raises(TimeoutError):
        run(graph.run(rpb.Late, ticket=rpb.Ticket(id=1), deadline=0.01))
    (attempt,) = otel.spans("docket.step Slow")
    assert (attrs(attempt)["docket.outcome"], attempt.status.status_code) == (
        "cancelled",
        StatusCode.UNSET,
    )
    assert attrs(otel.one("docket.execution"))["docket.outcome"] == "timed_out"
    durations = otel.metric("docket.step.duration")
    outcomes = {dict(key)["docket.outcome"]: point.count for key, point in durations.items()}
    assert outcomes == {"timed_out": 3, "cancelled": 1}


def test_a_span_opened_in_a_blocking_step_is_a_child_of_its_attempt(
    rpb: Any, rdk: Any, otel: Otel
) -> None:
    steps = RetryingSteps(rpb, otel)
    graph = rdk.Retrying(steps, events=[otel.tracing])
    assert run(graph.run(rpb.InThread, ticket=rpb.Ticket(id=1))).value == 8
    assert steps.threads and steps.threads[0] != threading.get_ident()
    attempt = otel.one("docket.step Threaded")
    assert parent_of(otel.one("user Threaded")) == span_id(attempt)
    assert parent_of(attempt) == span_id(otel.one("docket.execution"))


def test_steps_running_at_once_each_have_their_span_current(rpb: Any, rdk: Any, otel: Otel) -> None:
    graph = rdk.Branches(BranchesSteps(rpb, otel), events=[otel.tracing])
    report = run(graph.run(rpb.Report, ticket=rpb.Ticket(id=2)))
    assert (report.core, report.aside, report.bonus) == (20, 200, 2000)
    execution = otel.one("docket.execution testgraphs.Report")
    for name in ("Main", "Side", "Enrich"):
        attempt = otel.one(f"docket.step {name}")
        assert parent_of(attempt) == span_id(execution)
        assert parent_of(otel.one(f"user {name}")) == span_id(attempt)
    assert parent_of(otel.one("docket.step Combine")) == span_id(execution)


def test_a_child_graphs_execution_is_a_child_of_the_parents_step(
    rpb: Any, rdk: Any, otel: Otel
) -> None:
    child = rdk.Branches(BranchesSteps(rpb, otel), events=[otel.tracing])
    parent = rdk.Parent(object(), subgraphs={"testgraphs.Branches": child}, events=[otel.tracing])
    run(parent.run(rpb.Report, ticket=rpb.Ticket(id=3), execution_id="p-1"))
    outer, inner = otel.spans("docket.execution testgraphs.Report")[::-1]
    step = otel.one("docket.step RunBranches")
    assert attrs(outer)["docket.graph"] == "testgraphs.Parent"
    assert parent_of(step) == span_id(outer)
    assert attrs(inner)["docket.graph"] == "testgraphs.Branches"
    assert attrs(inner)["docket.execution_id"] == "p-1/RunBranches"
    assert parent_of(inner) == span_id(step)
    assert parent_of(otel.one("docket.step Main")) == span_id(inner)


# -- cache hits and misses --------------------------------------------------------------------


class ScoreSteps:
    def __init__(self, pb: Any) -> None:
        self.pb = pb

    async def score(self, review: Any, model: Any, /) -> Any:
        return self.pb.RiskScore(value=len(review.text), model=model.name)


class ReportSteps:
    def __init__(self, pb: Any) -> None:
        self.pb = pb

    async def load(self, dataset: Any, /) -> Any:
        return self.pb.RawRows(values=[1, 2, 3])

    async def crunch(self, rows: Any, /) -> Any:
        return self.pb.Crunched(total=sum(rows.values))

    async def summarize(self, crunched: Any, /) -> Any:
        return self.pb.Digest(text=f"total={crunched.total}")

    async def annotate(self, digest: Any, rows: Any, /) -> Any:
        return self.pb.Annotated(text=digest.text, rows=len(rows.values))


def test_cache_hits_and_misses_are_counted_and_a_hit_is_an_event(
    opb: Any, odk: Any, otel: Otel
) -> None:
    scoring = odk.Scoring(ScoreSteps(opb), events=[otel.tracing])
    inputs = {"review": opb.Review(text="fine"), "model": opb.Model(name="m")}

    async def body() -> None:
        await scoring.run(opb.RiskScore, **inputs)  # computed: a miss
        await scoring.run(opb.RiskScore, **inputs)  # kept: a hit, the step does not run

    run(body())
    first, second = otel.spans("docket.execution testgraphs.RiskScore")
    (attempt,) = otel.spans("docket.step Score")
    assert parent_of(attempt) == span_id(first)
    assert [e.name for e in first.events] == []
    (hit,) = second.events
    assert (hit.name, dict(hit.attributes or {})) == (
        "docket.cache_hit",
        {"docket.step": "Score", "docket.cache.scope": "global"},
    )
    lookup = {"graph": "testgraphs.Scoring", "step": "Score", "cache.scope": "global"}
    assert (otel.value("cache.hits", **lookup), otel.value("cache.misses", **lookup)) == (1, 1)

    # WORKFLOW checkpoints: looked for when an execution id is given, found on the rerun.
    reports = odk.Reports(ReportSteps(opb), events=[otel.tracing])
    otel.exporter.clear()

    async def twice() -> None:
        for _ in range(2):
            await reports.run(opb.Digest, dataset=opb.Dataset(name="d"), execution_id="r-1")

    run(twice())
    first, second = otel.spans("docket.execution testgraphs.Digest")
    assert [e.name for e in first.events] == []
    assert [(e.name, dict(e.attributes or {})) for e in second.events] == [
        ("docket.cache_hit", {"docket.step": "Crunch", "docket.cache.scope": "workflow"})
    ]
    assert [s.name for s in otel.spans("docket.step")] == [
        "docket.step Load",
        "docket.step Crunch",
        "docket.step Summarize",
        "docket.step Summarize",
    ]
    lookup = {"graph": "testgraphs.Reports", "step": "Crunch", "cache.scope": "workflow"}
    assert (otel.value("cache.hits", **lookup), otel.value("cache.misses", **lookup)) == (1, 1)


# -- batches ----------------------------------------------------------------------------------


class MovieSteps:
    def __init__(self, pb: Any, otel: Otel, fail: str) -> None:
        self.pb, self.otel, self.fail = pb, otel, fail

    async def compute_batch_stats(self, movies: Sequence[Any], /) -> Any:
        return self.pb.BatchStats(mean=sum(m.rating for m in movies) / len(movies))

    async def enrich_movie(self, movie: Any, stats: Any, /) -> Any:
        with self.otel.user.start_as_current_span(f"user {movie.title}"):
            await asyncio.sleep(0)
            if movie.title == self.fail:
                raise ValueError(f"no data for {movie.title}")
            return self.pb.EnrichedMovie(title=movie.title, delta=movie.rating - stats.mean)


def test_a_batch_span_holds_its_items_spans_and_items_are_counted(
    mpb: Any, mdk: Any, otel: Otel
) -> None:
    graph = mdk.Movies(MovieSteps(mpb, otel, fail="m1"), events=[otel.tracing], sleep=no_wait)
    movies = [mpb.Movie(title=f"m{i}", rating=float(i)) for i in range(3)]
    results = run(graph.run_batch(mpb.EnrichedMovie, movies, on_error="collect"))
    assert [type(r).__name__ for r in results] == ["EnrichedMovie", "ItemError", "EnrichedMovie"]

    batch = otel.one("docket.batch testgraphs.EnrichedMovie")
    items = otel.spans("docket.item testgraphs.EnrichedMovie")
    batch_id = attrs(batch)["docket.execution_id"]
    assert attrs(batch)["docket.outcome"] == "succeeded"
    assert all(parent_of(item) == span_id(batch) for item in items)
    by_id = {attrs(item)["docket.execution_id"]: item for item in items}
    assert sorted(by_id) == [f"{batch_id}/{i}" for i in range(3)]
    assert attrs(by_id[f"{batch_id}/1"])["docket.outcome"] == "failed"
    assert by_id[f"{batch_id}/1"].status.status_code is StatusCode.ERROR
    # The aggregate runs in the batch's own execution; each item's steps in the item's.
    assert parent_of(otel.one("docket.step ComputeBatchStats")) == span_id(batch)
    for index in range(3):
        item = by_id[f"{batch_id}/{index}"]
        attempts = [
            s
            for s in otel.spans("docket.step EnrichMovie")
            if attrs(s)["docket.execution_id"] == f"{batch_id}/{index}"
        ]
        assert attempts and all(parent_of(a) == span_id(item) for a in attempts)
        users = otel.spans(f"user m{index}")
        assert [parent_of(u) for u in users] == [span_id(a) for a in attempts]
    assert len(otel.spans("docket.step EnrichMovie")) == 5  # m1: 3 attempts

    counted = {"graph": "testgraphs.Movies", "target": "testgraphs.EnrichedMovie"}
    assert otel.value("batch.items", **counted, outcome="succeeded") == 2
    assert otel.value("batch.items", **counted, outcome="failed") == 1
    assert otel.value("executions", **counted, outcome="succeeded") == 1  # the batch itself


# -- tracing off: OpenTelemetry is never imported -----------------------------------------------


def test_a_graph_without_tracing_never_imports_opentelemetry(gen_dir: Path) -> None:
    script = textwrap.dedent(
        """
        import asyncio
        import importlib.abc
        import sys

        class NoOpenTelemetry(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "opentelemetry":
                    raise ImportError(f"{name} imported with tracing off")
                return None

        sys.meta_path.insert(0, NoOpenTelemetry())

        import docket_runtime
        from docket_runtime.stores import MemoryStore
        from testgraphs import movies_docket, movies_pb2, orders_docket, orders_pb2

        class Recorder(docket_runtime.Events):
            pass

        class Scores:
            async def score(self, review, model, /):
                return orders_pb2.RiskScore(value=1.0, model=model.name)

        class Movies:
            async def compute_batch_stats(self, movies, /):
                return movies_pb2.BatchStats(mean=1.0)

            async def enrich_movie(self, movie, stats, /):
                return movies_pb2.EnrichedMovie(title=movie.title)

        async def main():
            store = MemoryStore()
            scoring = orders_docket.Scoring(
                Scores(), events=[Recorder()], store=store, record=True
            )
            inputs = dict(review=orders_pb2.Review(text="x"), model=orders_pb2.Model(name="m"))
            await scoring.run(orders_pb2.RiskScore, **inputs, execution_id="e-1")
            await scoring.run(orders_pb2.RiskScore, **inputs)
            movies = movies_docket.Movies(Movies(), events=[Recorder()], record=True)
            await movies.run_batch(movies_pb2.EnrichedMovie, [movies_pb2.Movie(title="a")])

        asyncio.run(main())
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")
        assert not loaded, loaded
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(gen_dir)},
        capture_output=True,
        text=True,
        check=False,
        timeout=SAFETY_NET,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr


# -- durable executions: every resume joins the enqueue's trace --------------------------------


@pytest.fixture(scope="module")
def durable_gen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generated(tmp_path_factory)


def durable_pb() -> Any:
    return importlib.import_module("durabletest.orders_pb2")


def test_each_resume_of_a_durable_execution_joins_the_trace_of_its_enqueue(
    durable_gen: Path, otel: Otel
) -> None:
    async def body() -> None:
        store = MemoryStore()
        registry = build(store, MemoryEffects(), events=[otel.tracing])
        orders = registry.get("durabletest.Orders")
        order = durable_pb().Order(order_id="flaky-t", amount_cents=100)  # Ship fails twice
        with otel.user.start_as_current_span("request"):
            await record_execution(
                orders, durable_pb().Confirmation, {"order": order}, execution_id="flaky-t"
            )
        row = await store.get_execution("flaky-t")
        assert row is not None and row.trace_context is not None
        assert set(json.loads(row.trace_context)) == {"traceparent"}

        # Each job of the queue, here called one after another, outside any span.
        outcomes = [await resume(registry, "flaky-t", stopping=lambda: False) for _ in range(3)]
        assert [type(o) for o in outcomes] == [Continue, Continue, Done]

    run(body())
    request, enqueue = otel.one("request"), otel.one("docket.enqueue")
    assert enqueue.name == "docket.enqueue durabletest.Confirmation"
    assert (enqueue.kind, parent_of(enqueue)) == (SpanKind.PRODUCER, span_id(request))
    assert attrs(enqueue) == {
        "docket.graph": "durabletest.Orders",
        "docket.target": "durabletest.Confirmation",
        "docket.execution_id": "flaky-t",
    }
    runs = otel.spans("docket.execution durabletest.Confirmation")
    assert len(runs) == 3
    assert {trace_id(s) for s in otel.spans()} == {trace_id(request)}
    assert all(parent_of(r) == span_id(enqueue) and r.kind is SpanKind.CONSUMER for r in runs)
    assert [attrs(r)["docket.outcome"] for r in runs] == ["suspended", "suspended", "succeeded"]
    assert [r.status.status_code for r in runs] == [StatusCode.UNSET] * 3
    assert [e.name for e in runs[0].events] == ["docket.retry", "suspended"]
    assert [e.name for e in runs[1].events] == [
        "docket.cache_hit",  # ChargeCard's checkpoint
        "docket.retry",
        "suspended",
    ]
    for waited in runs[:2]:
        suspended = waited.events[-1]
        wake = dict(suspended.attributes or {})
        assert wake["docket.step"] == "Ship" and "docket.wake_at" in wake
    ships = otel.spans("docket.step Ship")
    assert [attrs(s)["docket.attempt"] for s in ships] == [1, 2, 3]
    assert [parent_of(s) for s in ships] == [span_id(r) for r in runs]
    assert [s.status.status_code for s in ships] == [StatusCode.ERROR] * 2 + [StatusCode.UNSET]
    # The resumes found the kept results of the runs before them.
    lookup = {"graph": "durabletest.Orders", "step": "ChargeCard", "cache.scope": "workflow"}
    assert (otel.value("cache.hits", **lookup), otel.value("cache.misses", **lookup)) == (2, 1)
    done = {"graph": "durabletest.Orders", "target": "durabletest.Confirmation"}
    assert otel.value("executions", **done, outcome="suspended") == 2
    assert otel.value("executions", **done, outcome="succeeded") == 1


def test_a_resume_after_a_worker_was_killed_joins_the_original_trace(
    pg: PgSession, durable_gen: Path, otel: Otel, tmp_path: Path
) -> None:
    import procrastinate

    from docket_runtime.cli import main as docket_cli
    from docket_runtime.durable import enqueue, install
    from docket_runtime.stores import open_store

    url = pg.fresh_url()
    assert docket_cli(["db", "migrate", "--url", url, "--with-queue"]) == 0
    pg.sql(url, EFFECTS_TABLE)
    logs: list[Path] = []
    procs: list[subprocess.Popen[bytes]] = []

    def worker(name: str, **config: Any) -> subprocess.Popen[bytes]:
        settings = {
            "url": url,
            "gen_dir": str(durable_gen),
            "trace_file": str(tmp_path / f"{name}.jsonl"),
            "polling": 0.1,
            "heartbeat": 0.2,
            "stalled_timeout": 1.0,
            "sweep_interval": 0.5,
            **config,
        }
        log = tmp_path / f"{name}.log"
        logs.append(log)
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, str(WORKER), json.dumps(settings)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        procs.append(proc)
        return proc

    def output() -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs)

    async def effects(what: str) -> bool | None:
        rows = pg.sql(url, "SELECT count(*) FROM durable_effects WHERE what = %s", (what,))
        return True if rows[0][0] else None

    async def body() -> None:
        store = await open_store(url)
        registry = build(store, MemoryEffects(), events=[otel.tracing])
        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
        install(app, registry)
        try:
            async with app.open_async():
                order = durable_pb().Order(order_id="order-k", amount_cents=4200)
                with otel.user.start_as_current_span("request"):
                    await enqueue(
                        app,
                        registry.get("durabletest.Orders"),
                        durable_pb().Confirmation,
                        {"order": order},
                        execution_id="order-k",
                    )
                first = worker("first", block=["Ship"])
                await wait_for(lambda: effects("Ship:blocked"), timeout=20)
                first.send_signal(signal.SIGKILL)
                assert first.wait(timeout=10) == -signal.SIGKILL
                worker("second")

                async def ended() -> str | None:
                    row = await store.get_execution("order-k")
                    return row.status if row and row.status in {"succeeded", "failed"} else None

                assert await wait_for(ended, timeout=30) == "succeeded", output()
        finally:
            await store.close()

    try:
        run_long(body)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)

    request, enqueue_span = otel.one("request"), otel.one("docket.enqueue")
    assert parent_of(enqueue_span) == span_id(request)
    first_spans = read_spans(tmp_path / "first.jsonl")
    second_spans = read_spans(tmp_path / "second.jsonl")
    trace_hex = f"{trace_id(request):032x}"
    # The killed worker's execution span never ended; the attempts it finished were exported.
    assert {s["name"] for s in first_spans} == {"docket.step Validate", "docket.step ChargeCard"}
    assert {s["trace_id"] for s in first_spans} == {trace_hex}
    # The worker that finished it: its execution span is a child of the enqueue, in that trace.
    (execution,) = [s for s in second_spans if s["name"].startswith("docket.execution")]
    assert execution["parent_id"] == f"{span_id(enqueue_span):016x}"
    assert execution["kind"] == "CONSUMER"
    assert execution["attributes"]["docket.outcome"] == "succeeded"
    assert {s["trace_id"] for s in second_spans} == {trace_hex}
    steps = {s["name"]: s for s in second_spans if s["name"].startswith("docket.step")}
    # Validate keeps nothing: it runs again; ChargeCard's result was checkpointed.
    assert set(steps) == {"docket.step Validate", "docket.step Ship", "docket.step Confirm"}
    assert steps["docket.step Ship"]["attributes"]["docket.attempt"] == 2
    assert all(s["parent_id"] == execution["span_id"] for s in steps.values())
    assert {s["pid"] for s in first_spans} != {s["pid"] for s in second_spans}


def run_long(body: Callable[[], Awaitable[None]]) -> None:
    async def guarded() -> None:
        await asyncio.wait_for(body(), 90)

    asyncio.run(guarded())


def read_spans(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
