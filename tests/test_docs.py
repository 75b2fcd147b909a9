"""The code samples of docs/testing.md run, pass and type-check as they are written.

The page is one test module: its ``proto`` blocks (each opening with a
``// <path>`` comment) are generated with the real docket-gen, and its
``python`` blocks, joined in order, are run by pytest in a subprocess and
checked by ``mypy --strict`` against the generated code.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_docket_gen, write_protos
from typing_support import TypingEnv, run_mypy

ROOT = Path(__file__).resolve().parents[1]
TESTING_DOC = ROOT / "docs" / "testing.md"

_BLOCK = re.compile(r"^```(?P<lang>\w*)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks(path: Path, lang: str) -> list[str]:
    """The bodies of the fenced ``lang`` code blocks of ``path``, in order."""
    return [m["body"] for m in _BLOCK.finditer(path.read_text()) if m["lang"] == lang]


@pytest.fixture(scope="module")
def testing_doc(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """docs/testing.md's generated code folder and its samples as one test module."""
    work = tmp_path_factory.mktemp("testing_doc")
    protos = {}
    for body in blocks(TESTING_DOC, "proto"):
        first, _, rest = body.partition("\n")
        assert first.startswith("// "), f"a proto block must start with '// <path>': {first!r}"
        protos[first.removeprefix("// ").strip()] = rest
    assert protos
    write_protos(work / "protos", protos)
    gen = work / "gen"
    done = run_docket_gen(work / "protos", "-o", gen)
    assert done.returncode == 0, done.stderr
    module = work / "test_testing_doc.py"
    module.write_text("\n\n".join(blocks(TESTING_DOC, "python")))
    return gen, module


def test_the_testing_samples_pass(testing_doc: tuple[Path, Path]) -> None:
    gen, module = testing_doc
    (module.parent / "pytest.ini").write_text("[pytest]\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", module.name],
        cwd=module.parent,
        env={**os.environ, "PYTHONPATH": str(gen)},
        capture_output=True,
        text=True,
        check=False,
    )
    tests = len(re.findall(r"^def test_", module.read_text(), re.MULTILINE))
    assert tests >= 5
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{tests} passed" in done.stdout, done.stdout


def test_the_testing_samples_type_check(
    testing_doc: tuple[Path, Path], typing_env: TypingEnv
) -> None:
    gen, module = testing_doc
    env = TypingEnv(gen, module.parent, typing_env.cache, typing_env.config)
    result = run_mypy(env, module.name)
    assert result.returncode == 0, result.stdout
