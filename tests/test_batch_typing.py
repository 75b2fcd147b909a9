"""Typing of the generated ``run_batch`` entry points, checked by the real mypy (``--strict``).

Same conventions as test_typing.py (see typing_support.py): a line that
must fail ends in ``# E: <codes> <text>``, a ``reveal_type`` line in ``# R: <type>``.
"""

from __future__ import annotations

from typing_support import TypingEnv, check_rejected, check_revealed, check_runs

ACCEPTED = """\
import asyncio
from collections.abc import Sequence
from typing import reveal_type

from docket_runtime import ItemError
from testgraphs import movies_docket, movies_pb2, shapes_docket, shapes_pb2


class MoviesImpl(movies_docket.MoviesSteps):
    async def compute_batch_stats(
        self, movies: Sequence[movies_pb2.Movie], /
    ) -> movies_pb2.BatchStats:
        return movies_pb2.BatchStats(mean=sum(m.rating for m in movies) / len(movies))

    async def enrich_movie(
        self, movie: movies_pb2.Movie, stats: movies_pb2.BatchStats, /
    ) -> movies_pb2.EnrichedMovie:
        if movie.title == "bad":
            raise ValueError("bad movie")
        return movies_pb2.EnrichedMovie(title=movie.title, delta=movie.rating - stats.mean)


class RankingImpl(movies_docket.RankingSteps):
    async def make_label(self) -> movies_pb2.Label:
        return movies_pb2.Label(text="x")

    async def score_movie(
        self, movie: movies_pb2.Movie, weight: movies_pb2.Weight, label: movies_pb2.Label | None, /
    ) -> movies_pb2.MovieScore:
        return movies_pb2.MovieScore(value=movie.rating * weight.factor)

    async def normalize(self, scores: Sequence[movies_pb2.MovieScore], /) -> movies_pb2.ScoreNorm:
        return movies_pb2.ScoreNorm(mean=sum(s.value for s in scores) / len(scores))

    async def rank_movie(
        self, movie: movies_pb2.Movie, score: movies_pb2.MovieScore, norm: movies_pb2.ScoreNorm, /
    ) -> movies_pb2.Ranked:
        return movies_pb2.Ranked(title=movie.title, relative=score.value - norm.mean)

    async def summarize(self, ranked: Sequence[movies_pb2.Ranked], /) -> movies_pb2.RankSummary:
        return movies_pb2.RankSummary(count=len(ranked))


class ChainImpl(shapes_docket.ChainSteps):
    async def first(self, seed: shapes_pb2.Seed, /) -> shapes_pb2.A:
        return shapes_pb2.A(value=seed.value)

    async def sum(self, values: Sequence[shapes_pb2.A], /) -> shapes_pb2.Total:
        return shapes_pb2.Total(value=sum(v.value for v in values))

    async def now(self) -> shapes_pb2.Hint:
        return shapes_pb2.Hint(text="now")


async def main() -> None:
    movies = [movies_pb2.Movie(title="a", rating=1.0), movies_pb2.Movie(title="b", rating=3.0)]
    graph = movies_docket.Movies(MoviesImpl())
    enriched = await graph.run_batch(movies_pb2.EnrichedMovie, movies)
    reveal_type(enriched)  # R: list[testgraphs.movies_pb2.EnrichedMovie]
    assert [e.delta for e in enriched] == [-1.0, 1.0]
    stats = await graph.run_batch(
        movies_pb2.BatchStats,
        tuple(movies),
        max_concurrency=4,
        on_error="raise",
        execution_id="nightly",
        deadline=10.0,
    )
    reveal_type(stats)  # R: list[testgraphs.movies_pb2.BatchStats]

    with_bad = [*movies, movies_pb2.Movie(title="bad")]
    collected = await graph.run_batch(movies_pb2.EnrichedMovie, with_bad, on_error="collect")
    reveal_type(collected)  # R: list[testgraphs.movies_pb2.EnrichedMovie | docket_runtime._batch.ItemError]
    for result in collected:
        if isinstance(result, ItemError):
            reveal_type(result.error)  # R: docket_runtime.errors.StepFailed | docket_runtime.errors.StepClaimed
            assert (result.index, result.error.step) == (2, "EnrichMovie")
        else:
            reveal_type(result)  # R: testgraphs.movies_pb2.EnrichedMovie

    ranking = movies_docket.Ranking(RankingImpl())
    weight = movies_pb2.Weight(factor=2.0)
    ranked = await ranking.run_batch(movies_pb2.Ranked, movies, weight=weight)
    reveal_type(ranked)  # R: list[testgraphs.movies_pb2.Ranked]
    summary = await ranking.run_batch(movies_pb2.RankSummary, movies, weight=weight)
    reveal_type(summary)  # R: list[testgraphs.movies_pb2.RankSummary]
    assert summary[0].count == 2

    chain = shapes_docket.Chain(ChainImpl())
    totals = await chain.run_batch(shapes_pb2.Total, [shapes_pb2.Seed(value=v) for v in (1, 2)])
    reveal_type(totals)  # R: list[testgraphs.shapes_pb2.Total]
    assert [t.value for t in totals] == [3, 3]
    print("ran")


asyncio.run(main())
"""  # noqa: E501

