"""Batch runs, driven through graphs generated from tests/protos/testgraphs/movies.proto.

As in test_runtime.py, the generated modules are imported at run time and typed
``Any``; the implementations fit the generated protocols structurally.
Concurrency is measured with counters of calls in flight, never with timing;
every run sits under ``asyncio.wait_for`` only as a safety net against a hang.

The graphs:

- ``Movies``: ``ComputeBatchStats(repeated Movie)`` once, then
  ``EnrichMovie(Movie, BatchStats)`` per movie (``max_concurrency: 3``, three
  attempts 10ms apart).
- ``Ranking`` (items: Movie, shared input Weight): ``MakeLabel()`` once;
  ``ScoreMovie(Movie, Weight, optional Label)`` per movie; ``Normalize(repeated
  MovieScore)`` once; ``RankMovie(Movie, MovieScore, ScoreNorm)`` per movie;
  ``Summarize(repeated Ranked)`` once.
"""

from __future__ import annotations

import asyncio
import importlib
import time
import tracemalloc
from collections import Counter
from collections.abc import Coroutine, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest

import docket_runtime._batch
from docket_runtime import (
    Abort,
    BatchProgress,
    DeadlineExceeded,
    Events,
    ExecutionAborted,
    ExecutionFinished,
    ItemError,
    ItemFailed,
    StepFailed,
    context,
)

T = TypeVar("T")

SAFETY_NET = 5.0
"""Seconds before a run that should not hang is declared hung."""


def run(coro: Coroutine[Any, Any, T], safety_net: float = SAFETY_NET) -> T:
    """Run ``coro`` on a fresh event loop, failing instead of hanging."""
    return asyncio.run(asyncio.wait_for(coro, safety_net))


async def forever() -> None:
    """Suspend until cancelled."""
    await asyncio.Event().wait()


async def no_wait(delay: float) -> None:
    """A sleep for retries that only yields: retries without waiting."""
    await asyncio.sleep(0)


@pytest.fixture(scope="module")
def pb(gen_dir: Path) -> Any:
    """The generated ``testgraphs.movies_pb2``."""
    return importlib.import_module("testgraphs.movies_pb2")


@pytest.fixture(scope="module")
def dk(gen_dir: Path) -> Any:
    """The generated ``testgraphs.movies_docket``."""
    return importlib.import_module("testgraphs.movies_docket")


def movies(pb: Any, count: int) -> list[Any]:
    """``m0 .. m<count-1>``, rated 0 .. count-1."""
    return [pb.Movie(title=f"m{i}", rating=float(i)) for i in range(count)]


class InFlight:
    """Counts the calls of each step in flight, and the most ever at once."""

    def __init__(self) -> None:
        self.now: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()

    async def hold(self, step: str, yields: int) -> None:
        """Be in flight in ``step`` for ``yields`` turns of the event loop."""
        self.now[step] += 1
        self.peak[step] = max(self.peak[step], self.now[step])
        try:
            for _ in range(yields):
                await asyncio.sleep(0)
        finally:
            self.now[step] -= 1


class MoviesImpl:
    """Stats: mean rating; each movie: above/below the mean and by how much.

    ``fail``: titles whose enrichment always raises; ``flaky``: title -> how many
    attempts raise before one succeeds; ``yields(index)``: loop turns an
    enrichment stays in flight.
    """

    def __init__(
        self,
        pb: Any,
        *,
        fail: set[str] | None = None,
        flaky: dict[str, int] | None = None,
        yields: int = 3,
    ) -> None:
        self.pb = pb
        self.fail = fail or set()
        self.flaky = dict(flaky or {})
        self.yields = yields
        self.stats_calls: list[list[str]] = []
        self.enrich_calls: Counter[str] = Counter()
        self.finished: list[str] = []
        self.in_flight = InFlight()

    async def compute_batch_stats(self, movies: Sequence[Any]) -> Any:
        self.stats_calls.append([m.title for m in movies])
        mean = sum(m.rating for m in movies) / len(movies)
        return self.pb.BatchStats(mean=mean, count=len(movies))

    async def enrich_movie(self, movie: Any, stats: Any) -> Any:
        self.enrich_calls[movie.title] += 1
        # Later movies finish first: the results must still come back in input order.
        index = int(movie.title[1:]) if movie.title[1:].isdigit() else 0
        await self.in_flight.hold("EnrichMovie", self.yields + (50 - index) % 7)
        if movie.title in self.fail:
            raise ValueError(f"no data for {movie.title}")
        if self.flaky.get(movie.title, 0) > 0:
            self.flaky[movie.title] -= 1
            raise ConnectionError(f"{movie.title}: try again")
        self.finished.append(movie.title)
        return self.pb.EnrichedMovie(
            title=movie.title,
            above_average=movie.rating > stats.mean,
            delta=movie.rating - stats.mean,
        )


