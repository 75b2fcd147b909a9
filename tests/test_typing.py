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

import subprocess
import sys
from pathlib import Path

from typing_support import TypingEnv, check_rejected, check_revealed, check_runs, run_mypy

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
    await diamond.run(shapes_pb2.Joined)  # E: call-arg Missing named argument "seed" for "run" of "Diamond"
    await fan.run(shapes_pb2.Fanned, hint=shapes_pb2.Hint())  # E: call-overload No overload variant of "run" of "Fan"
    await chain.run(shapes_pb2.Total)  # E: arg-type Argument 1 to "run" of "Chain" has incompatible type "type[Total]"
    # A target the graph does not produce.
    await diamond.run(shapes_pb2.Hint, seed=seed)  # E: type-var Value of type variable "_DiamondTarget" of "run" of "Diamond" cannot be "Hint"
    await diamond.run(shapes_pb2.Seed, seed=seed)  # E: type-var Value of type variable "_DiamondTarget" of "run" of "Diamond" cannot be "Seed"
    # An input of the wrong type, or None for a required one.
    await diamond.run(shapes_pb2.Joined, seed=shapes_pb2.Left())  # E: arg-type Argument "seed" to "run" of "Diamond" has incompatible type "Left"; expected "Seed"
    await diamond.run(shapes_pb2.Joined, seed=None)  # E: arg-type Argument "seed" to "run" of "Diamond" has incompatible type "None"; expected "Seed"
    await fan.run(shapes_pb2.Fanned, seed=seed, hint=seed)  # E: call-overload matches argument types "type[Fanned]", "Seed", "Seed"
    # An input the target does not take, or an input passed positionally.
    await diamond.run(shapes_pb2.Joined, seed=seed, hint=shapes_pb2.Hint())  # E: call-arg Unexpected keyword argument "hint" for "run" of "Diamond"
    await fan.run(shapes_pb2.A, seed=seed, hint=shapes_pb2.Hint())  # E: arg-type Argument 1 to "run" of "Fan" has incompatible type "type[A]"; expected "type[Fanned]"
    await chain.run(shapes_pb2.Hint, seed=seed)  # E: type-var Value of type variable "_ChainSeedInputsTarget" of "run" of "Chain" cannot be "Hint"
    await diamond.run(shapes_pb2.Joined, seed)  # E: call-arg Too many positional arguments for "run" of "Diamond"
    # The result has the target's type.
    left: shapes_pb2.Left = await diamond.run(shapes_pb2.Joined, seed=seed)  # E: arg-type Argument 1 to "run" of "Diamond" has incompatible type "type[Joined]"; expected "type[Left]"
"""  # noqa: E501


def _docket_files(gen_dir: Path) -> list[Path]:
    """What docket-gen itself writes: everything but protoc's and mypy-protobuf's output."""
    return sorted(p for p in gen_dir.rglob("*.py") if not p.name.endswith("_pb2.py"))


def test_generated_package_passes_mypy_strict(typing_env: TypingEnv) -> None:
    run = run_mypy(typing_env, "-p", "testgraphs")
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
    revealed = check_revealed(typing_env, "accepted.py", ACCEPTED)
    assert len(revealed) == 13


def test_correct_implementations_bind_and_run(typing_env: TypingEnv) -> None:
    check_runs(typing_env, "accepted_run.py", ACCEPTED)


def test_incorrect_implementations_and_runs_are_rejected(typing_env: TypingEnv) -> None:
    rejected = check_rejected(typing_env, "rejected.py", REJECTED)
    assert len(rejected) == 27
