"""Negative tests of the generator: what docket-gen prints for each kind of mistake in a proto.

Every CLI test writes its protos under ``tmp_path/protos``, runs the real
``docket-gen`` and compares stderr line for line: ``path:line:col: message``
with the path as the user passed it (the proto folder joined with the
root-relative name), a non-zero exit, and nothing written to the output folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from conftest import compile_request, run_docket_gen, write_protos

from docket_gen.plugin import generate

# Every proto below starts with these four lines, so its body starts on line 5.
HEAD = 'syntax = "proto3";\npackage shop;\nimport "docket_runtime/options.proto";\n\n'
BAD = "shop/bad.proto"
DURATION_HINT = (
    'write a number and a unit (ms, s, m, h, d), e.g. "250ms", "5s", "2m", "24h" or "1m30s"'
)


def _at(source: str, marker: str, token: str | None = None) -> str:
    """``line:col`` (1-based) of the one occurrence of ``marker`` (or of ``token`` inside it)."""
    assert source.count(marker) == 1, f"{marker!r} must occur once"
    offset = source.index(marker) + (marker.index(token) if token else 0)
    before = source[:offset]
    line, line_start = before.count("\n") + 1, before.rfind("\n") + 1
    assert "\t" not in before[line_start:], "columns of tab-indented lines are computed by hand"
    return f"{line}:{offset - line_start + 1}"


def _path(tmp_path: Path, name: str = BAD) -> str:
    """The path docket-gen prints for proto ``name``: the proto folder joined with it."""
    return (tmp_path / "protos" / name).as_posix()


def _fail(tmp_path: Path, files: Mapping[str, str], *, by_protoc: bool = False) -> list[str]:
    """Run docket-gen on ``files``; check it failed and wrote nothing; return its error lines.

    The last line counts the errors of Docket's checks, or says protoc failed (``by_protoc``).
    """
    root = write_protos(tmp_path / "protos", files)
    out = tmp_path / "out"
    done = run_docket_gen(root, "-o", out)
    assert done.returncode != 0, done.stdout
    assert not out.exists() or not any(out.iterdir())
    *errors, last = done.stderr.splitlines()
    noun = "error" if len(errors) == 1 else "errors"
    failure = "protoc failed" if by_protoc else f"{len(errors)} {noun} in Docket's checks"
    assert last == f"docket-gen: {failure}; nothing written to {out}"
    return errors


# --- one proto per kind of error ---------------------------------------------------------------

CYCLE = (
    HEAD
    + """\
message Seed { int32 v = 1; }
message A { int32 v = 1; }
message B { int32 v = 1; }
message C { int32 v = 1; }
message Done { int32 v = 1; }
message AInputs {
  option (docket.bundle) = true;
  Seed seed = 1;
  C c = 2;
}

service Loop {
  option (docket.graph) = { inputs: "Seed" };
  rpc Report(Seed) returns (Done);
  rpc MakeA(AInputs) returns (A);
  rpc MakeB(A) returns (B);
  rpc MakeC(B) returns (C);
}

service Spin {
  option (docket.graph) = { description: "a step that needs its own output" };
  rpc Again(Seed) returns (Seed);
}
"""
)


def test_cycle_names_the_steps_on_it(tmp_path: Path) -> None:
    path = _path(tmp_path)
    # Located at the cycle's first step in declaration order: `MakeA` on line 19, column 7.
    assert _at(CYCLE, "MakeA(") == "19:7"
    assert _fail(tmp_path, {BAD: CYCLE}) == [
        f"{path}:19:7: cycle in graph Loop: MakeA -> MakeC -> MakeB -> MakeA; "
        "each step needs the output of the next one, so none can start",
        f"{path}:{_at(CYCLE, 'Again(')}: cycle in graph Spin: Again -> Again; "
        "each step needs the output of the next one, so none can start",
    ]


NEEDS = (
    HEAD
    + """\
import "other/types.proto";

message Order { int32 v = 1; }
message Rates { int32 v = 1; }
message Quote { int32 v = 1; }
message Used { int32 v = 1; }
message PriceInputs {
  option (docket.bundle) = true;
  Order order = 1;
  Rates rates = 2;
}

service Pricing {
  option (docket.graph) = { inputs: "Order" };
  rpc Price(PriceInputs) returns (Quote);
  rpc Use(other.Thing) returns (Used);
}
"""
)
OTHER = 'syntax = "proto3";\npackage other;\nmessage Thing { int32 v = 1; }\n'


def test_unproduced_undeclared_input_names_the_step_and_the_fix(tmp_path: Path) -> None:
    path = _path(tmp_path)
    # The bundle field's type `Rates` is on line 14, column 3; `other.Thing` on line 20, col 11.
    assert _at(NEEDS, "Rates rates") == "14:3"
    assert _at(NEEDS, "other.Thing)") == "20:11"
    assert _fail(tmp_path, {BAD: NEEDS, "other/types.proto": OTHER}) == [
        f"{path}:14:3: step Price needs shop.Rates (rates), which no step of graph Pricing "
        "produces and the graph does not declare as an input; "
        'add a step that returns Rates or add "Rates" to (docket.graph).inputs',
        # A type of another package must be declared by a name that resolves from `shop`.
        f"{path}:20:11: step Use needs other.Thing (thing), which no step of graph Pricing "
        "produces and the graph does not declare as an input; "
        'add a step that returns Thing or add "other.Thing" to (docket.graph).inputs',
    ]


DECLARED_AND_PRODUCED = (
    HEAD
    + """\
