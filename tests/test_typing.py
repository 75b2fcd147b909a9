"""Typing of the generated code, checked by the real mypy (``--strict``) and ruff.

The cases are mypy-protobuf style: a source snippet is written to a temporary
directory and checked against the generated ``testgraphs`` package (found
through ``MYPYPATH``). A line that must fail ends in ``# E: <codes> <text>``:
the lines mypy reports errors on must be exactly the marked lines, with exactly
the marked error codes (comma-separated), and ``<text>`` must occur in what
mypy says about that line (its errors and notes). A ``reveal_type`` line ends in
``# R: <type>`` with the type mypy must reveal there.

mypy runs are slow, so all the accepted cases share one file and all the
rejected cases another, and every run shares one ``--cache-dir``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# Everything here must type-check and run: implementations of the Diamond,
# Fan and Chain steps (explicit subclasses of the generated protocols, and
# classes that only match them structurally), bound and run for every target.
ACCEPTED = """\
import asyncio
from collections.abc import Sequence
from typing import reveal_type

from testgraphs import shapes_docket, shapes_pb2


class DiamondImpl(shapes_docket.DiamondSteps):
    async def top(self, seed: shapes_pb2.Seed, /) -> shapes_pb2.Extra:
        return shapes_pb2.Extra(value=seed.value)

    async def make_left(self, extra: shapes_pb2.Extra, /) -> shapes_pb2.Left:
        return shapes_pb2.Left(value=extra.value + 1)

    def make_right(self, extra: shapes_pb2.Extra, /) -> shapes_pb2.Right:
        return shapes_pb2.Right(value=extra.value + 2)

    async def join(self, left: shapes_pb2.Left, right: shapes_pb2.Right, /) -> shapes_pb2.Joined:
        return shapes_pb2.Joined(value=left.value + right.value)


# No base class, other parameter names: the protocol's parameters are positional-only.
class StructuralDiamond:
    async def top(self, s: shapes_pb2.Seed) -> shapes_pb2.Extra:
        return shapes_pb2.Extra(value=s.value)

    async def make_left(self, x: shapes_pb2.Extra) -> shapes_pb2.Left:
        return shapes_pb2.Left(value=x.value)

    def make_right(self, x: shapes_pb2.Extra) -> shapes_pb2.Right:
        return shapes_pb2.Right(value=x.value)

    async def join(self, l: shapes_pb2.Left, r: shapes_pb2.Right) -> shapes_pb2.Joined:
        return shapes_pb2.Joined(value=l.value * r.value)


class FanImpl(shapes_docket.FanSteps):
    async def step_a(self, seed: shapes_pb2.Seed, /) -> shapes_pb2.A:
        return shapes_pb2.A(value=seed.value)

    async def step_b(self, seed: shapes_pb2.Seed, /) -> shapes_pb2.B:
        return shapes_pb2.B(value=seed.value)

    async def step_c(self, seed: shapes_pb2.Seed, /) -> shapes_pb2.C:
        return shapes_pb2.C(value=seed.value)

    async def gather(
        self,
        a: shapes_pb2.A,
        b: shapes_pb2.B,
        c: shapes_pb2.C,
        hint: shapes_pb2.Hint | None,
        /,
    ) -> shapes_pb2.Fanned:
        bonus = 100 if hint is not None else 0
        return shapes_pb2.Fanned(total=a.value + b.value + c.value + bonus)


class StructuralFan:
    async def step_a(self, seed: shapes_pb2.Seed) -> shapes_pb2.A:
        return shapes_pb2.A(value=seed.value)

    async def step_b(self, seed: shapes_pb2.Seed) -> shapes_pb2.B:
        return shapes_pb2.B(value=seed.value)

    async def step_c(self, seed: shapes_pb2.Seed) -> shapes_pb2.C:
        return shapes_pb2.C(value=seed.value + 7)

    # A wider parameter type than the protocol's is fine.
    async def gather(
        self, a: shapes_pb2.A, b: shapes_pb2.B, c: shapes_pb2.C, hint: object
    ) -> shapes_pb2.Fanned:
        return shapes_pb2.Fanned(total=a.value + b.value + c.value)


class ChainImpl(shapes_docket.ChainSteps):
    async def first(self, seed: shapes_pb2.Seed, /) -> shapes_pb2.A:
        return shapes_pb2.A(value=seed.value)

    async def sum(self, values: Sequence[shapes_pb2.A], /) -> shapes_pb2.Total:
        return shapes_pb2.Total(value=sum(v.value for v in values))

    async def now(self) -> shapes_pb2.Hint:
        return shapes_pb2.Hint(text="now")


