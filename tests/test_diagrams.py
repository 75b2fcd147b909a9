"""Diagrams of plans (docket_runtime.diagram), ``docket plan`` and ``docket-gen --diagrams``.

Every graph of the examples is drawn as Mermaid, DOT and text and compared with
``tests/golden/diagrams`` (``DOCKET_UPDATE_GOLDEN=1`` rewrites them). The Mermaid
text is checked twice: by a validator of the flowchart subset the module emits
(always), and by Mermaid's own parser in node (``tools/mermaid_check``, installed
by ``npm ci`` in CI). The DOT text is rendered by Graphviz' ``dot``. Without node
or dot those two checks are skipped, except under ``CI=true``, where that is a
failure: CI installs both.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, compile_request, run_docket_gen

from docket_gen.plugin import generate
from docket_runtime import diagram
from docket_runtime.cli import main as docket_main
from docket_runtime.plan import (
    CachePolicy,
    CacheScope,
    Delivery,
    GraphPlan,
    Input,
    InputKind,
    RetryPolicy,
    Step,
    Target,
)

GOLDEN = ROOT / "tests" / "golden" / "diagrams"
EXAMPLES = sorted(p.parent for p in (ROOT / "examples").glob("*/protos"))
MERMAID_CHECK = ROOT / "tools" / "mermaid_check"
_SUFFIXES = {"mermaid": "mmd", "dot": "dot", "text": "txt"}


@pytest.fixture(scope="module")
def examples_gen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every example generated into one importable folder."""
    out = tmp_path_factory.mktemp("examples-gen")
    # One run: docket-gen owns its output folder and would take a second run's files for
    # another's orphans.
    done = run_docket_gen(*(example / "protos" for example in EXAMPLES), "-o", out)
    assert done.returncode == 0, done.stderr
    sys.path.insert(0, str(out))
    try:
        yield out
    finally:
        sys.path.remove(str(out))


def _plans(gen: Path) -> dict[str, GraphPlan]:
    """Every plan of the generated examples, by ``<package>/<Graph>``."""
    plans = {}
    for path in sorted(gen.rglob("*_docket.py")):
        module = importlib.import_module(".".join(path.relative_to(gen).with_suffix("").parts))
        for value in vars(module).values():
            if isinstance(value, GraphPlan):
                package, _, graph = value.name.rpartition(".")
                plans[f"{package}/{graph}"] = value
    return plans