# Every marked line must be an error, and no other line.
REJECTED = """\
from testgraphs import movies_docket, movies_pb2, shapes_docket, shapes_pb2


async def batches(
    graph: movies_docket.Movies,
    ranking: movies_docket.Ranking,
    fan: shapes_docket.Fan,
    movies: list[movies_pb2.Movie],
) -> None:
    weight = movies_pb2.Weight()
    # A shared graph input the target needs is missing, or None.
    await ranking.run_batch(movies_pb2.Ranked, movies)  # E: call-overload No overload variant of "run_batch" of "Ranking" matches argument types "type[Ranked]", "list[Movie]"
    await ranking.run_batch(movies_pb2.Ranked, movies, weight=None)  # E: call-overload No overload variant of "run_batch" of "Ranking"
    # Items of the wrong type, or one item instead of a sequence.
    await graph.run_batch(movies_pb2.EnrichedMovie, [shapes_pb2.Seed()])  # E: list-item List item 0 has incompatible type "Seed"; expected "Movie"
    await graph.run_batch(movies_pb2.EnrichedMovie, movies[0])  # E: call-overload "type[EnrichedMovie]", "Movie"
    # The items are positional; the item type is not a keyword of run_batch.
    await graph.run_batch(movies_pb2.EnrichedMovie, items=movies)  # E: call-overload Unexpected keyword argument "items"
    await graph.run_batch(movies_pb2.EnrichedMovie, movies, movie=movies[0])  # E: call-overload Unexpected keyword argument "movie"
    # A target that does not depend on the items, or that the graph does not produce.
    await ranking.run_batch(movies_pb2.Label, movies, weight=weight)  # E: type-var Value of type variable "_RankingMovieWeightInputsTarget" of "run_batch" of "Ranking" cannot be "Label"
    await graph.run_batch(movies_pb2.Movie, movies)  # E: type-var Value of type variable "_MoviesTarget" of "run_batch" of "Movies" cannot be "Movie"
    # An unknown failure policy, or a bad limit.
    await graph.run_batch(movies_pb2.EnrichedMovie, movies, on_error="ignore")  # E: call-overload "type[EnrichedMovie]", "list[Movie]", "str"
    await graph.run_batch(movies_pb2.EnrichedMovie, movies, max_concurrency="4")  # E: call-overload "type[EnrichedMovie]", "list[Movie]", "str"
    # Collected results may be errors.
    wrong: list[movies_pb2.EnrichedMovie] = await graph.run_batch(movies_pb2.EnrichedMovie, movies, on_error="collect")  # E: assignment "list[EnrichedMovie | ItemError]", variable has type "list[EnrichedMovie]"
    # A graph without an item type has no run_batch.
    await fan.run_batch(shapes_pb2.Fanned, [shapes_pb2.Seed()])  # E: attr-defined "Fan" has no attribute "run_batch"
"""  # noqa: E501


def test_run_batch_returns_lists_of_the_target_type(typing_env: TypingEnv) -> None:
    revealed = check_revealed(typing_env, "batch_accepted.py", ACCEPTED)
    assert len(revealed) == 8


def test_the_accepted_batches_run(typing_env: TypingEnv) -> None:
    check_runs(typing_env, "batch_accepted_run.py", ACCEPTED)


def test_wrong_batch_calls_are_rejected(typing_env: TypingEnv) -> None:
    rejected = check_rejected(typing_env, "batch_rejected.py", REJECTED)
    assert len(rejected) == 12