class SingleImpl(shapes_docket.SingleSteps):
    async def only(self, seed: shapes_pb2.Seed, /) -> shapes_pb2.Total:
        return shapes_pb2.Total(value=seed.value + 1)


async def main() -> None:
    seed = shapes_pb2.Seed(value=1)
    diamond = shapes_docket.Diamond(DiamondImpl())
    reveal_type(diamond.steps)  # R: testgraphs.shapes_docket.DiamondSteps
    joined = await diamond.run(shapes_pb2.Joined, seed=shapes_pb2.Seed(value=1))
    reveal_type(joined)  # R: testgraphs.shapes_pb2.Joined
    assert joined.value == 5
    reveal_type(await diamond.run(shapes_pb2.Extra, seed=seed))  # R: testgraphs.shapes_pb2.Extra
    reveal_type(await diamond.run(shapes_pb2.Left, seed=seed))  # R: testgraphs.shapes_pb2.Left
    reveal_type(await diamond.run(shapes_pb2.Right, seed=seed))  # R: testgraphs.shapes_pb2.Right
    structural = shapes_docket.Diamond(StructuralDiamond())
    product = await structural.run(shapes_pb2.Joined, seed=seed)
    reveal_type(product)  # R: testgraphs.shapes_pb2.Joined
    assert product.value == 1

    fan = shapes_docket.Fan(FanImpl())
    reveal_type(await fan.run(shapes_pb2.A, seed=seed))  # R: testgraphs.shapes_pb2.A
    plain = await fan.run(shapes_pb2.Fanned, seed=seed)
    reveal_type(plain)  # R: testgraphs.shapes_pb2.Fanned
    assert plain.total == 3
    hinted = await fan.run(shapes_pb2.Fanned, seed=seed, hint=shapes_pb2.Hint(text="x"))
    reveal_type(hinted)  # R: testgraphs.shapes_pb2.Fanned
    assert hinted.total == 103
    assert (await fan.run(shapes_pb2.Fanned, seed=seed, hint=None)).total == 3
    structural_fan = shapes_docket.Fan(StructuralFan())
    c = await structural_fan.run(shapes_pb2.C, seed=seed)
    reveal_type(c)  # R: testgraphs.shapes_pb2.C
    assert c.value == 8

    chain = shapes_docket.Chain(ChainImpl())
    reveal_type(await chain.run(shapes_pb2.Hint))  # R: testgraphs.shapes_pb2.Hint
    total = await chain.run(shapes_pb2.Total, seed=seed)
    reveal_type(total)  # R: testgraphs.shapes_pb2.Total
    assert total.value == 1

    single = shapes_docket.Single(SingleImpl())
    only = await single.run(shapes_pb2.Total, seed=seed)
    reveal_type(only)  # R: testgraphs.shapes_pb2.Total
    assert only.value == 2
    print("ran")


asyncio.run(main())
"""

# Every marked line must be an error, and no other line.
REJECTED = """\
from testgraphs import shapes_docket, shapes_pb2


class WrongParam(shapes_docket.DiamondSteps):
    async def top(self, seed: shapes_pb2.Extra, /) -> shapes_pb2.Extra:  # E: override Argument 1 of "top" is incompatible with supertype "testgraphs.shapes_docket.DiamondSteps"; supertype defines the argument type as "Seed"
        return seed

    async def make_left(self, extra: shapes_pb2.Extra, /) -> shapes_pb2.Left:
        return shapes_pb2.Left()

    def make_right(self, extra: shapes_pb2.Extra, /) -> shapes_pb2.Right:
        return shapes_pb2.Right()

    async def join(self, left: shapes_pb2.Left, right: shapes_pb2.Right, /) -> shapes_pb2.Joined:
        return shapes_pb2.Joined()


class WrongReturn(shapes_docket.DiamondSteps):
    async def top(self, seed: shapes_pb2.Seed, /) -> shapes_pb2.Extra:
        return shapes_pb2.Extra()

    async def make_left(self, extra: shapes_pb2.Extra, /) -> shapes_pb2.Right:  # E: override Return type "Coroutine[Any, Any, Right]" of "make_left" incompatible with return type "Coroutine[Any, Any, Left]"
        return shapes_pb2.Right()

    def make_right(self, extra: shapes_pb2.Extra, /) -> shapes_pb2.Right:
        return shapes_pb2.Right()

    async def join(self, left: shapes_pb2.Left, right: shapes_pb2.Right, /) -> shapes_pb2.Joined:
        return shapes_pb2.Joined()