message Order { int32 v = 1; }
message Quote { int32 v = 1; }

service Pricing {
  option (docket.graph) = { inputs: ["Order", "Quote"] };
  rpc Price(Order) returns (Quote);
}
"""
)


def test_declared_input_that_a_step_produces(tmp_path: Path) -> None:
    path = _path(tmp_path)
    src = DECLARED_AND_PRODUCED
    assert _at(src, "returns (Quote)", "Quote") == "10:29"
    assert _fail(tmp_path, {BAD: src}) == [
        f"{path}:10:29: step Price produces shop.Quote, which graph Pricing also declares as an "
        f"input ({path}:{_at(src, 'option (docket.graph)')}); "
        "remove it from (docket.graph).inputs or from the step",
    ]


TWO_PRODUCERS = (
    HEAD
    + """\
message Order { int32 v = 1; }
message Quote { int32 v = 1; }

service Pricing {
  option (docket.graph) = { inputs: "Order" };
  rpc Price(Order) returns (Quote);
  rpc Reprice(Order) returns (Quote);
}
"""
)


def test_two_steps_producing_one_type(tmp_path: Path) -> None:
    path = _path(tmp_path)
    src = TWO_PRODUCERS
    # Located at the second producer's output type; the first producer is quoted with its path.
    assert _fail(tmp_path, {BAD: src}) == [
        f"{path}:11:31: steps Price ({path}:10:7) and Reprice both produce shop.Quote; "
        "a graph has one producer per type, so wrap one output in its own message",
    ]
    assert _at(src, "rpc Reprice(Order) returns (Quote)", "Quote") == "11:31"


BUNDLE_FIELDS = (
    HEAD
    + """\
message Order { int32 v = 1; }
message Quote { int32 v = 1; }
enum Kind { KIND_UNSET = 0; }
message PriceInputs {
  option (docket.bundle) = true;
  Order order = 1;
  string note = 2;
  map<string, Order> by_id = 3;
  Kind kind = 4;
}

service Pricing {
  option (docket.graph) = { inputs: "Order" };
  rpc Price(PriceInputs) returns (Quote);
}
"""
)


def test_bundle_field_that_is_not_a_message(tmp_path: Path) -> None:
    path = _path(tmp_path)
    src = BUNDLE_FIELDS
    assert _fail(tmp_path, {BAD: src}) == [
        f"{path}:{_at(src, marker)}: field {field} of bundle shop.PriceInputs (input of step "
        "Price) is not a message; every input of a step is a message type"
        for marker, field in [("string note", "note"), ("map<", "by_id"), ("Kind kind", "kind")]
    ]
    assert _at(src, "string note") == "11:3"


DURATIONS = (
    HEAD
    + """\
message Order { int32 v = 1; }
message Quote { int32 v = 1; }
message Label { int32 v = 1; }

service Pricing {
  option (docket.graph) = { inputs: "Order" };
  rpc Price(Order) returns (Quote) {
    option (docket.step) = { timeout: "5 sec" retry: { initial_interval: "soon" } };
  }
  rpc Tag(Order) returns (Label) {
    option (docket.step) = { timeout: "0s" cache: { scope: WORKFLOW ttl: "1y" } };
  }
}
"""
)


def test_bad_durations(tmp_path: Path) -> None:
    path = _path(tmp_path)
    src = DURATIONS
    # protoc locates an aggregate option only down to `option` itself: errors about its
    # fields point there (line 12, column 5), and sort by message at the same place.
    price = f"{path}:12:5: step Price"
    tag_at = _at(src, 'option (docket.step) = { timeout: "0s"')
    tag = f"{path}:{tag_at}: step Tag"
    assert _fail(tmp_path, {BAD: src}) == [
        f"{price}: retry.initial_interval: bad duration 'soon': {DURATION_HINT}",
        f"{price}: timeout: bad duration '5 sec': {DURATION_HINT}",
        f"{tag}: cache.ttl: bad duration '1y': {DURATION_HINT}",
        f"{tag}: timeout: bad duration '0s': it must be longer than zero",
    ]
    assert tag.endswith(":15:5: step Tag")


UNKNOWN_SUBGRAPH = (
    HEAD
    + """\
message Order { int32 v = 1; }
message Receipt { int32 v = 1; }

service Shop {
  option (docket.graph) = { inputs: "Order" };
  rpc Pay(Order) returns (Receipt) { option (docket.step) = { subgraph: "Checkout" }; }
}
"""
)


def test_unknown_subgraph(tmp_path: Path) -> None:
    path = _path(tmp_path)
    assert _at(UNKNOWN_SUBGRAPH, "option (docket.step)") == "10:38"
    assert _fail(tmp_path, {BAD: UNKNOWN_SUBGRAPH}) == [
        f"{path}:10:38: step Pay: subgraph: no graph named 'Checkout' (graphs: shop.Shop)",
    ]


MISMATCHED_SUBGRAPHS = (
    HEAD
    + """\
