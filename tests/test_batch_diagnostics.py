"""The generator's batch checks: located errors for batch roles, and the roles in the plan.

Negative cases run the real ``docket-gen`` and compare stderr line for line, as
test_diagnostics.py does (same helpers); positive cases read the plan the
plugin computes in-process.
"""

from __future__ import annotations

import re
from pathlib import Path

from conftest import compile_request, write_protos
from test_diagnostics import BAD, HEAD, _at, _fail, _path

from docket_gen.batches import plan_batches
from docket_gen.model import GraphModel
from docket_gen.planner import plan_graph
from docket_gen.plugin import generate
from docket_gen.reader import read_files
from docket_gen.wiring import check_graph
from docket_runtime.plan import Batch, Stage

MOVIE_TYPES = """\
message Movie { int32 v = 1; }
message Config { int32 v = 1; }
message Stats { int32 v = 1; }
message Enriched { int32 v = 1; }
message StatsInputs {
  option (docket.bundle) = true;
  repeated Movie movies = 1;
}
"""


def _graphs(tmp_path: Path, source: str) -> dict[str, GraphModel]:
    """The graphs of ``source`` (as shop/bad.proto), read, checked, planned and batch-planned."""
    root = write_protos(tmp_path / "protos", {BAD: source})
    _, files, diagnostics = read_files(compile_request(root))
    assert diagnostics == []
    graphs = {g.name: g for g in files[BAD].graphs}
    for graph in graphs.values():
        assert check_graph(graph) == []
        plan_graph(graph)
        assert plan_batches(graph) == []
    return graphs


def _batches(graph: GraphModel) -> dict[str, Batch | None]:
    return {t.type.removeprefix("shop."): t.batch for t in graph.targets}


# --- (docket.graph).items ------------------------------------------------------------------------

ITEMS_OPTION = (
    HEAD
    + MOVIE_TYPES
    + """\

service Unknown {
  option (docket.graph) = { inputs: "Movie" items: "Film" };
  rpc ComputeStats(StatsInputs) returns (Stats);
}

service Undeclared {
  option (docket.graph) = { inputs: "Movie" items: "Config" };
  rpc Compute(StatsInputs) returns (Stats);
}
"""
)


def test_items_must_name_a_graph_input(tmp_path: Path) -> None:
    path = _path(tmp_path)
    src = ITEMS_OPTION
    unknown = _at(src, 'option (docket.graph) = { inputs: "Movie" items: "Film" }')
    undeclared = _at(src, 'option (docket.graph) = { inputs: "Movie" items: "Config" }')
    assert (unknown, undeclared) == ("15:3", "20:3")
    assert _fail(tmp_path, {BAD: src}) == [
        f"{path}:{unknown}: graph Unknown: items 'Film' names no message type; "
        "write a message name, fully qualified or relative to the package",
        f"{path}:{undeclared}: graph Undeclared: items shop.Config is not one of the graph's "
        'inputs; add "Config" to (docket.graph).inputs',
    ]


AMBIGUOUS = (
    HEAD
    + MOVIE_TYPES
    + """\
message Score { int32 v = 1; }
message ScoreInputs {
  option (docket.bundle) = true;
  Movie movie = 1;
  Config config = 2;
}
message ScoresInputs {
  option (docket.bundle) = true;
  repeated Score scores = 1;
}

service Ranking {
  option (docket.graph) = { inputs: ["Movie", "Config"] };
  rpc ScoreMovie(ScoreInputs) returns (Score);
  rpc Normalize(ScoresInputs) returns (Stats);
}
"""
)


def test_an_aggregate_over_values_of_two_inputs_needs_items(tmp_path: Path) -> None:
    path = _path(tmp_path)
    src = AMBIGUOUS
    assert _at(src, "option (docket.graph)") == "25:3"
    assert _fail(tmp_path, {BAD: src}) == [
        f"{path}:25:3: graph Ranking: a batch could iterate over shop.Movie or shop.Config "
        "(its repeated inputs gather values derived from each); set (docket.graph).items to "
        'the one it runs over, e.g. items: "Movie"',
    ]
    # Setting items resolves it: Score is per movie, Config is shared.
    fixed = src.replace('inputs: ["Movie", "Config"]', 'inputs: ["Movie", "Config"] items: "Movie"')
    graph = _graphs(tmp_path / "fixed", fixed)["Ranking"]
    assert graph.item_type == "shop.Movie"
    assert _batches(graph)["Stats"] == Batch(
        stages=(Stage(each=("ScoreMovie",)), Stage(once=("Normalize",))), per_item=False
    )


TWO_FAN_INS = (
    HEAD
    + MOVIE_TYPES
    + """\
message ConfigsInputs {
  option (docket.bundle) = true;
  repeated Config configs = 1;
}
message Merged { int32 v = 1; }

// One repeated field over each input: no input makes both per-item.
service Both {
  option (docket.graph) = { inputs: ["Movie", "Config"] };
  rpc ComputeStats(StatsInputs) returns (Stats);
  rpc Merge(ConfigsInputs) returns (Merged);
}
"""
)