# MakeRight is `blocking: true`: a plain def is expected.
class AsyncBlocking(shapes_docket.DiamondSteps):
    async def top(self, seed: shapes_pb2.Seed, /) -> shapes_pb2.Extra:
        return shapes_pb2.Extra()

    async def make_left(self, extra: shapes_pb2.Extra, /) -> shapes_pb2.Left:
        return shapes_pb2.Left()

    async def make_right(self, extra: shapes_pb2.Extra, /) -> shapes_pb2.Right:  # E: override Return type "Coroutine[Any, Any, Right]" of "make_right" incompatible with return type "Right"
        return shapes_pb2.Right()

    async def join(self, left: shapes_pb2.Left, right: shapes_pb2.Right, /) -> shapes_pb2.Joined:
        return shapes_pb2.Joined()


# Top is not blocking: an async def is expected.
class PlainForAsync(shapes_docket.DiamondSteps):
    def top(self, seed: shapes_pb2.Seed, /) -> shapes_pb2.Extra:  # E: override Return type "Extra" of "top" incompatible with return type "Coroutine[Any, Any, Extra]"
        return shapes_pb2.Extra()

    async def make_left(self, extra: shapes_pb2.Extra, /) -> shapes_pb2.Left:
        return shapes_pb2.Left()

    def make_right(self, extra: shapes_pb2.Extra, /) -> shapes_pb2.Right:
        return shapes_pb2.Right()

    async def join(self, left: shapes_pb2.Left, right: shapes_pb2.Right, /) -> shapes_pb2.Joined:
        return shapes_pb2.Joined()


class MissingJoin(shapes_docket.DiamondSteps):
    async def top(self, seed: shapes_pb2.Seed, /) -> shapes_pb2.Extra:
        return shapes_pb2.Extra()

    async def make_left(self, extra: shapes_pb2.Extra, /) -> shapes_pb2.Left:
        return shapes_pb2.Left()

    def make_right(self, extra: shapes_pb2.Extra, /) -> shapes_pb2.Right:
        return shapes_pb2.Right()


MissingJoin()  # E: abstract Cannot instantiate abstract class "MissingJoin" with abstract attribute "join"


# The hint input is optional: the step must accept None.
class NonOptionalHint(shapes_docket.FanSteps):
    async def step_a(self, seed: shapes_pb2.Seed, /) -> shapes_pb2.A:
        return shapes_pb2.A()

    async def step_b(self, seed: shapes_pb2.Seed, /) -> shapes_pb2.B:
        return shapes_pb2.B()

    async def step_c(self, seed: shapes_pb2.Seed, /) -> shapes_pb2.C:
        return shapes_pb2.C()

    async def gather(
        self,
        a: shapes_pb2.A,
        b: shapes_pb2.B,
        c: shapes_pb2.C,
        hint: shapes_pb2.Hint,  # E: override Argument 4 of "gather" is incompatible with supertype "testgraphs.shapes_docket.FanSteps"; supertype defines the argument type as "Hint | None"
        /,
    ) -> shapes_pb2.Fanned:
        return shapes_pb2.Fanned()


# A repeated input arrives as a Sequence, not necessarily a list.
class ListForSequence(shapes_docket.ChainSteps):
    async def first(self, seed: shapes_pb2.Seed, /) -> shapes_pb2.A:
        return shapes_pb2.A()

    async def sum(self, values: list[shapes_pb2.A], /) -> shapes_pb2.Total:  # E: override supertype defines the argument type as "Sequence[A]"
        return shapes_pb2.Total()

    async def now(self) -> shapes_pb2.Hint:
        return shapes_pb2.Hint()


# Structural implementations: checked where the graph is bound.


class StructuralIncomplete:
    async def top(self, seed: shapes_pb2.Seed) -> shapes_pb2.Extra:
        return shapes_pb2.Extra()

    async def make_left(self, extra: shapes_pb2.Extra) -> shapes_pb2.Left:
        return shapes_pb2.Left()

    def make_right(self, extra: shapes_pb2.Extra) -> shapes_pb2.Right:
        return shapes_pb2.Right()


class StructuralWrongParam:
    async def top(self, seed: shapes_pb2.Seed) -> shapes_pb2.Extra:
        return shapes_pb2.Extra()

    async def make_left(self, extra: shapes_pb2.Extra) -> shapes_pb2.Left:
        return shapes_pb2.Left()

    def make_right(self, extra: shapes_pb2.Extra) -> shapes_pb2.Right:
        return shapes_pb2.Right()

    async def join(self, left: shapes_pb2.Left, right: shapes_pb2.Left) -> shapes_pb2.Joined:
        return shapes_pb2.Joined()