class RankingImpl:
    """Score = rating x weight; norm = mean score; ranked = score relative to the norm.

    ``fail_score`` / ``fail_rank``: titles whose step raises.
    """

    def __init__(
        self,
        pb: Any,
        *,
        fail_score: set[str] | None = None,
        fail_rank: set[str] | None = None,
        label_fails: bool = False,
    ) -> None:
        self.pb = pb
        self.fail_score = fail_score or set()
        self.fail_rank = fail_rank or set()
        self.label_fails = label_fails
        self.calls: Counter[str] = Counter()
        self.norm_inputs: list[list[float]] = []
        self.summary_inputs: list[list[str]] = []
        self.labels: list[Any] = []
        self.ranked: list[str] = []
        self.in_flight = InFlight()

    async def make_label(self) -> Any:
        self.calls["MakeLabel"] += 1
        if self.label_fails:
            raise RuntimeError("no label today")
        return self.pb.Label(text="weekly")

    async def score_movie(self, movie: Any, weight: Any, label: Any) -> Any:
        self.calls["ScoreMovie"] += 1
        self.labels.append(label)
        await self.in_flight.hold("ScoreMovie", 2)
        if movie.title in self.fail_score:
            raise ValueError(f"cannot score {movie.title}")
        return self.pb.MovieScore(value=movie.rating * weight.factor)

    async def normalize(self, scores: Sequence[Any]) -> Any:
        self.calls["Normalize"] += 1
        self.norm_inputs.append([s.value for s in scores])
        return self.pb.ScoreNorm(mean=sum(s.value for s in scores) / len(scores))

    async def rank_movie(self, movie: Any, score: Any, norm: Any) -> Any:
        self.calls["RankMovie"] += 1
        self.ranked.append(movie.title)
        await self.in_flight.hold("RankMovie", 2)
        if movie.title in self.fail_rank:
            raise ValueError(f"cannot rank {movie.title}")
        return self.pb.Ranked(
            title=movie.title, score=score.value, relative=score.value - norm.mean
        )

    async def summarize(self, ranked: Sequence[Any]) -> Any:
        self.calls["Summarize"] += 1
        self.summary_inputs.append([r.title for r in ranked])
        return self.pb.RankSummary(count=len(ranked), best=max(r.score for r in ranked))


# 1. Order, the aggregate once, shared results ---------------------------------------------------


def test_results_come_back_in_input_order_and_the_aggregate_runs_once(pb: Any, dk: Any) -> None:
    impl = MoviesImpl(pb)
    graph = dk.Movies(impl)
    batch = movies(pb, 40)

    results = run(graph.run_batch(pb.EnrichedMovie, batch, max_concurrency=10))

    # The enrichments finished out of order, the results are in input order.
    assert impl.finished != [m.title for m in batch]
    assert [r.title for r in results] == [m.title for m in batch]
    assert impl.stats_calls == [[m.title for m in batch]]  # once, over every movie, in order
    assert [r.delta for r in results] == [i - 19.5 for i in range(40)]
    assert [r.above_average for r in results] == [i > 19.5 for i in range(40)]
    assert impl.enrich_calls == Counter({m.title: 1 for m in batch})


def test_a_shared_target_is_one_value_repeated_for_every_item(pb: Any, dk: Any) -> None:
    impl = MoviesImpl(pb)
    results = run(dk.Movies(impl).run_batch(pb.BatchStats, movies(pb, 5)))

    assert len(results) == 5
    assert all(r is results[0] for r in results)
    assert (results[0].mean, results[0].count) == (2.0, 5)
    assert impl.enrich_calls == Counter()  # only what the target needs runs