message Order { int32 v = 1; }
message Card { int32 v = 1; }
message Receipt { int32 v = 1; }
message Label { int32 v = 1; }

service Checkout {
  option (docket.graph) = { inputs: ["Order", "Card"] };
  rpc Charge(ChargeInputs) returns (Receipt);
}
message ChargeInputs {
  option (docket.bundle) = true;
  Order order = 1;
  Card card = 2;
}

service Shop {
  option (docket.graph) = { inputs: "Order" };
  rpc Pay(Order) returns (Receipt) { option (docket.step) = { subgraph: "Checkout" }; }
  rpc Ship(Receipt) returns (Label) { option (docket.step) = { subgraph: "Checkout" }; }
}
"""
)


def test_subgraph_that_cannot_produce_the_step_output(tmp_path: Path) -> None:
    path = _path(tmp_path)
    src = MISMATCHED_SUBGRAPHS
    assert _at(src, "Pay(Order) returns (Receipt) { option", "option") == "22:38"
    assert _fail(tmp_path, {BAD: src}) == [
        f"{path}:22:38: step Pay: subgraph shop.Checkout needs shop.Card to produce "
        "shop.Receipt, which the step does not take as input",
        f"{path}:23:39: step Ship: subgraph shop.Checkout does not produce shop.Label",
    ]


NAME_COLLISIONS = (
    HEAD
    + """\
message Url { int32 v = 1; }
message Page { int32 v = 1; }
message Site { int32 v = 1; }
message Title { int32 v = 1; }
message Link { int32 v = 1; }
message LinkInputs {
  option (docket.bundle) = true;
  Page self = 1;
}

service Crawl {
  option (docket.graph) = { inputs: "Url" };
  rpc FetchURL(Url) returns (Page);
  rpc FetchUrl(Url) returns (Site);
  rpc Name(Page) returns (Title) { option (docket.step) = { name: "FetchURL" }; }
  rpc MakeLink(LinkInputs) returns (Link);
}
"""
)


def test_step_names_that_collide(tmp_path: Path) -> None:
    path = _path(tmp_path)
    src = NAME_COLLISIONS
    first = f"({path}:{_at(src, 'FetchURL(')})"
    # rpc Name takes Page, the output of rpc FetchURL, under the step name FetchURL: only the
    # duplicate name is reported, not a cycle FetchURL -> FetchURL.
    assert _fail(tmp_path, {BAD: src}) == [
        f"{path}:12:3: step MakeLink: input shop.Page would be the parameter self of "
        "make_link(), which already names the instance; rename the bundle field "
        "(a message named Self needs a bundle field with another name)",
        f"{path}:18:7: step FetchUrl and step FetchURL {first} both become the Python method "
        "fetch_url(); rename one of them",
        f"{path}:{_at(src, 'Name(')}: step name 'FetchURL' of rpc Name is already used by "
        f"rpc FetchURL {first}; give one of them another (docket.step).name",
    ]
    assert _at(src, "FetchUrl(") == "18:7"
    assert _at(src, "Page self") == "12:3"


GRAPH_INPUTS = (
    HEAD
    + """\
message Order { int32 v = 1; }
message Quote { int32 v = 1; }

service Pricing {
  option (docket.graph) = { inputs: ["Order", "Nope", "Pricing", "string"] };
  rpc Price(Order) returns (Quote);
}
"""
)


def test_graph_input_that_is_not_a_message_type(tmp_path: Path) -> None:
    where = f"{_path(tmp_path)}:9:3: graph Pricing"
    fix = "names no message type; write a message name, fully qualified or relative to the package"
    assert _at(GRAPH_INPUTS, "option (docket.graph)") == "9:3"
    assert _fail(tmp_path, {BAD: GRAPH_INPUTS}) == [
        f"{where}: input 'Nope' {fix}",
        f"{where}: input 'Pricing' {fix}",  # a service is not a message
        f"{where}: input 'string' {fix}",
    ]


OPTION_VALUES = (
    HEAD
    + """\
message Order { int32 v = 1; }
message Quote { int32 v = 1; }
message Label { int32 v = 1; }
message Box { int32 v = 1; }
message Charge { int32 v = 1; }

