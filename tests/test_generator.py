"""The generator end to end: golden output, determinism, the plan, --check, the options proto."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import ROOT, TEST_PROTOS, compile_request, run_docket_gen, write_protos
from google.protobuf import descriptor_pb2

from docket_gen.planner import plan_graph
from docket_gen.plugin import generate
from docket_gen.reader import read_files
from docket_gen.wiring import check_graph
from docket_runtime import options_pb2
from docket_runtime.plan import CacheScope, InputKind

GOLDEN = ROOT / "tests" / "golden"
GOLDEN_CASES = {
    "testgraphs/shapes_docket.py": TEST_PROTOS,
    "testgraphs/movies_docket.py": TEST_PROTOS,
    "parallel/users_docket.py": ROOT / "examples" / "parallel" / "protos",
}


def _generated(root: Path) -> dict[str, str]:
    response = generate(compile_request(root))
    assert response.error == ""
    return {f.name: f.content for f in response.file}


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_output_matches_golden(name: str, tmp_path: Path) -> None:
    # Copy so compile_request's descriptor set lands in tmp, not in the repository.
    root = tmp_path / "protos"
    shutil.copytree(GOLDEN_CASES[name], root)
    content = _generated(root)[name]
    golden = GOLDEN / name
    if os.environ.get("DOCKET_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(content)
    assert golden.read_text() == content, "run with DOCKET_UPDATE_GOLDEN=1 and review the diff"


def test_output_is_deterministic(tmp_path: Path) -> None:
    first = run_docket_gen(TEST_PROTOS, "-o", tmp_path / "one")
    second = run_docket_gen(TEST_PROTOS, "-o", tmp_path / "two")
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.py"))
    assert Path("testgraphs/shapes_docket.py") in files
    for path in files:
        assert (tmp_path / "one" / path).read_bytes() == (tmp_path / "two" / path).read_bytes()


def test_docket_gen_writes_an_importable_tree_and_check_detects_staleness(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    done = run_docket_gen(TEST_PROTOS, "-o", out)
    assert done.returncode == 0, done.stderr
    assert (out / "testgraphs" / "__init__.py").is_file()
    assert not (out / "__init__.py").exists()
    assert not (out / "docket_runtime").exists()  # the options module ships with the runtime
    assert {p.name for p in (out / "testgraphs").iterdir()} >= {
        "shapes_pb2.py",
        "shapes_pb2.pyi",
        "shapes_docket.py",
    }
    fresh = run_docket_gen(TEST_PROTOS, "-o", out, "--check")
    assert fresh.returncode == 0, fresh.stderr
    assert "up to date" in fresh.stdout

    (out / "testgraphs" / "shapes_docket.py").write_text("# edited by hand\n")
    (out / "testgraphs" / "shapes_pb2.pyi").unlink()
    stale = run_docket_gen(TEST_PROTOS, "-o", out, "--check")
    assert stale.returncode == 1
    assert f"stale: {out / 'testgraphs' / 'shapes_docket.py'}" in stale.stderr
    assert f"stale: {out / 'testgraphs' / 'shapes_pb2.pyi'}" in stale.stderr
    assert (out / "testgraphs" / "shapes_docket.py").read_text() == "# edited by hand\n"

    again = run_docket_gen(TEST_PROTOS, "-o", out)
    assert again.returncode == 0, again.stderr
    assert "2 files written" in again.stdout


def test_docket_gen_without_protos_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = run_docket_gen(tmp_path / "empty", "-o", tmp_path / "out")
    assert done.returncode == 2
    assert "no .proto files" in done.stderr


def test_plan_of_the_test_graphs(tmp_path: Path) -> None:
    root = tmp_path / "protos"
    shutil.copytree(TEST_PROTOS, root)
    response = generate(compile_request(root))
    assert response.error == ""
    files_out = {f.name: f.content for f in response.file}
    assert "DIAMOND_PLAN = _plan.GraphPlan(" in files_out["testgraphs/shapes_docket.py"]
    _, files, diagnostics = read_files(compile_request(root))
    assert diagnostics == []
    graphs = {g.name: g for g in files["testgraphs/shapes.proto"].graphs}
    for graph in graphs.values():
        assert check_graph(graph) == []
        plan_graph(graph)
    needs = {step.spec.name: step.spec.needs for step in graphs["Diamond"].steps}
    assert needs == {
        "Top": (),
        "MakeLeft": ("Top",),
        "MakeRight": ("Top",),
        "Join": ("MakeLeft", "MakeRight"),
    }
    assert 'needs=("MakeLeft", "MakeRight"),' in files_out["testgraphs/shapes_docket.py"]
    diamond = {t.type: t for t in graphs["Diamond"].targets}
    joined = diamond["testgraphs.Joined"]
    assert joined.steps == ("Top", "MakeLeft", "MakeRight", "Join")
    assert joined.levels == (("Top",), ("MakeLeft", "MakeRight"), ("Join",))
    assert joined.inputs == ("testgraphs.Seed",)
    assert diamond["testgraphs.Left"].steps == ("Top", "MakeLeft")
    assert diamond["testgraphs.Extra"].levels == (("Top",),)

    fan = {t.type: t for t in graphs["Fan"].targets}
    fanned = fan["testgraphs.Fanned"]
    assert fanned.levels == (("StepA", "StepB", "StepC"), ("Gather",))
    assert fanned.inputs == ("testgraphs.Seed",)
    assert fanned.optional_inputs == ("testgraphs.Hint",)
    assert fan["testgraphs.A"].optional_inputs == ()

    chain = graphs["Chain"]
    first = chain.steps[0].spec
    assert first.retry is not None
    assert (first.retry.max_attempts, first.retry.initial_interval) == (4, 0.25)
    assert (first.retry.backoff_coefficient, first.retry.maximum_interval) == (3.0, 60.0)
    assert first.retry.non_retryable_errors == ("ValueError",)
    assert first.timeout == 90.0
    assert (first.cache.ttl, first.cache.version, first.cache.scope.name) == (
        86400.0,
        "2",
        "WORKFLOW",
    )
    assert (first.max_concurrency, first.delivery.name, first.durable) == (8, "AT_LEAST_ONCE", True)
    assert chain.steps[1].spec.delivery.name == "AT_MOST_ONCE"
    assert chain.steps[1].spec.inputs[0].kind is InputKind.REPEATED
    assert chain.steps[2].spec.inputs == ()


def test_default_retry_policy_fills_unset_fields(tmp_path: Path) -> None:
    root = write_protos(
        tmp_path / "protos",
        {
            "r/retry.proto": """syntax = "proto3";