def test_three_stages_run_each_aggregate_once_over_the_stage_before(pb: Any, dk: Any) -> None:
    impl = RankingImpl(pb)
    graph = dk.Ranking(impl)
    batch = movies(pb, 6)

    ranked = run(graph.run_batch(pb.Ranked, batch, weight=pb.Weight(factor=2.0)))
    summary = run(graph.run_batch(pb.RankSummary, batch, weight=pb.Weight(factor=2.0)))

    assert [(r.title, r.score, r.relative) for r in ranked] == [
        (f"m{i}", 2.0 * i, 2.0 * i - 5.0) for i in range(6)
    ]
    assert impl.norm_inputs == [[0, 2, 4, 6, 8, 10]] * 2
    assert impl.summary_inputs == [[m.title for m in batch]]
    assert all(s is summary[0] for s in summary)
    assert (summary[0].count, summary[0].best) == (6, 10.0)
    assert impl.calls == Counter(
        {"MakeLabel": 2, "ScoreMovie": 12, "Normalize": 2, "RankMovie": 12, "Summarize": 1}
    )
    assert all(label.text == "weekly" for label in impl.labels)


def test_an_aggregate_that_changes_its_input_does_not_disturb_the_batch(pb: Any, dk: Any) -> None:
    class Reversing(MoviesImpl):
        async def compute_batch_stats(self, movies: Sequence[Any]) -> Any:
            movies.reverse()  # type: ignore[attr-defined]  # a list at run time
            return await super().compute_batch_stats(movies)

    batch = movies(pb, 5)
    results = run(dk.Movies(Reversing(pb)).run_batch(pb.EnrichedMovie, batch))
    assert [r.title for r in results] == ["m0", "m1", "m2", "m3", "m4"]
    assert [m.title for m in batch] == ["m0", "m1", "m2", "m3", "m4"]


def test_the_plan_describes_the_batch_stages(dk: Any) -> None:
    text = dk.RANKING_PLAN.describe()
    assert text.startswith("graph testgraphs.Ranking (batches of testgraphs.Movie)\n")
    summary = text[text.index("  testgraphs.RankSummary") :]
    assert summary.endswith(
        "    batch (one shared value):\n"
        "      stage 0 once: MakeLabel\n"
        "      stage 0 per item: ScoreMovie\n"
        "      stage 1 once: Normalize\n"
        "      stage 1 per item: RankMovie\n"
        "      stage 2 once: Summarize"
    )
    label = text[text.index("  testgraphs.Label") : text.index("  testgraphs.MovieScore")]
    assert "batch" not in label


def test_an_empty_batch_runs_nothing(pb: Any, dk: Any) -> None:
    impl = MoviesImpl(pb)
    assert run(dk.Movies(impl).run_batch(pb.EnrichedMovie, [])) == []
    assert impl.stats_calls == []


def test_other_graphs_batch_too(gen_dir: Path) -> None:
    shapes_pb = importlib.import_module("testgraphs.shapes_pb2")
    shapes = importlib.import_module("testgraphs.shapes_docket")

    class Chain:
        async def first(self, seed: Any) -> Any:
            return shapes_pb.A(value=seed.value * 10)

        async def sum(self, values: Sequence[Any]) -> Any:
            return shapes_pb.Total(value=sum(v.value for v in values))

        async def now(self) -> Any:
            return shapes_pb.Hint(text="now")

    graph = shapes.Chain(Chain())
    seeds = [shapes_pb.Seed(value=v) for v in (1, 2, 3)]
    # Outside batches Sum gathers the one A there is; in a batch, every item's A.
    assert run(graph.run(shapes_pb.Total, seed=seeds[0])).value == 10
    assert [t.value for t in run(graph.run_batch(shapes_pb.Total, seeds))] == [60, 60, 60]
    assert [a.value for a in run(graph.run_batch(shapes_pb.A, seeds))] == [10, 20, 30]

    # A subgraph step runs its child graph once per item, under the item's execution id.
    nested = importlib.import_module("testgraphs.nested_docket")
    child_ids: list[str] = []

    class Diamond:
        async def top(self, seed: Any) -> Any:
            child_ids.append(context().execution_id)
            return shapes_pb.Extra(value=seed.value)

        async def make_left(self, extra: Any) -> Any:
            return shapes_pb.Left(value=extra.value)

        def make_right(self, extra: Any) -> Any:
            return shapes_pb.Right(value=extra.value)

        async def join(self, left: Any, right: Any) -> Any:
            return shapes_pb.Joined(value=left.value + right.value)

    class Outer:
        async def finish(self, joined: Any) -> Any:
            return shapes_pb.Total(value=joined.value + 1)

    outer = nested.Outer(Outer(), subgraphs={"testgraphs.Diamond": shapes.Diamond(Diamond())})
    totals = run(outer.run_batch(shapes_pb.Total, seeds, execution_id="o"))
    assert [t.value for t in totals] == [3, 5, 7]
    assert sorted(child_ids) == ["o/0/RunDiamond", "o/1/RunDiamond", "o/2/RunDiamond"]


