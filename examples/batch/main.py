"""A batch: statistics over every movie computed once, then each movie rated against them.

Generate the code first (from the repository root):

    docket-gen examples/batch/protos -o examples/batch/gen
    python examples/batch/main.py
"""

from __future__ import annotations

import asyncio
import bisect
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "gen"))

from batch import movies_docket
from batch.movies_pb2 import BatchStats, Movie, RatedMovie

from docket_runtime import BatchProgress, Events

MOVIES = 240
BATCH_LIMIT = 32
WIDTH = 40


class MovieSteps(movies_docket.MovieBatchSteps):
    """Computes the stats in memory; pretends each rating calls a slow, rate-limited service."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.stats_calls = 0
        self.in_flight = 0
        self.peak = 0
        self.slept = 0.0

    async def compute_batch_stats(self, movies: Sequence[Movie], /) -> BatchStats:
        self.stats_calls += 1
        ratings = sorted(m.rating for m in movies)
        return BatchStats(
            count=len(ratings), mean=sum(ratings) / len(ratings), sorted_ratings=ratings
        )

    async def rate_movie(self, movie: Movie, stats: BatchStats, /) -> RatedMovie:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        delay = self.random.uniform(0.005, 0.03)
        self.slept += delay
        try:
            await asyncio.sleep(delay)
        finally:
            self.in_flight -= 1
        lower = bisect.bisect_left(stats.sorted_ratings, movie.rating)
        return RatedMovie(
            title=movie.title,
            rating=movie.rating,
            above_average=movie.rating > stats.mean,
            percentile=100.0 * lower / stats.count,
        )


class ProgressBar(Events):
    """A text progress bar on stdout, moved by the batch's progress events."""

    def __init__(self) -> None:
        self.drawn = -1

    def batch_progress(self, event: BatchProgress) -> None:
        finished = event.done + event.failed
        filled = WIDTH * finished // event.total
        if filled == self.drawn and finished < event.total:
            return  # redraw only when the bar moves
        self.drawn = filled
        bar = "#" * filled + "-" * (WIDTH - filled)
        stage = f" stage {event.stage + 1}/{event.stages}" if event.stages > 1 else ""
        print(
            f"\r[{bar}] {finished:>4}/{event.total} rated, {event.failed} failed{stage}",
            end="",
            flush=True,
        )
        if finished == event.total and event.stage == event.stages - 1:
            print()
            self.drawn = -1


def catalogue(count: int, seed: int) -> list[Movie]:
    rng = random.Random(seed)
    return [
        Movie(
            title=f"Movie #{number:03d}",
            year=rng.randint(1950, 2024),
            rating=round(rng.uniform(3.0, 9.5), 1),
        )
        for number in range(1, count + 1)
    ]


async def main() -> None:
    movies = catalogue(MOVIES, seed=1895)
    steps = MovieSteps(seed=42)
    graph = movies_docket.MovieBatch(steps, events=[ProgressBar()])
    print(graph.plan.describe())
    print()
    started = time.perf_counter()
    rated = await graph.run_batch(RatedMovie, movies, max_concurrency=BATCH_LIMIT)
    wall = time.perf_counter() - started
    by_rating = sorted(rated, key=lambda r: r.rating, reverse=True)
    mean = sum(m.rating for m in movies) / len(movies)
    print(f"mean rating {mean:.2f} over {len(movies)} movies")
    for label, chosen in (("best", by_rating[:3]), ("worst", by_rating[-3:])):
        for movie in chosen:
            side = "above" if movie.above_average else "below"
            print(
                f"  {label:5}  {movie.title}  {movie.rating:.1f}  {side} average, "
                f"percentile {movie.percentile:.0f}"
            )
    above = sum(r.above_average for r in rated)
    print(f"{above} above average, {len(rated) - above} at or below")
    print(f"in input order: {rated[0].title} ... {rated[-1].title}")
    print(f"ComputeBatchStats ran {steps.stats_calls} time(s) for the whole batch of {len(movies)}")
    print(f"RateMovie calls in flight at once: at most {steps.peak} (its max_concurrency: 8)")
    print(f"wall time {wall:.2f} s vs {steps.slept:.2f} s for the calls one after another")


if __name__ == "__main__":
    asyncio.run(main())
