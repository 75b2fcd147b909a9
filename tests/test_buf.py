"""buf with the README's buf.yaml and buf.gen.yaml: the same modules as docket-gen writes.

buf comes from PyPI (``buf-bin``, in the dev extra). Without it the test is
skipped, except under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, TEST_PROTOS, run_docket_gen

BIN = Path(sys.executable).parent


def _buf() -> Path:
    found = shutil.which("buf", path=os.pathsep.join([str(BIN), os.environ.get("PATH", "")]))
    if found is None:
        reason = "buf is not installed (pip install buf-bin)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return Path(found)


def _documented(name: str) -> str:
    """The YAML block of the docs that starts with the comment ``# <name>``."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    blocks: list[str] = [
        block
        for page in pages
        if page.is_file()
        for block in re.findall(r"```yaml\n(.*?)```", page.read_text(), re.S)
        if block.startswith(f"# {name}\n")
    ]
    assert len(blocks) == 1, f"one documented {name}"
    return blocks[0]


def _workspace(tmp_path: Path, protos: Path) -> Path:
    """A buf workspace laid out as the README says."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(protos, work / "protos")
    include = run_docket_gen("--include-dir").stdout.strip()
    (work / "docket-include").symlink_to(include, target_is_directory=True)
    (work / "buf.yaml").write_text(_documented("buf.yaml"))
    (work / "buf.gen.yaml").write_text(_documented("buf.gen.yaml"))
    return work


def _buf_generate(work: Path) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join([str(BIN), os.environ.get("PATH", "")])
    return subprocess.run(
        [str(_buf()), "generate"],
        cwd=work,
        env={**os.environ, "PATH": path, "BUF_CACHE_DIR": str(work / ".c")},
        capture_output=True,
        text=True,
        check=False,
    )


def test_buf_generates_what_docket_gen_generates(tmp_path: Path) -> None:
    _buf()
    work = _workspace(tmp_path, TEST_PROTOS)
    done = _buf_generate(work)
    assert done.returncode == 0, done.stderr
    reference = tmp_path / "reference"
    assert run_docket_gen(TEST_PROTOS, "-o", reference).returncode == 0

    by_buf = sorted(p.relative_to(work / "gen") for p in (work / "gen").rglob("*.py*"))
    by_docket_gen = sorted(
        p.relative_to(reference) for p in reference.rglob("*.py*") if p.name != "__init__.py"
    )
    assert by_buf == by_docket_gen
    assert Path("testgraphs/shapes_docket.py") in by_buf
    for path in by_buf:
        if path.suffix == ".pyi" or path.name.endswith("_docket.py"):
            assert (work / "gen" / path).read_text() == (reference / path).read_text(), path
    # buf's _pb2.py embeds a descriptor with JSON names: check that the modules import and run.
    script = (
        "import asyncio\n"
        "from testgraphs import shapes_docket, shapes_pb2 as pb\n"
        "class Steps(shapes_docket.SingleSteps):\n"
        "    async def only(self, seed: pb.Seed, /) -> pb.Total:\n"
        "        return pb.Total(value=seed.value + 1)\n"
        "print(asyncio.run(shapes_docket.Single(Steps()).run(pb.Total, seed=pb.Seed(value=1))))\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", script], cwd=work / "gen", capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["value:", "2"]


def test_buf_reports_dockets_checks(tmp_path: Path) -> None:
    _buf()
    protos = tmp_path / "protos"
    (protos / "shop").mkdir(parents=True)
    (protos / "shop" / "loop.proto").write_text(
        'syntax = "proto3";\npackage shop;\nimport "docket_runtime/options.proto";\n'
        "message A { int32 v = 1; }\nmessage B { int32 v = 1; }\n"
        "service Loop {\n  rpc MakeA(B) returns (A);\n  rpc MakeB(A) returns (B);\n}\n"
    )
    done = _buf_generate(_workspace(tmp_path, protos))
    assert done.returncode != 0
    assert (
        "shop/loop.proto:7:7: cycle in graph Loop: MakeA -> MakeB -> MakeA; each step needs "
        "the output of the next one, so none can start"
    ) in done.stderr