# 2. Bounded concurrency -------------------------------------------------------------------------


def test_the_batch_limit_bounds_the_items_in_flight(pb: Any, dk: Any) -> None:
    impl = RankingImpl(pb)
    graph = dk.Ranking(impl)
    weight = pb.Weight(factor=1.0)

    run(graph.run_batch(pb.Ranked, movies(pb, 40), weight=weight, max_concurrency=5))
    assert impl.in_flight.peak == Counter({"ScoreMovie": 5, "RankMovie": 5})

    impl.in_flight.peak.clear()
    run(graph.run_batch(pb.Ranked, movies(pb, 40), weight=weight, max_concurrency=1))
    assert impl.in_flight.peak == Counter({"ScoreMovie": 1, "RankMovie": 1})

    # The default is 100 items at once.
    impl.in_flight.peak.clear()
    run(graph.run_batch(pb.MovieScore, movies(pb, 250), weight=weight))
    assert impl.in_flight.peak["ScoreMovie"] == docket_runtime._batch.DEFAULT_CONCURRENCY == 100


def test_a_step_limit_bounds_its_runs_across_items(pb: Any, dk: Any) -> None:
    # EnrichMovie is `max_concurrency: 3`; the batch lets 12 items run at once.
    impl = MoviesImpl(pb)
    graph = dk.Movies(impl)
    run(graph.run_batch(pb.EnrichedMovie, movies(pb, 30), max_concurrency=12))
    assert impl.in_flight.peak["EnrichMovie"] == 3
    # A batch limit below the step's wins.
    impl.in_flight.peak.clear()
    run(graph.run_batch(pb.EnrichedMovie, movies(pb, 30), max_concurrency=2))
    assert impl.in_flight.peak["EnrichMovie"] == 2


def test_each_batch_has_its_own_step_limit(pb: Any, dk: Any) -> None:
    impl = MoviesImpl(pb, yields=20)
    graph = dk.Movies(impl)

    async def main() -> list[Any]:
        return list(
            await asyncio.gather(
                graph.run_batch(pb.EnrichedMovie, movies(pb, 10)),
                graph.run_batch(pb.EnrichedMovie, movies(pb, 10)),
            )
        )

    first, second = run(main())
    assert [r.title for r in first] == [r.title for r in second] == [f"m{i}" for i in range(10)]
    assert impl.in_flight.peak["EnrichMovie"] == 6


# 3. Failures ------------------------------------------------------------------------------------


def test_raise_stops_at_the_first_failed_item_and_cancels_the_rest(pb: Any, dk: Any) -> None:
    started: list[int] = []
    cancelled: set[int] = set()

    class Hanging(RankingImpl):
        async def score_movie(self, movie: Any, weight: Any, label: Any) -> Any:
            index = int(movie.title[1:])
            started.append(index)
            if index == 2:
                raise ValueError("cannot score m2")
            try:
                await forever()
            except asyncio.CancelledError:
                cancelled.add(index)
                raise
            raise AssertionError("unreachable")

    async def main() -> ItemFailed:
        before = asyncio.all_tasks()
        graph = dk.Ranking(Hanging(pb))
        with pytest.raises(ItemFailed) as caught:
            await graph.run_batch(
                pb.Ranked, movies(pb, 20), weight=pb.Weight(factor=1.0), max_concurrency=4
            )
        for _ in range(10):  # give any wrongly started item the chance to show itself
            await asyncio.sleep(0)
        assert asyncio.all_tasks() - before == set()
        return caught.value

    error = run(main())

    assert error.index == 2
    assert str(error).startswith("item 2 of the batch failed: step 'ScoreMovie' failed")
    assert isinstance(error.error, StepFailed)
    assert error.__cause__ is error.error
    assert error.error.step == "ScoreMovie"
    assert isinstance(error.error.__cause__, ValueError)
    # At most four items were ever in flight; every other one that started was cancelled.
    assert 2 in started and len(started) <= 4
    assert cancelled == set(started) - {2}