service Pricing {
  option (docket.graph) = { inputs: "Order" };
  rpc Price(Order) returns (Quote) {
    option (docket.step) = { retry: { backoff_coefficient: 0.5 } };
  }
  rpc Tag(Order) returns (Label) {
    option (docket.step) = {
      retry: { initial_interval: "10s" maximum_interval: "2s" }
      cache: { ttl: "1h" }
    };
  }
  rpc Pack(Order) returns (Box) {
    option (docket.step) = { retry: { maximum_interval: "500ms" } cache: { version: "2" } };
  }
  rpc Pay(Order) returns (Charge) {
    option (docket.step) = { delivery: AT_MOST_ONCE retry: { max_attempts: 2 } };
  }
}
"""
)


def test_bad_option_values(tmp_path: Path) -> None:
    path = _path(tmp_path)
    src = OPTION_VALUES
    no_scope = "cache: ttl and version need a scope: set scope to WORKFLOW or GLOBAL"
    pack = f"{path}:{_at(src, 'option (docket.step) = { retry: { maximum')}: step Pack"
    assert _fail(tmp_path, {BAD: src}) == [
        f"{path}:14:5: step Price: retry.backoff_coefficient: 0.5 is below 1; use 1 or more",
        f"{path}:17:5: step Tag: {no_scope}",
        f"{path}:17:5: step Tag: retry.maximum_interval: '2s' is shorter than initial_interval "
        "(10s)",
        f"{pack}: {no_scope}",
        # Without an initial_interval, the default one (1s) is the bound.
        f"{pack}: retry.maximum_interval: '500ms' is shorter than initial_interval (1s)",
        f"{path}:26:5: step Pay: retry: an AT_MOST_ONCE step never runs twice, so it cannot "
        "retry; remove the retry, or make the step idempotent (context().idempotency_key) and "
        "keep AT_LEAST_ONCE",
    ]
    assert pack.endswith(":23:5: step Pack")


BUNDLE_OUTPUT = (
    HEAD
    + """\
message Order { int32 v = 1; }
message Parts {
  option (docket.bundle) = true;
  Order order = 1;
}

service Pricing {
  option (docket.graph) = { inputs: "Order" };
  rpc Split(Order) returns (Parts);
}
"""
)


def test_bundle_as_a_step_output(tmp_path: Path) -> None:
    assert _at(BUNDLE_OUTPUT, "(Parts)", "Parts") == "13:29"
    assert _fail(tmp_path, {BAD: BUNDLE_OUTPUT}) == [
        f"{_path(tmp_path)}:13:29: step Split returns bundle shop.Parts; "
        "a bundle groups a step's inputs and cannot be an output",
    ]


STREAMING = (
    HEAD
    + """\
message Order { int32 v = 1; }
message Quote { int32 v = 1; }

service Pricing {
  option (docket.graph) = { inputs: "Order" };
  rpc Watch(stream Order) returns (Quote);
  rpc Feed(Order) returns (stream Quote);
}
"""
)


def test_streaming_rpc(tmp_path: Path) -> None:
    path = _path(tmp_path)
    assert _fail(tmp_path, {BAD: STREAMING}) == [
        f"{path}:10:7: rpc Watch: a streaming rpc cannot be a step; remove `stream`",
        f"{path}:11:7: rpc Feed: a streaming rpc cannot be a step; remove `stream`",
    ]


# --- several errors, protoc's own errors, columns -----------------------------------------------

SEVERAL = (
    HEAD
    + """\
message Order { int32 v = 1; }
message Quote { int32 v = 1; }
message Label { int32 v = 1; }

service Orders {
  option (docket.graph) = { inputs: "Order" };
  rpc Price(Rates) returns (Quote);
  rpc Tag(TagInputs) returns (Label);
  rpc Watch(stream Order) returns (Quote);
}

message Rates { int32 v = 1; }
message TagInputs {
  option (docket.bundle) = true;
  Quote quote = 1;
  string note = 2;
}
"""
)
INVOICE = """\
syntax = "proto3";
package billing;
import "docket_runtime/options.proto";

message Invoice { int32 v = 1; }
message Total { int32 v = 1; }

service Billing {
  option (docket.graph) = { inputs: "Invoice" };
  rpc Sum(Invoice) returns (Total) { option (docket.step) = { timeout: "soon" }; }
  rpc Resum(Invoice) returns (Total);
}
"""


def test_several_errors_are_reported_at_once_sorted_by_location(tmp_path: Path) -> None:
    # The reader finds the bundle field (line 20) and the stream (line 13) before the
    # wiring check finds the missing Rates (line 11): the output is sorted by file, line, col.
    shop, billing = _path(tmp_path, "shop/orders.proto"), _path(tmp_path, "billing/invoice.proto")
    assert _fail(tmp_path, {"shop/orders.proto": SEVERAL, "billing/invoice.proto": INVOICE}) == [
        f"{billing}:10:38: step Sum: timeout: bad duration 'soon': {DURATION_HINT}",
        f"{billing}:11:31: steps Sum ({billing}:10:7) and Resum both produce billing.Total; "
        "a graph has one producer per type, so wrap one output in its own message",
        f"{shop}:11:13: step Price needs shop.Rates (rates), which no step of graph Orders "
        "produces and the graph does not declare as an input; "
        'add a step that returns Rates or add "Rates" to (docket.graph).inputs',
        f"{shop}:13:7: rpc Watch: a streaming rpc cannot be a step; remove `stream`",
        f"{shop}:20:3: field note of bundle shop.TagInputs (input of step Tag) is not a message; "
        "every input of a step is a message type",
    ]
    assert _at(SEVERAL, "string note") == "20:3"
    assert _at(INVOICE, "(Total);", "Total") == "11:31"


def test_protoc_syntax_error_is_readable(tmp_path: Path) -> None:
    source = HEAD + "message Order {\n  int32 v = 1\n}\n"
    # protoc stops at the `}` on line 7, column 1, where it expected the `;`.
    assert _fail(tmp_path, {BAD: source}, by_protoc=True) == [
        f'{_path(tmp_path)}:7:1: Expected ";".'
    ]


NO_IMPORT = """\
syntax = "proto3";
package shop;