def _check_golden(path: Path, content: str) -> None:
    if os.environ.get("DOCKET_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    assert path.read_text() == content, "run with DOCKET_UPDATE_GOLDEN=1 and review the diff"


def test_every_example_graph_matches_its_golden_diagrams(examples_gen: Path) -> None:
    plans = _plans(examples_gen)
    packages = {
        line.split()[1].rstrip(";")
        for example in EXAMPLES
        for proto in (example / "protos").rglob("*.proto")
        for line in proto.read_text().splitlines()
        if line.startswith("package ")
    }
    assert {name.split("/")[0] for name in plans} == packages
    written = set()
    for name, plan in plans.items():
        for format, suffix in _SUFFIXES.items():
            path = GOLDEN / f"{name}.{suffix}"
            _check_golden(path, diagram.render(plan, format))
            written.add(path)
    stale = {p for p in GOLDEN.rglob("*") if p.suffix[1:] in _SUFFIXES.values()} - written
    assert not stale, f"golden diagrams of no example graph: {sorted(map(str, stale))}"


# Validity ---------------------------------------------------------------------------------------

_ID = r"[A-Za-z_][A-Za-z0-9_]*"
_LABEL = r'(?:[^"<>#]|#(?:quot|lt|gt|35);|<br/>)*'
_NODE = re.compile(rf'^    (?P<id>{_ID})(?:\["{_LABEL}"\]|\[/"{_LABEL}"/\])$')
_EDGE = re.compile(rf'^    (?P<tail>{_ID}) (?:-->|-\.->|==>\|"\[\]"\|) (?P<head>{_ID})$')
# Words Mermaid's flowchart grammar reads as keywords where a node id is expected.
_KEYWORDS = {"end", "graph", "flowchart", "subgraph", "style", "class", "classDef", "click"}


def mermaid_errors(text: str) -> list[str]:
    """What is wrong with ``text`` as the flowchart subset the diagram module writes."""
    lines = text.split("\n")
    errors = []
    if lines[0] != "flowchart TD":
        errors.append(f"line 1: {lines[0]!r} is not 'flowchart TD'")
    if lines[-1] != "":
        errors.append("no final newline")
    declared: set[str] = set()
    for number, line in enumerate(lines[1:-1], start=2):
        node, edge = _NODE.match(line), _EDGE.match(line)
        if node:
            if node["id"] in declared or node["id"] in _KEYWORDS:
                errors.append(f"line {number}: node {node['id']} declared twice, or a keyword")
            declared.add(node["id"])
        elif edge:
            for end in (edge["tail"], edge["head"]):
                if end not in declared:
                    errors.append(f"line {number}: edge to undeclared node {end}")
        else:
            errors.append(f"line {number}: not a node or an edge: {line!r}")
    return errors


def _awkward_plan() -> GraphPlan:
    """A plan whose labels hold every character a label must escape, and every option."""
    return GraphPlan(
        name="odd.Graph",
        steps=(
            Step(
                name="Load",
                method="load",
                output="odd.Rows",
                inputs=(Input("seed", "odd.Seed"),),
                timeout=0.25,
                retry=RetryPolicy(max_attempts=5, non_retryable_errors=("acme.Declined",)),
                cache=CachePolicy(
                    scope=CacheScope.GLOBAL, ttl=90.0, version='v"2"#<b>', namespace="a&b"
                ),
                max_concurrency=4,
                blocking=True,
            ),
            Step(
                name="end",
                method="end",
                output="other.Total",
                inputs=(
                    Input("rows", "odd.Rows", InputKind.REPEATED),
                    Input("hint", "other.Hint", InputKind.OPTIONAL),
                ),
                needs=("Load",),
                cache=CachePolicy(scope=CacheScope.WORKFLOW),
                delivery=Delivery.AT_MOST_ONCE,
                durable=True,
            ),
        ),
        targets=(
            Target(type="odd.Rows", steps=("Load",), levels=(("Load",),), inputs=("odd.Seed",)),
            Target(
                type="other.Total",
                steps=("Load", "end"),
                levels=(("Load",), ("end",)),
                inputs=("odd.Seed",),
                optional_inputs=("other.Hint",),
            ),
        ),
        types={},
        inputs={"odd.Seed": "seed", "other.Hint": "hint"},
    )


def test_mermaid_escapes_labels_and_keeps_ids_safe() -> None:
    text = diagram.mermaid(_awkward_plan())
    assert mermaid_errors(text) == []
    assert "version v#quot;2#quot;#35;#lt;b#gt;" in text
    assert "s_end ==>" not in text and 's_Load ==>|"[]"| s_end' in text
    assert "in_other_Hint -.-> s_end" in text


def test_the_validator_rejects_what_mermaid_rejects() -> None:
    assert mermaid_errors('flowchart TD\n    a["x"y"]\n')
    assert mermaid_errors("flowchart TD\n    a --> b\n")
    assert mermaid_errors('flowchart TD\n    end["x"]\n')
    assert mermaid_errors('flowchart TD\n    a["<b>"]\n')


def test_options_appear_in_labels() -> None:
    text = diagram.text(_awkward_plan())
    for phrase in (
        "blocking (in a thread)",
        "timeout 250ms",
        "retry 5 attempts, 1s x2 up to 100s, not on acme.Declined",
        'cache global, ttl 90s, version v"2"#<b>, namespace a&b',
        "cache workflow",
        "at most once",
        "durable",
        "at most 4 at once",
        "end(rows: list[Rows], hint: other.Hint | None) -> other.Total",
    ):
        assert phrase in text, phrase


def _all_mermaid(examples_gen: Path, tmp_path: Path) -> list[Path]:
    files = sorted(GOLDEN.rglob("*.mmd"))
    awkward = tmp_path / "awkward.mmd"
    awkward.write_text(diagram.mermaid(_awkward_plan()))
    return [*files, awkward]


def test_golden_mermaid_is_valid_flowchart_text() -> None:
    files = sorted(GOLDEN.rglob("*.mmd"))
    assert files
    for path in files:
        assert mermaid_errors(path.read_text()) == [], path


def _need(tool: str, why: str) -> None:
    reason = f"{tool} is not installed ({why})"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def test_mermaid_parses_every_diagram(examples_gen: Path, tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None or not (MERMAID_CHECK / "node_modules" / "mermaid").is_dir():
        _need("Mermaid's parser", "npm ci --prefix tools/mermaid_check")
        return
    files = _all_mermaid(examples_gen, tmp_path)
    bad = tmp_path / "bad.mmd"
    bad.write_text('flowchart TD\n    a["x"y"]\n')
    done = subprocess.run(
        [node, MERMAID_CHECK / "parse.mjs", *files, bad],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = done.stdout.splitlines()
    expected = [f"ok {path} flowchart-v2" for path in files]
    assert lines[: len(files)] == expected, done.stdout + done.stderr
    assert lines[len(files)].startswith(f"error {bad}: Parse error"), done.stdout
    assert done.returncode == 1


def test_graphviz_renders_every_dot_diagram(tmp_path: Path) -> None:
    dot = shutil.which("dot")
    if dot is None:
        _need("Graphviz", "apt-get install graphviz")
        return
    awkward = tmp_path / "awkward.dot"
    awkward.write_text(diagram.dot(_awkward_plan()))
    files = [*sorted(GOLDEN.rglob("*.dot")), awkward]
    for path in files:
        done = subprocess.run(
            [dot, "-Tsvg", path], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0 and done.stderr == "", f"{path}: {done.stderr}"
        assert "<svg" in done.stdout
    broken = tmp_path / "broken.dot"
    broken.write_text('digraph "x" { "a" -> ; }\n')
    assert subprocess.run([dot, "-Tsvg", broken], capture_output=True, check=False).returncode


# One target, the command, the Markdown page -----------------------------------------------------


def test_a_target_draws_only_its_steps(examples_gen: Path) -> None:
    plan = _plans(examples_gen)["persistence/Checkout"]
    whole = diagram.mermaid(plan)
    payment = diagram.mermaid(plan, target="Payment")
    assert diagram.mermaid(plan, target="persistence.Payment") == payment
    assert "s_WriteReceipt" in whole and "s_WriteReceipt" not in payment
    assert "s_ChargeCard" in payment and mermaid_errors(payment) == []
    assert "graph persistence.Checkout, target Payment" in diagram.text(plan, "Payment")
    with pytest.raises(KeyError, match="cannot produce 'Invoice'"):
        diagram.render(plan, "dot", target="Invoice")
    with pytest.raises(ValueError, match="unknown diagram format 'svg'"):
        diagram.render(plan, "svg")


def test_docket_plan_prints_a_graph_of_a_module(examples_gen: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "docket_runtime.cli",
            "plan",
            "parallel.users_docket:UserGraph",
            "--path",
            str(examples_gen),
            "--format",
            "mermaid",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == (GOLDEN / "parallel" / "UserGraph.mmd").read_text()


def test_docket_plan_finds_the_only_graph_and_its_plan_constant(
    examples_gen: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = ["--path", str(examples_gen)]
    assert docket_main(["plan", "hello.greeter_docket", *path]) == 0
    assert capsys.readouterr().out == (GOLDEN / "hello" / "Greeter.txt").read_text()
    assert docket_main(["plan", "hello.greeter_docket:GREETER_PLAN", "-f", "dot", *path]) == 0
    assert capsys.readouterr().out == (GOLDEN / "hello" / "Greeter.dot").read_text()
    args = ["plan", "persistence.checkout_docket:Checkout", "-t", "Payment", *path]
    assert docket_main(args) == 0
    assert "WriteReceipt" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nowhere.graphs:Graph", "cannot import nowhere.graphs: No module named 'nowhere'"),
        ("hello.greeter_docket:Nope", "hello.greeter_docket has no Nope"),
        ("hello.greeter_docket:GreeterSteps", "is not a graph"),
        ("hello.greeter_docket:Greeter --target Nope", "cannot produce 'Nope'"),
    ],
)
def test_docket_plan_says_what_it_cannot_find(
    examples_gen: Path, capsys: pytest.CaptureFixture[str], spec: str, message: str
) -> None:
    assert docket_main(["plan", *spec.split(), "--path", str(examples_gen)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("docketctl: error: ") and message in err, err


def test_docket_gen_diagrams_writes_a_markdown_page_per_proto(tmp_path: Path) -> None:
    root = tmp_path / "protos"
    shutil.copytree(ROOT / "examples" / "persistence" / "protos", root)
    request = compile_request(root)
    plain = generate(request)
    assert not [f.name for f in plain.file if f.name.endswith(".md")]
    request.parameter = "diagrams"
    files = {f.name: f.content for f in generate(request).file}
    page = files["persistence/checkout_docket.md"]
    _check_golden(GOLDEN / "persistence" / "checkout_docket.md", page)
    block = page.split("```mermaid\n", 1)[1].split("```", 1)[0]
    assert mermaid_errors(block) == []
    request.parameter = "diagrams,pictures"
    assert generate(request).error == (
        "unknown protoc-gen-docket parameter(s) pictures; known: diagrams, views"
    )


def test_the_docs_show_the_persistence_graph_as_docket_plan_draws_it() -> None:
    page = (ROOT / "docs" / "diagrams-and-views.md").read_text()
    block = page.split("```mermaid\n", 1)[1].split("```", 1)[0]
    assert block == (GOLDEN / "persistence" / "Checkout.mmd").read_text()


def test_plan_is_also_a_click_command(examples_gen: Path) -> None:
    from click.testing import CliRunner

    from docket_runtime._cli_plan import plan_command

    args = ["hello.greeter_docket:Greeter", "--format", "mermaid", "--path", str(examples_gen)]
    result = CliRunner().invoke(plan_command(), args)
    assert result.exit_code == 0, result.output
    assert result.output == (GOLDEN / "hello" / "Greeter.mmd").read_text()
    result = CliRunner().invoke(plan_command(), ["hello.greeter_docket:Nope"])
    assert result.exit_code == 1 and "docketctl: error: " in result.output