def test_collect_gives_every_item_its_result_or_its_error(pb: Any, dk: Any) -> None:
    impl = RankingImpl(pb, fail_score={"m3"}, fail_rank={"m6"})
    graph = dk.Ranking(impl)
    batch = movies(pb, 10)
    weight = pb.Weight(factor=1.0)

    results = run(graph.run_batch(pb.Ranked, batch, weight=weight, on_error="collect"))

    errors = {i: r for i, r in enumerate(results) if isinstance(r, ItemError)}
    assert sorted(errors) == [3, 6]
    assert (errors[3].index, errors[3].error.step) == (3, "ScoreMovie")
    assert (errors[6].index, errors[6].error.step) == (6, "RankMovie")
    assert str(errors[3].error.__cause__) == "cannot score m3"
    assert [r.title for i, r in enumerate(results) if i not in errors] == [
        f"m{i}" for i in range(10) if i not in (3, 6)
    ]
    # The aggregate ran once over the items that got that far, in input order.
    survivors = [float(i) for i in range(10) if i != 3]
    assert impl.norm_inputs == [survivors]
    mean = sum(survivors) / 9
    assert results[9].relative == 9.0 - mean
    assert "m3" not in impl.ranked  # a failed item runs no further step

    # A shared target: the failed items get their error, the others the shared value.
    impl = RankingImpl(pb, fail_score={"m3"}, fail_rank={"m6"})
    summary = run(
        dk.Ranking(impl).run_batch(pb.RankSummary, batch, weight=weight, on_error="collect")
    )
    assert [type(s).__name__ for s in summary].count("ItemError") == 2
    assert isinstance(summary[3], ItemError) and isinstance(summary[6], ItemError)
    assert impl.summary_inputs == [[f"m{i}" for i in range(10) if i not in (3, 6)]]
    assert summary[0].count == 8


def test_when_every_item_fails_no_aggregate_runs(pb: Any, dk: Any) -> None:
    batch = movies(pb, 4)
    impl = RankingImpl(pb, fail_score={m.title for m in batch})
    weight = pb.Weight(factor=1.0)
    results = run(
        dk.Ranking(impl).run_batch(pb.RankSummary, batch, weight=weight, on_error="collect")
    )
    assert [(r.index, r.error.step) for r in results] == [(i, "ScoreMovie") for i in range(4)]
    assert impl.calls["Normalize"] == impl.calls["Summarize"] == 0


def test_retries_apply_per_item(pb: Any, dk: Any) -> None:
    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)
        await asyncio.sleep(0)

    impl = MoviesImpl(pb, fail={"m4"}, flaky={"m2": 2, "m7": 1})
    graph = dk.Movies(impl, sleep=sleep)
    results = run(graph.run_batch(pb.EnrichedMovie, movies(pb, 10), on_error="collect"))

    # m2 failed twice then succeeded, m7 once; m4 used its three attempts; the rest ran once.
    assert impl.enrich_calls == Counter({f"m{i}": {2: 3, 4: 3, 7: 2}.get(i, 1) for i in range(10)})
    assert isinstance(results[4], ItemError)
    assert isinstance(results[4].error, StepFailed)
    assert (results[4].error.attempts, type(results[4].error.__cause__)) == (3, ValueError)
    assert [r.title for i, r in enumerate(results) if i != 4] == [
        f"m{i}" for i in range(10) if i != 4
    ]
    assert sorted(delays) == [0.01, 0.01, 0.01, 0.02, 0.02]  # (docket.step).retry, no jitter


def test_a_failed_shared_step_fails_the_whole_batch(pb: Any, dk: Any) -> None:
    class BadStats(MoviesImpl):
        async def compute_batch_stats(self, movies: Sequence[Any]) -> Any:
            raise ZeroDivisionError("no stats")

    for on_error in ("raise", "collect"):
        impl = BadStats(pb)
        with pytest.raises(StepFailed, match="ComputeBatchStats") as caught:
            run(dk.Movies(impl).run_batch(pb.EnrichedMovie, movies(pb, 3), on_error=on_error))
        assert not isinstance(caught.value, ItemFailed)
        assert impl.enrich_calls == Counter()