class StructuralWrongReturn:
    async def top(self, seed: shapes_pb2.Seed) -> shapes_pb2.Seed:
        return seed

    async def make_left(self, extra: shapes_pb2.Extra) -> shapes_pb2.Left:
        return shapes_pb2.Left()

    def make_right(self, extra: shapes_pb2.Extra) -> shapes_pb2.Right:
        return shapes_pb2.Right()

    async def join(self, left: shapes_pb2.Left, right: shapes_pb2.Right) -> shapes_pb2.Joined:
        return shapes_pb2.Joined()


class StructuralAsyncBlocking:
    async def top(self, seed: shapes_pb2.Seed) -> shapes_pb2.Extra:
        return shapes_pb2.Extra()

    async def make_left(self, extra: shapes_pb2.Extra) -> shapes_pb2.Left:
        return shapes_pb2.Left()

    async def make_right(self, extra: shapes_pb2.Extra) -> shapes_pb2.Right:
        return shapes_pb2.Right()

    async def join(self, left: shapes_pb2.Left, right: shapes_pb2.Right) -> shapes_pb2.Joined:
        return shapes_pb2.Joined()


shapes_docket.Diamond(StructuralIncomplete())  # E: arg-type "StructuralIncomplete" is missing following "DiamondSteps" protocol member:
shapes_docket.Diamond(StructuralWrongParam())  # E: arg-type def join(self, left: Left, right: Left) -> Coroutine[Any, Any, Joined]
shapes_docket.Diamond(StructuralWrongReturn())  # E: arg-type def top(self, seed: Seed) -> Coroutine[Any, Any, Seed]
shapes_docket.Diamond(StructuralAsyncBlocking())  # E: arg-type def make_right(self, extra: Extra) -> Coroutine[Any, Any, Right]
shapes_docket.Diamond(NonOptionalHint())  # E: arg-type Argument 1 to "Diamond" has incompatible type "NonOptionalHint"; expected "DiamondSteps"


async def runs(
    diamond: shapes_docket.Diamond,
    fan: shapes_docket.Fan,
    chain: shapes_docket.Chain,
    single: shapes_docket.Single,
) -> None:
    seed = shapes_pb2.Seed(value=1)
    # A single-target graph has a plain run(): same checks, without overloads.
    await single.run(shapes_pb2.Total)  # E: call-arg Missing named argument "seed" for "run" of "Single"
    await single.run(shapes_pb2.Hint, seed=seed)  # E: arg-type Argument 1 to "run" of "Single" has incompatible type "type[Hint]"
    # A graph input the target needs is missing.
    await diamond.run(shapes_pb2.Joined)  # E: call-overload No overload variant of "run" of "Diamond" matches argument type "type[Joined]"
    await fan.run(shapes_pb2.Fanned, hint=shapes_pb2.Hint())  # E: call-overload No overload variant of "run" of "Fan"
    await chain.run(shapes_pb2.Total)  # E: arg-type Argument 1 to "run" of "Chain" has incompatible type "type[Total]"
    # A target the graph does not produce.
    await diamond.run(shapes_pb2.Hint, seed=seed)  # E: arg-type Argument 1 to "run" of "Diamond" has incompatible type "type[Hint]"
    await diamond.run(shapes_pb2.Seed, seed=seed)  # E: arg-type Argument 1 to "run" of "Diamond" has incompatible type "type[Seed]"
    # An input of the wrong type, or None for a required one.
    await diamond.run(shapes_pb2.Joined, seed=shapes_pb2.Left())  # E: call-overload No overload variant of "run" of "Diamond" matches argument types "type[Joined]", "Left"
    await diamond.run(shapes_pb2.Joined, seed=None)  # E: call-overload matches argument types "type[Joined]", "None"
    await fan.run(shapes_pb2.Fanned, seed=seed, hint=seed)  # E: call-overload matches argument types "type[Fanned]", "Seed", "Seed"
    # An input the target does not take, or an input passed positionally.
    await diamond.run(shapes_pb2.Joined, seed=seed, hint=shapes_pb2.Hint())  # E: call-overload Unexpected keyword argument "hint" for overloaded function "run" of "Diamond"
    await fan.run(shapes_pb2.A, seed=seed, hint=shapes_pb2.Hint())  # E: arg-type Argument 1 to "run" of "Fan" has incompatible type "type[A]"; expected "type[Fanned]"
    await chain.run(shapes_pb2.Hint, seed=seed)  # E: arg-type Argument 1 to "run" of "Chain" has incompatible type "type[Hint]"
    await diamond.run(shapes_pb2.Joined, seed)  # E: call-overload matches argument types "type[Joined]", "Seed"
    # The result has the target's type.
    left: shapes_pb2.Left = await diamond.run(shapes_pb2.Joined, seed=seed)  # E: assignment expression has type "Joined", variable has type "Left"