message Order { int32 v = 1; }
message Quote { int32 v = 1; }
message Label { int32 v = 1; }

service Pricing {
  option (docket.graph) = { inputs: "Order" };
  rpc Price(Order) returns (Quote) { option (docket.step) = { timeout: "5s" }; }
  rpc Tag(Order) returns (Label) { option (docket.step).timeout = "5s"; }
}
"""


def test_missing_options_import_is_said_once_with_the_line_to_add(tmp_path: Path) -> None:
    # protoc reports each of the three uses; docket-gen says it once, at the first use.
    assert _fail(tmp_path, {BAD: NO_IMPORT}, by_protoc=True) == [
        f"{_path(tmp_path)}:{_at(NO_IMPORT, '(docket.graph)')}: (docket.graph) and "
        "(docket.step) are unknown: this file does not import Docket's options; add the line "
        'import "docket_runtime/options.proto"; after line 2 (package shop;)'
    ]


def test_unknown_option_in_a_file_that_imports_the_options_is_protocs_error(
    tmp_path: Path,
) -> None:
    source = (
        HEAD
        + "message Order { int32 v = 1; }\n"
        + ('service Pricing {\n  option (docket.graf) = { inputs: "Order" };\n}\n')
    )
    # protoc's own words (the end of the line varies between protoc releases).
    (line,) = _fail(tmp_path, {BAD: source}, by_protoc=True)
    assert line.startswith(f'{_path(tmp_path)}:7:10: Option "(docket.graf)" unknown. ')


TABS = (
    HEAD
    + "message Order { int32 v = 1; }\n"
    + "message Quote { int32 v = 1; }\n"
    + "\n"
    + "service Pricing {\n"
    + '\toption (docket.graph) = { inputs: "Order" };\n'
    + "\trpc Price(Order) returns (Quote);\n"
    + "\trpc  \tReprice(Order) returns (Quote);\n"
    + "}\n"
)


def test_tab_indented_proto_has_protoc_columns(tmp_path: Path) -> None:
    path = _path(tmp_path)
    # protoc counts a tab as a move to the next multiple of 8 (0-based), and prints 1-based
    # columns.
    # Line 10, "\trpc Price(...": the tab moves to 8, "rpc " fills 8-11, `Price` starts at 12:
    # column 13 (a plain character count would give 6).
    # Line 11, "\trpc  \tReprice(Order) returns (Quote);": the tab moves to 8, "rpc  " fills
    # 8-12, the second tab moves from 13 to 16, "Reprice(Order) returns (" fills 16-39, so
    # `Quote` starts at 40: column 41 (a plain character count would give 31).
    assert TABS.splitlines()[10] == "\trpc  \tReprice(Order) returns (Quote);"
    assert _fail(tmp_path, {BAD: TABS}) == [
        f"{path}:11:41: steps Price ({path}:10:13) and Reprice both produce shop.Quote; "
        "a graph has one producer per type, so wrap one output in its own message",
    ]


def test_paths_are_printed_as_the_user_passed_the_proto_folder(tmp_path: Path) -> None:
    # A relative folder, run from its parent: every path, quoted ones too, is relative to it.
    write_protos(tmp_path / "protos", {BAD: TWO_PRODUCERS})
    done = run_docket_gen("protos", "-o", "out", cwd=tmp_path)
    assert done.returncode != 0
    assert not (tmp_path / "out").exists()
    assert done.stderr.splitlines() == [
        "protos/shop/bad.proto:11:31: steps Price (protos/shop/bad.proto:10:7) and Reprice "
        "both produce shop.Quote; a graph has one producer per type, so wrap one output in its "
        "own message",
        "docket-gen: 1 error in Docket's checks; nothing written to out",
    ]


# --- the plugin in-process ----------------------------------------------------------------------

IN_PROCESS = (
    HEAD
    + """\
message Seed { int32 v = 1; }
message A { int32 v = 1; }
message B { int32 v = 1; }
message Hint { int32 v = 1; }
message Tip { int32 v = 1; }
message Pair {
  option (docket.bundle) = true;
  Seed seed = 1;
  oneof choice { Hint hint = 2; }
}

service Loop {
  option (docket.graph) = { inputs: ["Seed", "Hint"] };
  rpc MakeA(B) returns (A);
  rpc MakeB(A) returns (B);
  rpc First(Pair) returns (Hint);
  rpc Second(Pair) returns (Tip);
}
"""
)
GOOD = (
    HEAD
    + """\
message Order { int32 v = 1; }
message Quote { int32 v = 1; }