def test_a_failed_shared_step_consumed_optionally_gives_none(pb: Any, dk: Any) -> None:
    impl = RankingImpl(pb, label_fails=True)
    scores = run(
        dk.Ranking(impl).run_batch(pb.MovieScore, movies(pb, 3), weight=pb.Weight(factor=3.0))
    )
    assert [s.value for s in scores] == [0.0, 3.0, 6.0]
    assert impl.labels == [None, None, None]
    assert impl.calls["MakeLabel"] == 1


def test_an_abort_stops_the_batch_even_when_collecting(pb: Any, dk: Any) -> None:
    class Aborting(MoviesImpl):
        async def enrich_movie(self, movie: Any, stats: Any) -> Any:
            if movie.title == "m1":
                raise Abort("credentials revoked")
            return await super().enrich_movie(movie, stats)

    with pytest.raises(ItemFailed) as caught:
        run(dk.Movies(Aborting(pb)).run_batch(pb.EnrichedMovie, movies(pb, 5), on_error="collect"))
    assert caught.value.index == 1
    assert isinstance(caught.value.error, ExecutionAborted)


def test_cancelling_the_caller_cancels_every_item_in_flight(pb: Any, dk: Any) -> None:
    cancelled: list[str] = []
    entered = asyncio.Event()

    class Hanging(MoviesImpl):
        async def enrich_movie(self, movie: Any, stats: Any) -> Any:
            self.enrich_calls[movie.title] += 1
            if sum(self.enrich_calls.values()) == 3:
                entered.set()
            try:
                await forever()
            except asyncio.CancelledError:
                cancelled.append(movie.title)
                raise
            raise AssertionError("unreachable")

    async def main() -> Hanging:
        before = asyncio.all_tasks()
        impl = Hanging(pb)
        task = asyncio.ensure_future(dk.Movies(impl).run_batch(pb.EnrichedMovie, movies(pb, 9)))
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(10):
            await asyncio.sleep(0)
        assert asyncio.all_tasks() - before == set()
        return impl

    impl = run(main())
    # The step allows three at once: three started, three were cancelled, none started after.
    assert sorted(cancelled) == sorted(impl.enrich_calls) and len(cancelled) == 3


def test_a_deadline_bounds_the_whole_batch(pb: Any, dk: Any) -> None:
    class Slow(MoviesImpl):
        async def enrich_movie(self, movie: Any, stats: Any) -> Any:
            await forever()
            raise AssertionError("unreachable")

    with pytest.raises(DeadlineExceeded) as caught:
        run(dk.Movies(Slow(pb)).run_batch(pb.EnrichedMovie, movies(pb, 3), deadline=0.05))
    # Cut in three items: named once.
    assert str(caught.value) == (
        "testgraphs.Movies: testgraphs.EnrichedMovie not produced within the deadline of 0.05s; "
        "cut in flight: EnrichMovie (attempt 1)"
    )


# 4. Inputs and ids ------------------------------------------------------------------------------


def test_items_run_as_executions_of_their_own(pb: Any, dk: Any) -> None:
    seen: dict[str, str] = {}

    class Recording(MoviesImpl):
        async def compute_batch_stats(self, movies: Sequence[Any]) -> Any:
            seen["stats"] = context().execution_id
            return await super().compute_batch_stats(movies)

        async def enrich_movie(self, movie: Any, stats: Any) -> Any:
            seen[movie.title] = context().execution_id
            return await super().enrich_movie(movie, stats)

    graph = dk.Movies(Recording(pb))
    run(graph.run_batch(pb.EnrichedMovie, movies(pb, 3), execution_id="nightly"))
    assert seen == {"stats": "nightly", "m0": "nightly/0", "m1": "nightly/1", "m2": "nightly/2"}