def test_repeated_fields_over_two_inputs_need_items(tmp_path: Path) -> None:
    path = _path(tmp_path)
    src = TWO_FAN_INS
    assert _fail(tmp_path, {BAD: src}) == [
        f"{path}:{_at(src, 'option (docket.graph)')}: graph Both: a batch could iterate over "
        "shop.Movie or shop.Config (its repeated inputs gather values derived from each); set "
        '(docket.graph).items to the one it runs over, e.g. items: "Movie"',
    ]
    # With items set, the other repeated field is the mistake, and it is located.
    fixed = src.replace('inputs: ["Movie", "Config"]', 'inputs: ["Movie", "Config"] items: "Movie"')
    assert _fail(tmp_path / "fixed", {BAD: fixed}) == [
        f"{_path(tmp_path / 'fixed')}:{_at(fixed, 'Config configs', 'Config')}: step Merge: "
        "repeated field configs would gather shop.Config from every item of a batch over "
        "shop.Movie, but shop.Config does not depend on the item: graph Both computes it once "
        "per batch; make the field singular",
    ]


# --- roles ---------------------------------------------------------------------------------------

NOT_PER_ITEM = (
    HEAD
    + MOVIE_TYPES
    + """\
message Twice { int32 v = 1; }
message TwiceInputs {
  option (docket.bundle) = true;
  repeated Stats stats = 1;
}
message MergeInputs {
  option (docket.bundle) = true;
  Movie movie = 1;
  repeated Config configs = 2;
}

// One input: batches iterate over Movie. Stats is computed once per batch.
service Movies {
  option (docket.graph) = { inputs: "Movie" };
  rpc ComputeStats(StatsInputs) returns (Stats);
  rpc Again(TwiceInputs) returns (Twice);
}

service Merging {
  option (docket.graph) = { inputs: ["Movie", "Config"] items: "Movie" };
  rpc Merge(MergeInputs) returns (Enriched);
}
"""
)


def test_an_aggregate_over_a_shared_type(tmp_path: Path) -> None:
    path = _path(tmp_path)
    src = NOT_PER_ITEM
    stats, configs = _at(src, "repeated Stats stats", "Stats"), _at(src, "Config configs")
    assert (stats, configs) == ("16:12", "21:12")
    assert _fail(tmp_path, {BAD: src}) == [
        f"{path}:16:12: step Again: repeated field stats would gather shop.Stats from every "
        "item of a batch over shop.Movie, but shop.Stats does not depend on the item: graph "
        "Movies computes it once per batch; make the field singular",
        f"{path}:21:12: step Merge: repeated field configs would gather shop.Config from every "
        "item of a batch over shop.Movie, but shop.Config does not depend on the item: graph "
        "Merging computes it once per batch; make the field singular",
    ]


NEEDS_EVERY_ITEM = (
    HEAD
    + MOVIE_TYPES
    + """\
message Score { int32 v = 1; }
message Rank { int32 v = 1; }
message Place { int32 v = 1; }
message RankInputs {
  option (docket.bundle) = true;
  Movie movie = 1;
  repeated Movie all = 2;
}
message PlaceInputs {
  option (docket.bundle) = true;
  optional Score score = 1;
  repeated Score scores = 2;
  Stats stats = 3;
}

service Movies {
  option (docket.graph) = { inputs: "Movie" };
  rpc ComputeStats(StatsInputs) returns (Stats);
  rpc ScoreMovie(Movie) returns (Score);
  rpc RankMovie(RankInputs) returns (Rank);
  rpc PlaceMovie(PlaceInputs) returns (Place);
}
"""
)


def test_a_per_item_step_that_needs_every_item(tmp_path: Path) -> None:
    path = _path(tmp_path)
    src = NEEDS_EVERY_ITEM
    assert _at(src, "repeated Movie all", "Movie") == "19:12"
    assert _at(src, "repeated Score scores", "Score") == "24:12"
    assert _fail(tmp_path, {BAD: src}) == [
        f"{path}:19:12: step RankMovie takes one item's shop.Movie (movie) and every item's "
        "shop.Movie (all); a step runs once per item or once per batch, not both: gather the "
        "Movie values in a step of their own and give its output to RankMovie",
        f"{path}:24:12: step PlaceMovie takes one item's shop.Score (score) and every item's "
        "shop.Score (scores); a step runs once per item or once per batch, not both: gather the "
        "Score values in a step of their own and give its output to PlaceMovie",
    ]


RESERVED = (
    HEAD
    + """\
message Movie { int32 v = 1; }
message OnError { int32 v = 1; }
message Items { int32 v = 1; }
message Out { int32 v = 1; }
message OutInputs {
  option (docket.bundle) = true;
  Movie movie = 1;
  OnError on_error = 2;
  Items items = 3;
}

service Movies {
  option (docket.graph) = { inputs: ["Movie", "OnError", "Items"] items: "Movie" };
  rpc Go(OutInputs) returns (Out);
}

// The item type is passed positionally: a message named Items may be the items.
service Fine {
  option (docket.graph) = { inputs: "Items" };
  rpc Go(Items) returns (Out);
}
"""
)