service Pricing {
  option (docket.graph) = { inputs: "Order" };
  rpc Price(Order) returns (Quote);
}
"""
)


def test_plugin_reports_errors_in_the_response(tmp_path: Path) -> None:
    root = write_protos(tmp_path / "protos", {BAD: IN_PROCESS})
    response = generate(compile_request(root))
    assert list(response.file) == []
    # Root-relative paths (protoc's names), one line per error; the oneof field is reported
    # once although two steps take its bundle.
    assert response.error.splitlines() == [
        f"{BAD}:13:18: field hint of bundle shop.Pair is in a oneof; mark it `optional` instead",
        f"{BAD}:18:7: cycle in graph Loop: MakeA -> MakeB -> MakeA; "
        "each step needs the output of the next one, so none can start",
        f"{BAD}:20:28: step First produces shop.Hint, which graph Loop also declares as an input "
        f"({BAD}:17:3); remove it from (docket.graph).inputs or from the step",
    ]
    assert _at(IN_PROCESS, "Hint hint") == "13:18"
    assert _at(IN_PROCESS, "(Hint);", "Hint") == "20:28"


def test_plugin_generates_a_module_per_valid_proto(tmp_path: Path) -> None:
    root = write_protos(tmp_path / "protos", {"shop/pricing.proto": GOOD})
    response = generate(compile_request(root))
    assert response.error == ""
    assert [f.name for f in response.file] == ["shop/pricing_docket.py"]
    assert "class PricingSteps(Protocol):" in response.file[0].content


def test_plugin_reports_errors_of_the_files_to_generate_only(tmp_path: Path) -> None:
    root = write_protos(tmp_path / "protos", {BAD: CYCLE, "shop/pricing.proto": GOOD})
    request = compile_request(root)
    assert list(request.file_to_generate) == [BAD, "shop/pricing.proto"]
    assert generate(request).error.startswith(f"{BAD}:19:7: cycle in graph Loop")
    del request.file_to_generate[0]
    response = generate(request)
    assert response.error == ""
    assert [f.name for f in response.file] == ["shop/pricing_docket.py"]


def _errors(tmp_path: Path, source: str) -> list[str]:
    """The plugin's error lines for ``source`` as shop/bad.proto, in process (root-relative)."""
    response = generate(compile_request(write_protos(tmp_path / "protos", {BAD: source})))
    assert list(response.file) == []
    return response.error.splitlines()


NAMESPACE_SCOPES = (
    HEAD
    + """\
message Order { int32 v = 1; }
message Quote { int32 v = 1; }
message Label { int32 v = 1; }
message Box { int32 v = 1; }

service Pricing {
  option (docket.graph) = { inputs: "Order" };
  rpc Price(Order) returns (Quote) {
    option (docket.step) = { cache: { scope: WORKFLOW namespace: "acme.pricing" } };
  }
  rpc Tag(Order) returns (Label) { option (docket.step) = { cache: { namespace: "acme" } }; }
  rpc Pack(Order) returns (Box) {
    option (docket.step) = { cache: { scope: GLOBAL namespace: "acme.pricing" } };
  }
}
"""
)


def test_cache_namespace_needs_the_global_scope(tmp_path: Path) -> None:
    src = NAMESPACE_SCOPES
    # Located at the step's option; Pack (GLOBAL) is fine.
    price = _at(src, "option (docket.step) = { cache: { scope: WORKFLOW")
    tag = _at(src, 'option (docket.step) = { cache: { namespace: "acme" }')
    assert (price, tag) == ("13:5", "15:36")
    fix = "set scope to GLOBAL or remove the namespace"
    assert _errors(tmp_path, src) == [
        f"{BAD}:13:5: step Price: cache.namespace: only GLOBAL results are shared across "
        f"graphs, and the scope is WORKFLOW; {fix}",
        f"{BAD}:15:36: step Tag: cache.namespace: only GLOBAL results are shared across "
        f"graphs, and the scope is NONE; {fix}",
    ]


SENSITIVE_BUNDLE = (
    HEAD
    + """\
message Order { int32 v = 1; }
message Card { option (docket.sensitive) = true; string number = 1; }
message Quote { int32 v = 1; }
message PriceInputs {
  option (docket.bundle) = true;
  option (docket.sensitive) = true;
  Order order = 1;
  Card card = 2;
}

service Pricing {
  option (docket.graph) = { inputs: ["Order", "Card"] };
  rpc Price(PriceInputs) returns (Quote);
}
"""
)


def test_a_sensitive_bundle_is_located_at_its_option(tmp_path: Path) -> None:
    src = SENSITIVE_BUNDLE
    where = _at(src, "option (docket.sensitive) = true;\n  Order")
    assert where == "10:3"
    # Fields of a bundle are what is stored: Card, sensitive itself, is fine.
    assert _errors(tmp_path, src) == [
        f"{BAD}:10:3: bundle shop.PriceInputs (input of step Price) is marked sensitive, but "
        "a bundle is never stored; mark the message types of its fields sensitive instead"
    ]