def test_wrong_inputs_are_type_errors(pb: Any, dk: Any) -> None:
    ranking = dk.Ranking(RankingImpl(pb))
    batch = movies(pb, 2)
    weight = pb.Weight()
    cases = [
        (ranking.run_batch(pb.Ranked, batch), r"a batch of testgraphs\.Ranked needs input weight="),
        (
            ranking.run_batch(pb.Ranked, batch, weight=pb.Label()),
            r"input weight must be testgraphs\.Weight, got Label",
        ),
        (
            ranking.run_batch(pb.Ranked, batch, weight=weight, movie=batch[0]),
            r"the items of a batch are its second argument, not movie=",
        ),
        (
            ranking.run_batch(pb.Ranked, batch, weight=weight, label=pb.Label()),
            r"takes no input label; it takes weight",
        ),
        (
            ranking.run_batch(pb.Ranked, [batch[0], weight], weight=weight),
            r"item 1 must be testgraphs\.Movie, got Weight",
        ),
        (
            ranking.run_batch(pb.Label, batch),
            r"testgraphs\.Label does not depend on the items \(testgraphs\.Movie\).*use run\(\)",
        ),
        (
            ranking.run_batch(pb.Movie, batch),
            r"cannot produce testgraphs\.Movie over a batch; it produces testgraphs\.MovieScore",
        ),
    ]
    for coro, message in cases:
        with pytest.raises(TypeError, match=message):
            run(coro)


def test_a_message_instead_of_its_class_says_to_pass_the_class(pb: Any, dk: Any) -> None:
    graph = dk.Ranking(RankingImpl(pb))
    with pytest.raises(TypeError) as caught:
        run(graph.run_batch(pb.Ranked(), movies(pb, 2), weight=pb.Weight()))
    assert str(caught.value) == (
        "testgraphs.Ranking.run_batch() takes the message class as target: "
        "pass Ranked, not Ranked()"
    )


def test_a_graph_without_items_has_no_batch_runs(gen_dir: Path) -> None:
    shapes_pb = importlib.import_module("testgraphs.shapes_pb2")
    shapes = importlib.import_module("testgraphs.shapes_docket")
    assert shapes.FAN_PLAN.items is None  # two inputs, no repeated field: nothing to infer
    assert not hasattr(shapes.Fan, "run_batch")

    async def step(*args: Any) -> Any:
        raise AssertionError("no step runs")

    impl = SimpleNamespace(step_a=step, step_b=step, step_c=step, gather=step)
    fan = shapes.Fan(impl)
    with pytest.raises(TypeError, match=r"graph testgraphs\.Fan has no batch runs"):
        run(fan.run_batch_target(shapes_pb.Fanned, [shapes_pb.Seed()], {}))


def test_bad_policy_or_limit_is_a_value_error(pb: Any, dk: Any) -> None:
    graph = dk.Movies(MoviesImpl(pb))
    batch = movies(pb, 2)
    with pytest.raises(ValueError, match="on_error must be 'raise' or 'collect', not 'skip'"):
        run(graph.run_batch(pb.EnrichedMovie, batch, on_error="skip"))
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="max_concurrency must be a positive int"):
            run(graph.run_batch(pb.EnrichedMovie, batch, max_concurrency=bad))


# 5. Progress events -----------------------------------------------------------------------------


class Progress(Events):
    def __init__(self) -> None:
        self.events: list[BatchProgress] = []
        self.finished: list[ExecutionFinished] = []

    def batch_progress(self, event: BatchProgress) -> None:
        self.events.append(event)

    def execution_finished(self, event: ExecutionFinished) -> None:
        self.finished.append(event)


def test_progress_events_count_done_and_failed_items(pb: Any, dk: Any) -> None:
    progress = Progress()
    graph = dk.Movies(MoviesImpl(pb, fail={"m3", "m8"}), events=[progress], sleep=no_wait)
    run(graph.run_batch(pb.EnrichedMovie, movies(pb, 10), on_error="collect", execution_id="b"))

    events = progress.events
    assert len(events) == 10  # one per item
    assert {(e.graph, e.execution_id, e.target) for e in events} == {
        ("testgraphs.Movies", "b", "testgraphs.EnrichedMovie")
    }
    assert {(e.stage, e.stages, e.total) for e in events} == {(0, 1, 10)}
    assert [e.done + e.failed for e in events] == list(range(1, 11))
    assert (events[-1].done, events[-1].failed) == (8, 2)
    # One execution_finished for the batch as a whole, none per item.
    assert [(f.execution_id, f.target, f.outcome) for f in progress.finished] == [
        ("b", "testgraphs.EnrichedMovie", "succeeded")
    ]


