"""``docket-gen --check``: without compiling when nothing the output comes from has changed,
by compiling and comparing otherwise."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import run_docket_gen, write_protos

from docket_gen import cli
from docket_gen.fingerprint import inputs_digest
from docket_gen.output import MANIFEST, read_inputs
from docket_gen.protoc import ProtocRun, import_roots

GRAPH = """syntax = "proto3";
package shop;
import "docket_runtime/options.proto";
message In { int32 v = 1; }
message Out { int32 v = 1; }
service G {
  option (docket.graph) = { inputs: "In" };
  rpc Make(In) returns (Out);
}
"""


def _generated(tmp_path: Path, *options: str) -> tuple[Path, Path]:
    protos = write_protos(tmp_path / "protos", {"shop/g.proto": GRAPH})
    out = tmp_path / "gen"
    done = run_docket_gen(protos, "-o", out, "--min-protobuf", "99", *options)
    assert done.returncode == 0, done.stderr
    return protos, out


def _check(protos: Path, out: Path, *options: str) -> tuple[int, str]:
    done = run_docket_gen(protos, "-o", out, "--min-protobuf", "99", "--check", *options)
    return done.returncode, done.stdout + done.stderr


def test_an_up_to_date_folder_is_checked_without_compiling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    protos, out = _generated(tmp_path)
    compiled: list[Path] = []

    def no_protoc(*args: object, **kwargs: object) -> ProtocRun:
        compiled.append(out)
        return ProtocRun(1, ["protoc must not run"])

    monkeypatch.setattr(cli, "run_protoc", no_protoc)
    result = CliRunner().invoke(cli.main, [str(protos), "-o", str(out), "--check"])
    assert result.exit_code == 0, result.output
    assert result.output == f"docket-gen: {out} is up to date (4 files)\n"
    assert compiled == []
    # An edited module, or a changed proto, makes it compile (and fail here).
    (out / "shop" / "g_docket.py").write_text("# edited\n")
    result = CliRunner().invoke(cli.main, [str(protos), "-o", str(out), "--check"])
    assert result.exit_code == 1
    assert compiled == [out]


def test_what_changed_since_the_run_is_found_by_compiling(tmp_path: Path) -> None:
    protos, out = _generated(tmp_path)
    assert _check(protos, out) == (0, f"docket-gen: {out} is up to date (4 files)\n")
    (protos / "shop" / "g.proto").write_text(
        GRAPH.replace("int32 v = 1; }\nservice", "int64 v = 1; }\nservice")
    )
    code, said = _check(protos, out)
    assert code == 1
    assert f"stale: {out}/shop/g_pb2.py" in said
    # An option that changes the output.
    (protos / "shop" / "g.proto").write_text(GRAPH)
    assert _check(protos, out)[0] == 0
    code, said = _check(protos, out, "--diagrams")
    assert code == 1
    assert f"stale: {out}/shop/g_docket.md" in said
    # A new proto, and a deleted module.
    (protos / "shop" / "h.proto").write_text(GRAPH.replace("package shop;", "package shop.h;"))
    assert _check(protos, out)[0] == 1
    (protos / "shop" / "h.proto").unlink()
    (out / "shop" / "g_pb2.pyi").unlink()
    code, said = _check(protos, out)
    assert (code, f"stale: {out}/shop/g_pb2.pyi" in said) == (1, True)


def test_only_other_recorded_inputs_is_not_stale(tmp_path: Path) -> None:
    # Another environment (other tool versions) may generate the same files: --check then
    # compiles, finds them equal and passes; a run records its own inputs.
    protos, out = _generated(tmp_path)
    manifest = out / MANIFEST
    recorded = read_inputs(out)
    assert recorded is not None
    manifest.write_text(manifest.read_text().replace(recorded, "0" * 64))
    assert _check(protos, out) == (0, f"docket-gen: {out} is up to date (4 files)\n")
    assert read_inputs(out) == "0" * 64
    done = run_docket_gen(protos, "-o", out, "--min-protobuf", "99")
    assert done.stdout == f"docket-gen: 0 files written to {out}, 3 unchanged\n"
    assert read_inputs(out) == recorded


def test_the_inputs_digest_covers_protos_options_and_roots_but_not_their_place(
    tmp_path: Path,
) -> None:
    first = write_protos(tmp_path / "one" / "protos", {"shop/g.proto": GRAPH})
    vendored = write_protos(tmp_path / "one" / "vendor", {"v/x.proto": 'syntax = "proto3";'})
    second = tmp_path / "two"
    shutil.copytree(tmp_path / "one", second)

    def of(root: Path, *options: str) -> str:
        return inputs_digest(import_roots([root / "protos"], [root / "vendor"]), options)

    assert of(tmp_path / "one") == of(second)
    assert of(second) != of(second, "extras=views")
    (vendored / "v" / "x.proto").write_text('syntax = "proto3";\n// changed\n')
    assert of(tmp_path / "one") != of(second)
    # The same files under other roots: another import name, another digest.
    assert inputs_digest(import_roots([first], []), ()) != inputs_digest(
        import_roots([first.parent], []), ()
    )