def test_sensitive_steps_and_inputs_reach_the_plan(tmp_path: Path) -> None:
    src = HEAD + (
        "message Card { option (docket.sensitive) = true; string number = 1; }\n"
        "message Token { string v = 1; }\nmessage Receipt { string v = 1; }\n"
        "message Note { string v = 1; }\n"
        "service Pay {\n"
        '  option (docket.graph) = { inputs: "Card" };\n'
        "  rpc Tokenize(Card) returns (Token);\n"
        "  rpc Charge(Token) returns (Receipt) { option (docket.step) = { sensitive: true }; }\n"
        "  rpc Annotate(Receipt) returns (Note);\n"
        "}\n"
    )
    response = generate(compile_request(write_protos(tmp_path / "protos", {BAD: src})))
    assert response.error == ""
    [module] = [f.content for f in response.file if f.name.endswith("_docket.py")]
    # Only Charge is sensitive (its option); Card, sensitive, is a graph input.
    assert module.count("sensitive=True") == 1
    assert module.index("sensitive=True") > module.index('name="Charge"')
    assert module.index("sensitive=True") < module.index('name="Annotate"')
    assert 'sensitive=("shop.Card",)' in module


def test_a_step_returning_a_sensitive_message_is_sensitive(tmp_path: Path) -> None:
    kept = "option (docket.step) = { cache: { scope: WORKFLOW } };"
    src = HEAD + (
        "message Card { option (docket.sensitive) = true; string number = 1; }\n"
        "message Order { string v = 1; }\nmessage Receipt { string v = 1; }\n"
        "service Vault {\n"
        '  option (docket.graph) = { inputs: "Order" };\n'
        f"  rpc Issue(Order) returns (Card) {{ {kept} }}\n"
        f"  rpc Use(Card) returns (Receipt) {{ {kept} }}\n"
        "}\n"
    )
    response = generate(compile_request(write_protos(tmp_path / "protos", {BAD: src})))
    assert response.error == ""
    [module] = [f.content for f in response.file if f.name.endswith("_docket.py")]
    # Issue has no option of its own: its output type makes it sensitive; Use is not.
    assert module.count("sensitive=True") == 1
    assert (
        module.index('name="Issue"') < module.index("sensitive=True") < module.index('name="Use"')
    )


NAMESPACE_NAMES = (
    HEAD
    + """\
message Order { int32 v = 1; }
message Quote { int32 v = 1; }
message Label { int32 v = 1; }

service Pricing {
  option (docket.graph) = { inputs: "Order" };
  rpc Price(Order) returns (Quote) {
    option (docket.step) = { cache: { scope: GLOBAL namespace: "acme pricing" } };
  }
  rpc Tag(Order) returns (Label) {
    option (docket.step) = { cache: { scope: GLOBAL namespace: "  " } };
  }
}
"""
)


def test_cache_namespace_must_be_a_name(tmp_path: Path) -> None:
    src = NAMESPACE_NAMES
    assert _at(src, 'option (docket.step) = { cache: { scope: GLOBAL namespace: "acme') == "12:5"
    assert _at(src, 'option (docket.step) = { cache: { scope: GLOBAL namespace: "  "') == "15:5"
    fix = 'write a name without spaces, e.g. "acme.pricing"'
    assert _errors(tmp_path, src) == [
        f"{BAD}:12:5: step Price: cache.namespace: 'acme pricing' is not a namespace: {fix}",
        f"{BAD}:15:5: step Tag: cache.namespace: '  ' is not a namespace: {fix}",
    ]


RESERVED_KEYWORDS = (
    HEAD
    + """\
message Queue { int32 v = 1; }
message App { int32 v = 1; }
message Out { int32 v = 1; }
message OutInputs {
  option (docket.bundle) = true;
  Queue queue = 1;
  App app = 2;
}

// App is fine: enqueue takes its app positionally.
service Jobs {
  option (docket.graph) = { inputs: ["Queue", "App"] };
  rpc Go(OutInputs) returns (Out);
}
"""
)


def test_graph_inputs_may_not_take_the_keywords_of_enqueue(tmp_path: Path) -> None:
    field = _at(RESERVED_KEYWORDS, "Queue queue = 1")
    graph = _at(RESERVED_KEYWORDS, "option (docket.graph)")
    assert (field, graph) == ("10:3", "16:3")
    assert _errors(tmp_path, RESERVED_KEYWORDS) == [
        f"{BAD}:10:3: step Go needs shop.Queue (queue), which no step of graph Jobs produces "
        'and the graph does not declare as an input; add a step that returns Queue or add "Queue" '
        "to (docket.graph).inputs",
        f"{BAD}:16:3: graph Jobs: input shop.Queue would be passed as queue=, which the "
        "enqueue() method already uses; rename one of the messages",
    ]


MAX_ATTEMPTS = (
    HEAD
    + """\
message Order { int32 v = 1; }
message Quote { int32 v = 1; }
message Label { int32 v = 1; }
message Box { int32 v = 1; }

service Pricing {
  option (docket.graph) = { inputs: "Order" };
  rpc Price(Order) returns (Quote) { option (docket.step) = { retry: { max_attempts: 0 } }; }
  rpc Tag(Order) returns (Label) { option (docket.step) = { retry: { max_attempts: -2 } }; }
  rpc Pack(Order) returns (Box) { option (docket.step) = { retry: { max_attempts: 1 } }; }
}
"""
)