def test_a_failed_batch_reports_its_outcome(pb: Any, dk: Any) -> None:
    class Aborting(MoviesImpl):
        async def enrich_movie(self, movie: Any, stats: Any) -> Any:
            if movie.title == "m1":
                raise Abort("stop")
            return await super().enrich_movie(movie, stats)

    progress = Progress()
    failing = dk.Movies(MoviesImpl(pb, fail={"m2"}), events=[progress], sleep=no_wait)
    with pytest.raises(ItemFailed):
        run(failing.run_batch(pb.EnrichedMovie, movies(pb, 4), max_concurrency=1))
    with pytest.raises(ItemFailed):
        run(dk.Movies(Aborting(pb), events=[progress]).run_batch(pb.EnrichedMovie, movies(pb, 4)))
    assert [f.outcome for f in progress.finished] == ["failed", "aborted"]
    assert isinstance(progress.finished[0].error, ItemFailed)
    # Items 0 and 1 were done when item 2 failed the batch (one item at a time).
    assert [(e.done, e.failed) for e in progress.events[:2]] == [(1, 0), (2, 0)]


def test_progress_events_of_every_stage(pb: Any, dk: Any) -> None:
    progress = Progress()
    impl = RankingImpl(pb, fail_score={"m1"})
    graph = dk.Ranking(impl, events=[progress])
    weight = pb.Weight(factor=1.0)
    run(graph.run_batch(pb.RankSummary, movies(pb, 5), weight=weight, on_error="collect"))

    summary = [(e.stage, e.stages, e.done, e.failed) for e in progress.events]
    # Stage 0 scores five items (one fails), stage 1 ranks four, stage 2 summarises once.
    assert summary == [
        (0, 3, 1, 0),
        (0, 3, 1, 1),
        (0, 3, 2, 1),
        (0, 3, 3, 1),
        (0, 3, 4, 1),
        (1, 3, 1, 1),
        (1, 3, 2, 1),
        (1, 3, 3, 1),
        (1, 3, 4, 1),
        (2, 3, 4, 1),
    ]


def test_no_progress_event_is_built_without_hooks(
    pb: Any, dk: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a progress event was built with no hook bound")

    monkeypatch.setattr(docket_runtime._batch, "BatchProgress", refuse)
    results = run(dk.Movies(MoviesImpl(pb)).run_batch(pb.EnrichedMovie, movies(pb, 4)))
    assert len(results) == 4


# 6. A large batch -------------------------------------------------------------------------------

LARGE = 100_000
MEMORY_BOUND_MB = 8.0
"""Peak memory the runtime may use for a batch of LARGE items, traced by tracemalloc.

What must grow with the batch: the results list and the batch's own copy of the
items list, 8 bytes per item each (1.6 MB for 100,000; the step below returns one
shared message, so results cost no more). Everything else is bounded by the
concurrency: 100 workers, each with one item's execution in flight (about 0.1 MB
in all). One asyncio task per item, as ``asyncio.gather`` over the items does,
costs about 1 KB each, some 100 MB here: ten times the bound.
"""


def test_a_large_batch_stays_within_a_memory_bound(pb: Any, dk: Any) -> None:
    result = pb.EnrichedMovie(title="same")
    stats_seen: list[int] = []

    class Trivial:
        async def compute_batch_stats(self, movies: Sequence[Any]) -> Any:
            stats_seen.append(len(movies))
            return pb.BatchStats(count=len(movies))

        async def enrich_movie(self, movie: Any, stats: Any) -> Any:
            return result

    graph = dk.Movies(Trivial())
    batch = [pb.Movie(rating=float(i)) for i in range(LARGE)]

    async def main() -> tuple[list[Any], float, float]:
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            started = time.perf_counter()
            results = await graph.run_batch(pb.EnrichedMovie, batch)
            elapsed = time.perf_counter() - started
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return results, (peak - before) / 1e6, elapsed

    results, peak_mb, elapsed = run(main(), safety_net=120.0)

    assert len(results) == LARGE and results[0] is result and results[-1] is result
    assert stats_seen == [LARGE]
    assert peak_mb < MEMORY_BOUND_MB, f"peak {peak_mb:.1f} MB"
    assert elapsed < 60.0  # about 2 s with tracemalloc on, 0.4 s without