def test_shared_inputs_may_not_take_the_keywords_of_run_batch(tmp_path: Path) -> None:
    where = (
        f"{_path(tmp_path)}:{_at(RESERVED, 'option (docket.graph) = { inputs: [')}: graph Movies"
    )
    assert _fail(tmp_path, {BAD: RESERVED}) == [
        f"{where}: input shop.Items would be passed to run_batch() as items=, which run_batch() "
        "already uses; rename the message",
        f"{where}: input shop.OnError would be passed to run_batch() as on_error=, which "
        "run_batch() already uses; rename the message",
    ]


# --- the roles in the plan -------------------------------------------------------------------

INFERRED = (
    HEAD
    + MOVIE_TYPES
    + """\
message Score { int32 v = 1; }
message Hint { int32 v = 1; }
message Hints {
  option (docket.bundle) = true;
  repeated Hint hints = 1;
}
message ScoresInputs {
  option (docket.bundle) = true;
  repeated Score scores = 1;
}
message EnrichInputs {
  option (docket.bundle) = true;
  Movie movie = 1;
  Stats stats = 2;
  Config config = 3;
}
message Summary { int32 v = 1; }
message SummaryInputs {
  option (docket.bundle) = true;
  repeated Enriched enriched = 1;
  Config config = 2;
}

// Two inputs, and the repeated field ranges over Movie through ScoreMovie: Movie is the item.
service Movies {
  option (docket.graph) = { inputs: ["Movie", "Config"] };
  rpc ScoreMovie(Movie) returns (Score);
  rpc ComputeStats(ScoresInputs) returns (Stats);
  rpc EnrichMovie(EnrichInputs) returns (Enriched);
  rpc Summarize(SummaryInputs) returns (Summary);
  rpc Label(Config) returns (Hint);
}

// Two inputs and no repeated field over either: no batch runs, no error.
service Plain {
  option (docket.graph) = { inputs: ["Movie", "Config"] };
  rpc Now(google.protobuf.Empty) returns (Hint);
  rpc Collect(Hints) returns (Stats);
  rpc Use(Movie) returns (Score);
}
"""
).replace(
    'import "docket_runtime/options.proto";\n',
    'import "docket_runtime/options.proto";\nimport "google/protobuf/empty.proto";\n',
)


def test_roles_and_stages_are_in_the_plan(tmp_path: Path) -> None:
    graphs = _graphs(tmp_path, INFERRED)
    movies = graphs["Movies"]
    assert movies.item_type == "shop.Movie"
    assert _batches(movies) == {
        "Score": Batch(stages=(Stage(each=("ScoreMovie",)),)),
        "Stats": Batch(
            stages=(Stage(each=("ScoreMovie",)), Stage(once=("ComputeStats",))), per_item=False
        ),
        "Enriched": Batch(
            stages=(
                Stage(each=("ScoreMovie",)),
                Stage(once=("ComputeStats",), each=("EnrichMovie",)),
            )
        ),
        "Summary": Batch(
            stages=(
                Stage(each=("ScoreMovie",)),
                Stage(once=("ComputeStats",), each=("EnrichMovie",)),
                Stage(once=("Summarize",)),
            ),
            per_item=False,
        ),
        "Hint": None,  # shared and independent of the items: run() only
    }
    plain = graphs["Plain"]
    assert plain.item_type is None
    assert set(_batches(plain).values()) == {None}


def test_generated_module_has_run_batch_only_for_targets_that_depend_on_the_items(
    tmp_path: Path,
) -> None:
    root = write_protos(tmp_path / "protos", {BAD: INFERRED})
    response = generate(compile_request(root))
    assert response.error == ""
    (module,) = (f.content for f in response.file)
    movies, plain = module.split("class PlainSteps(Protocol):")
    assert 'items="shop.Movie"' in movies
    assert "items=" not in plain.replace("items: Sequence", "")
    assert "def run_batch" not in plain
    # Two sets of shared inputs (none; config) x two policies, each generic in its targets.
    assert movies.count("    @overload\n    async def run_batch(") == 4
    found = re.findall(r"target: type\[(\w+)\],\n        items", movies)
    batch_targets = set(found) - {"_M"}  # _M: the implementation behind the overloads
    assert batch_targets == {"_MoviesMovieInputsTarget", "_MoviesMovieConfigInputsTarget"}
    constraints = {
        name: movies.split(f"{name} = TypeVar(")[1].split(")")[0] for name in batch_targets
    }
    assert "bad_pb2.Score" in constraints["_MoviesMovieInputsTarget"]
    assert "bad_pb2.Summary" in constraints["_MoviesMovieConfigInputsTarget"]
    assert not any("Hint" in found for found in constraints.values())
    # The shared input is a keyword of run_batch; the item is not.
    assert "items: Sequence[bad_pb2.Movie],\n        /,\n        *,\n        config:" in movies