def test_max_attempts_below_one(tmp_path: Path) -> None:
    src = MAX_ATTEMPTS
    price = _at(src, "option (docket.step) = { retry: { max_attempts: 0")
    tag = _at(src, "option (docket.step) = { retry: { max_attempts: -2")
    assert (price, tag) == ("12:38", "13:36")
    fix = (
        "it counts every attempt, the first one included; use 1 (no retry) or more, "
        "or leave it out for the default (3)"
    )
    # Zero is an error, not the default: an unset max_attempts alone means 3. Pack (1) is fine.
    assert _errors(tmp_path, src) == [
        f"{BAD}:12:38: step Price: retry.max_attempts: 0 leaves no attempt at all: {fix}",
        f"{BAD}:13:36: step Tag: retry.max_attempts: -2 leaves no attempt at all: {fix}",
    ]


CACHE_KEYS = (
    HEAD
    + """\
message Inner { string text = 1; map<string, int32> tags = 2; }
message Chunk { string text = 1; Inner inner = 2; repeated Inner many = 3; Holder holder = 4; }
message Holder { Inner inner = 1; }
message A { int32 v = 1; }
message B { int32 v = 1; }
message C { int32 v = 1; }
message D { int32 v = 1; }
message E { int32 v = 1; }
message F { int32 v = 1; }
message G { int32 v = 1; }
message H { int32 v = 1; }
message Pair {
  option (docket.bundle) = true;
  Chunk chunk = 1;
  A a = 2;
}

service Keys {
  option (docket.graph) = { inputs: ["Chunk", "A"] };
  rpc Unknown(Chunk) returns (B) {
    option (docket.step) = { cache: { scope: GLOBAL key: ["text", "txt"] } };
  }
  rpc Through(Chunk) returns (C) {
    option (docket.step) = {
      cache: { scope: GLOBAL key: ["text.size", "many.text", "inner.tags.k"] }
    };
  }
  rpc Scope(Chunk) returns (D) {
    option (docket.step) = { cache: { scope: WORKFLOW key: "text" } };
  }
  rpc Paths(Chunk) returns (E) {
    option (docket.step) = { cache: { scope: GLOBAL key: ["", "inner..text", "text", "text"] } };
  }
  rpc Maps(Chunk) returns (F) {
    option (docket.step) = { cache: { scope: GLOBAL key: ["inner.tags", "holder"] } };
  }
  rpc Bundled(Pair) returns (G) {
    option (docket.step) = { cache: { scope: GLOBAL key: ["chunk.text", "text"] } };
  }
  rpc Fine(Pair) returns (H) {
    option (docket.step) = { cache: { scope: GLOBAL key: ["chunk.inner.text", "a"] } };
  }
}
"""
)


def test_cache_key_errors_are_located_at_the_option(tmp_path: Path) -> None:
    src = CACHE_KEYS
    at = {
        name: _at(src, f"rpc {name}(", "rpc").split(":")[0]
        for name in ("Unknown", "Through", "Scope", "Paths", "Maps", "Bundled")
    }
    # The option sits on the line after its rpc, indented by four spaces.
    where = {name: f"{BAD}:{int(line) + 1}:5" for name, line in at.items()}
    assert where["Unknown"] == f"{BAD}:25:5"
    dots = 'write field names joined by dots, e.g. "text" or "chunk.text"'
    through = "so the path cannot go through it; a path goes through singular message fields only"
    maps = (
        "the serialization order of a map is not deterministic across implementations, "
        "so it cannot make a cache key: key on other fields"
    )
    # Sorted by location, then by text; Fine has no error.
    assert _errors(tmp_path, src) == [
        f"{where['Unknown']}: step Unknown: cache.key: 'txt': shop.Chunk has no field 'txt' "
        "(fields: text, inner, many, holder)",
        f"{where['Through']}: step Through: cache.key: 'inner.tags.k': field tags of "
        f"shop.Inner is a map, {through}",
        f"{where['Through']}: step Through: cache.key: 'many.text': field many of shop.Chunk "
        f"is repeated, {through}",
        f"{where['Through']}: step Through: cache.key: 'text.size': field text of shop.Chunk "
        f"is not a message, {through}",
        f"{where['Scope']}: step Scope: cache.key: only GLOBAL keys are made from the input, "
        "and the scope is WORKFLOW; set scope to GLOBAL or remove the key",
        f"{where['Paths']}: step Paths: cache.key: '' is not a field path: {dots}",
        f"{where['Paths']}: step Paths: cache.key: 'inner..text' is not a field path: {dots}",
        f"{where['Paths']}: step Paths: cache.key: 'text' is listed twice; list each path once",
        f"{where['Maps']}: step Maps: cache.key: 'holder': the selected value holds map "
        f"field shop.Inner.tags; {maps}",
        f"{where['Maps']}: step Maps: cache.key: 'inner.tags': the selected value holds map "
        f"field shop.Inner.tags; {maps}",
        f"{where['Bundled']}: step Bundled: cache.key: 'text': shop.Pair has no field 'text' "
        "(fields: chunk, a)",
    ]