"""  # noqa: E501


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


@pytest.fixture(scope="session")
def typing_env(gen_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TypingEnv]:
    work = tmp_path_factory.mktemp("typing")
    # An explicit, empty config so no mypy config of the repository or of a parent applies.
    config = work / "mypy.ini"
    config.write_text("[mypy]\n")
    yield TypingEnv(gen_dir, work, tmp_path_factory.mktemp("mypy-cache"), config)


def _mypy(env: TypingEnv, *args: str) -> MypyRun:
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


def _markers(source: str, tag: str) -> dict[int, str]:
    """``{line number: marker body}`` of the ``# <tag>: ...`` comments in ``source``."""
    found = {}
    for number, text in enumerate(source.splitlines(), start=1):
        match = _MARKER.search(text)
        if match is not None and match["tag"] == tag:
            found[number] = match["body"]
    return found


def _write_case(env: TypingEnv, name: str, source: str) -> str:
    (env.work / name).write_text(source)
    return name


def _docket_files(gen_dir: Path) -> list[Path]:
    """What docket-gen itself writes: everything but protoc's and mypy-protobuf's output."""
    return sorted(p for p in gen_dir.rglob("*.py") if not p.name.endswith("_pb2.py"))


def test_generated_package_passes_mypy_strict(typing_env: TypingEnv) -> None:
    run = _mypy(typing_env, "-p", "testgraphs")
    assert run.returncode == 0, run.stdout
    assert run.reports == []


def test_generated_modules_are_ruff_clean(gen_dir: Path) -> None:
    files = _docket_files(gen_dir)
    assert gen_dir / "testgraphs" / "shapes_docket.py" in files
    # Relative to the output root, run from it: ruff's import sorting then sees the
    # generated package as first-party and docket_runtime as installed, as a user's
    # project would (from the repository root docket_runtime would be first-party).
    paths = [p.relative_to(gen_dir).as_posix() for p in files]
    ruff = [sys.executable, "-m", "ruff"]
    checks = [
        # ruff's defaults.
        [*ruff, "check", "--isolated", "--no-cache", *paths],
        # The rule set this repository holds its own code to.
        [
            *ruff,
            "check",
            "--isolated",
            "--no-cache",
            "--target-version",
            "py311",
            "--line-length",
            "100",
            "--select",
            "E,F,W,I,B,UP,SIM,RUF",
            *paths,
        ],
        # The generator lays code out for ruff format's default width.
        [*ruff, "format", "--isolated", "--no-cache", "--check", "--diff", *paths],
    ]
    for command in checks:
        done = subprocess.run(command, cwd=gen_dir, capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{command[3:5]}\n{done.stdout}{done.stderr}"


def test_correct_implementations_type_check_and_run_reveals_target_types(
    typing_env: TypingEnv,
) -> None:
    name = _write_case(typing_env, "accepted.py", ACCEPTED)
    run = _mypy(typing_env, name)
    errors = [r for r in run.reports if r.severity == "error"]
    assert errors == [], run.stdout
    assert run.returncode == 0, run.stdout
    revealed = {}
    for report in run.reports:
        assert report.path == name, run.stdout
        match = re.fullmatch(r'Revealed type is "(.*)"', report.message)
        assert match is not None, run.stdout
        revealed[report.line] = match[1]
    expected = _markers(ACCEPTED, "R")
    assert len(expected) == 13
    assert revealed == expected


def test_correct_implementations_bind_and_run(typing_env: TypingEnv) -> None:
    # What mypy accepts must also pass the runtime's bind checks (async vs blocking).
    name = _write_case(typing_env, "accepted_run.py", ACCEPTED)
    done = subprocess.run(
        [sys.executable, name],
        cwd=typing_env.work,
        env={**os.environ, "PYTHONPATH": str(typing_env.gen_dir)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ran\n"


def test_incorrect_implementations_and_runs_are_rejected(typing_env: TypingEnv) -> None:
    name = _write_case(typing_env, "rejected.py", REJECTED)
    run = _mypy(typing_env, name)
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
    for line, body in _markers(REJECTED, "E").items():
        marked, _, fragment = body.partition(" ")
        expected[line] = set(marked.split(","))
        fragments[line] = fragment.strip()
    assert len(expected) == 27

    lines = REJECTED.splitlines()

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
