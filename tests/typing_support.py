"""The real mypy (``--strict``) run on snippets against generated code, with inline markers.

The convention is mypy-protobuf's: a snippet is written to a temporary
directory and checked against the generated ``testgraphs`` package (found
through ``MYPYPATH``). A line that must fail ends in ``# E: <codes> <text>``:
the lines mypy reports errors on must be exactly the marked lines, with exactly
the marked error codes (comma-separated), and ``<text>`` must occur in what
mypy says about that line (its errors and notes). A ``reveal_type`` line ends in
``# R: <type>`` with the type mypy must reveal there.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Report:
    """One line of mypy output."""

    path: str
    line: int
    severity: str
    message: str
    code: str | None


@dataclass(frozen=True)
class MypyRun:
    returncode: int
    reports: list[Report]
    stdout: str


@dataclass(frozen=True)
class TypingEnv:
    gen_dir: Path
    work: Path
    cache: Path
    config: Path


_REPORT = re.compile(
    r"(?P<path>[^:\n]+):(?P<line>\d+): (?P<severity>error|note): (?P<message>.*?)"
    r"(?:  \[(?P<code>[a-z0-9-]+)\])?"
)
_MARKER = re.compile(r"#\s*(?P<tag>[ER]):\s*(?P<body>.+?)\s*$")


def run_mypy(env: TypingEnv, *args: str) -> MypyRun:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(env.config),
            "--strict",
            "--show-error-codes",
            "--no-error-summary",
            "--no-color-output",
            "--cache-dir",
            str(env.cache),
            *args,
        ],
        cwd=env.work,
        env={**os.environ, "MYPYPATH": str(env.gen_dir)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.stderr == "", done.stderr
    assert done.returncode in (0, 1), done.stdout
    reports = []
    for text in done.stdout.splitlines():
        match = _REPORT.fullmatch(text)
        assert match is not None, f"unexpected mypy output: {text!r}\n{done.stdout}"
        reports.append(
            Report(
                path=match["path"],
                line=int(match["line"]),
                severity=match["severity"],
                message=match["message"],
                code=match["code"],
            )
        )
    return MypyRun(done.returncode, reports, done.stdout)


def markers(source: str, tag: str) -> dict[int, str]:
    """``{line number: marker body}`` of the ``# <tag>: ...`` comments in ``source``."""
    found = {}
    for number, text in enumerate(source.splitlines(), start=1):
        match = _MARKER.search(text)
        if match is not None and match["tag"] == tag:
            found[number] = match["body"]
    return found


def write_case(env: TypingEnv, name: str, source: str) -> str:
    (env.work / name).write_text(source)
    return name


def check_revealed(env: TypingEnv, name: str, source: str) -> dict[int, str]:
    """mypy accepts ``source`` and reveals at each ``# R:`` line the marked type.

    Returns the marked types by line, for the caller to count.
    """
    write_case(env, name, source)
    run = run_mypy(env, name)
    assert [r for r in run.reports if r.severity == "error"] == [], run.stdout
    assert run.returncode == 0, run.stdout
    revealed = {}
    for report in run.reports:
        match = re.fullmatch(r'Revealed type is "(.*)"', report.message)
        assert report.path == name and match is not None, run.stdout
        revealed[report.line] = match[1]
    expected = markers(source, "R")
    assert revealed == expected
    return expected


def check_rejected(env: TypingEnv, name: str, source: str) -> dict[int, set[str]]:
    """mypy rejects exactly the ``# E:`` lines of ``source``, with the marked codes and text.

    Returns the marked error codes by line, for the caller to count.
    """
    write_case(env, name, source)
    run = run_mypy(env, name)
    assert run.returncode == 1, run.stdout
    said: dict[int, list[str]] = {}
    codes: dict[int, set[str]] = {}
    for report in run.reports:
        assert report.path == name, run.stdout
        said.setdefault(report.line, []).append(report.message)
        if report.severity == "error":
            codes.setdefault(report.line, set()).add(report.code or "<no code>")
    expected: dict[int, set[str]] = {}
    fragments: dict[int, str] = {}
    for line, body in markers(source, "E").items():
        marked, _, fragment = body.partition(" ")
        expected[line] = set(marked.split(","))
        fragments[line] = fragment.strip()
    lines = source.splitlines()

    def where(line: int) -> str:
        return f"line {line}: {lines[line - 1].strip()}"

    unexpected = [where(n) for n in sorted(set(codes) - set(expected))]
    missed = [where(n) for n in sorted(set(expected) - set(codes))]
    assert not unexpected and not missed, (
        f"mypy errors on unmarked lines: {unexpected}\n"
        f"marked lines mypy accepts: {missed}\n{run.stdout}"
    )
    wrong_codes = {where(n): (codes[n], expected[n]) for n in expected if codes[n] != expected[n]}
    assert wrong_codes == {}, run.stdout
    unsaid = [where(n) for n in expected if fragments[n] not in "\n".join(said[n])]
    assert unsaid == [], run.stdout
    return expected


def check_runs(env: TypingEnv, name: str, source: str) -> None:
    """``source`` runs against the generated code and prints ``ran``.

    What mypy accepts must also pass the runtime's checks (async vs blocking, inputs).
    """
    write_case(env, name, source)
    done = subprocess.run(
        [sys.executable, name],
        cwd=env.work,
        env={**os.environ, "PYTHONPATH": str(env.gen_dir)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ran\n"