package r;
import "docket_runtime/options.proto";
message In { int32 v = 1; }
message Out { int32 v = 1; }
service G {
  option (docket.graph) = { inputs: "In" };
  rpc Go(In) returns (Out) { option (docket.step) = { retry: { initial_interval: "2s" } }; }
}
"""
        },
    )
    _, files, diagnostics = read_files(compile_request(root))
    assert diagnostics == []
    retry = files["r/retry.proto"].graphs[0].steps[0].spec.retry
    assert retry is not None
    assert (retry.max_attempts, retry.initial_interval, retry.backoff_coefficient) == (3, 2.0, 2.0)
    assert retry.maximum_interval == 200.0


def test_cache_namespace_is_in_the_plan_only_where_set(tmp_path: Path) -> None:
    root = write_protos(
        tmp_path / "protos",
        {
            "c/cache.proto": """syntax = "proto3";
package c;
import "docket_runtime/options.proto";
message In { int32 v = 1; }
message Out { int32 v = 1; }
message Other { int32 v = 1; }
service G {
  option (docket.graph) = { inputs: "In" };
  rpc Go(In) returns (Out) {
    option (docket.step) = { cache: { scope: GLOBAL namespace: "acme.pricing" } };
  }
  rpc Again(In) returns (Other) { option (docket.step) = { cache: { scope: GLOBAL } }; }
}
"""
        },
    )
    _, files, diagnostics = read_files(compile_request(root))
    assert diagnostics == []
    go, again = (step.spec.cache for step in files["c/cache.proto"].graphs[0].steps)
    assert (go.scope, go.namespace) == (CacheScope.GLOBAL, "acme.pricing")
    assert again.namespace == ""
    source = _generated(root)["c/cache_docket.py"]
    assert source.count("namespace=") == 1
    assert (
        "            cache=_plan.CachePolicy(\n"
        "                scope=_plan.CacheScope.GLOBAL,\n"
        '                namespace="acme.pricing",\n'
        "            ),\n"
    ) in source
    assert "cache=_plan.CachePolicy(scope=_plan.CacheScope.GLOBAL)," in source


def test_shipped_options_module_matches_the_proto(tmp_path: Path) -> None:
    """Regenerate options_pb2 with tools/regen_options.sh whenever the proto changes."""
    root = tmp_path / "protos"
    shutil.copytree(ROOT / "protos" / "docket_runtime", root / "docket_runtime")
    request = compile_request(root, [root / "docket_runtime" / "options.proto"])
    compiled = next(f for f in request.proto_file if f.name == "docket_runtime/options.proto")
    compiled.ClearField("source_code_info")
    # protoc adds json_name to descriptor sets but not to the descriptors it embeds in _pb2.py.
    for field in [*compiled.extension, *(f for m in compiled.message_type for f in m.field)]:
        field.ClearField("json_name")
    shipped = descriptor_pb2.FileDescriptorProto()
    options_pb2.DESCRIPTOR.CopyToProto(shipped)
    assert shipped == compiled


def test_shipped_options_module_targets_the_oldest_supported_protobuf() -> None:
    source = (ROOT / "docket_runtime" / "options_pb2.py").read_text()
    assert "# Protobuf Python Version: 6.31.1" in source
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"protobuf>=6.31.1,<8"' in pyproject
