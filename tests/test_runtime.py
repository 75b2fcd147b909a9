"""The asyncio runtime, driven through graphs generated from tests/protos by the real docket-gen.

The generated modules only exist once the session fixture ``gen_dir`` has run,
so they are imported at run time and typed ``Any`` here; the implementations
are plain classes that fit the generated ``<Graph>Steps`` protocols structurally.
Concurrency is proven with barriers and events, never with timing; every run
sits under ``asyncio.wait_for`` only as a safety net against a hang.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import threading
from collections import Counter
from collections.abc import Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, Optional, TypeVar

import pytest
from google.protobuf.message import Message

from docket_runtime import BindError, StepFailed

T = TypeVar("T")

SAFETY_NET = 5.0
"""Seconds before a run that should not hang is declared hung."""


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a fresh event loop, failing instead of hanging."""
    return asyncio.run(asyncio.wait_for(coro, SAFETY_NET))


def tasks_since(before: set[asyncio.Task[Any]]) -> set[asyncio.Task[Any]]:
    """The running loop's tasks not in ``before``: steps that outlived their run."""
    return asyncio.all_tasks() - before


async def forever() -> None:
    """Suspend until cancelled."""
    await asyncio.Event().wait()


@pytest.fixture(scope="module")
def pb(gen_dir: Path) -> Any:
    """The generated ``testgraphs.shapes_pb2``."""
    return importlib.import_module("testgraphs.shapes_pb2")


@pytest.fixture(scope="module")
def dk(gen_dir: Path) -> Any:
    """The generated ``testgraphs.shapes_docket``."""
    return importlib.import_module("testgraphs.shapes_docket")


# Implementations ------------------------------------------------------------------------------


class DiamondImpl:
    """Seed(v) -> Extra(10v) -> Left(10v+1), Right(10v+2) -> Joined(100*left + right)."""

    def __init__(self, pb: Any) -> None:
        self.pb = pb
        self.calls: Counter[str] = Counter()
        self.threads: dict[str, int] = {}

    def _enter(self, name: str) -> None:
        self.calls[name] += 1
        self.threads[name] = threading.get_ident()

    async def top(self, seed: Any) -> Any:
        self._enter("Top")
        return self.pb.Extra(value=seed.value * 10)

    async def make_left(self, extra: Any) -> Any:
        self._enter("MakeLeft")
        return self.pb.Left(value=extra.value + 1)

    def make_right(self, extra: Any) -> Any:
        self._enter("MakeRight")
        return self.pb.Right(value=extra.value + 2)

    async def join(self, left: Any, right: Any) -> Any:
        self._enter("Join")
        return self.pb.Joined(value=left.value * 100 + right.value)


class FanImpl:
    """Seed(v) -> A(v+1), B(v+2), C(v+3) -> Fanned(a + b + c); records what Gather got."""

    def __init__(self, pb: Any) -> None:
        self.pb = pb
        self.calls: Counter[str] = Counter()
        self.hints: list[Any] = []

    async def step_a(self, seed: Any) -> Any:
        self.calls["StepA"] += 1
        return self.pb.A(value=seed.value + 1)

    async def step_b(self, seed: Any) -> Any:
        self.calls["StepB"] += 1
        return self.pb.B(value=seed.value + 2)

    async def step_c(self, seed: Any) -> Any:
        self.calls["StepC"] += 1
        return self.pb.C(value=seed.value + 3)

    async def gather(self, a: Any, b: Any, c: Any, hint: Any) -> Any:
        self.calls["Gather"] += 1
        self.hints.append(hint)
        return self.pb.Fanned(total=a.value + b.value + c.value)


class ChainImpl:
    """Seed(v) -> A(v) -> Total(sum); Now() -> Hint("now"). Records what Sum and Now got."""

    def __init__(self, pb: Any) -> None:
        self.pb = pb
        self.calls: Counter[str] = Counter()
        self.sum_args: list[Any] = []
        self.now_args: list[tuple[Any, ...]] = []

    async def first(self, seed: Any) -> Any:
        self.calls["First"] += 1
        return self.pb.A(value=seed.value)

    async def sum(self, values: Sequence[Any]) -> Any:
        self.calls["Sum"] += 1
        self.sum_args.append(values)
        return self.pb.Total(value=sum(v.value for v in values))

    async def now(self, *args: Any) -> Any:
        self.calls["Now"] += 1
        self.now_args.append(args)
        return self.pb.Hint(text="now")


# 1. The diamond -------------------------------------------------------------------------------


def test_diamond_runs_the_shared_step_once_and_the_blocking_step_in_a_thread(
    pb: Any, dk: Any
) -> None:
    impl = DiamondImpl(pb)
    graph = dk.Diamond(impl)

    async def main() -> tuple[Any, int]:
        return await graph.run(pb.Joined, seed=pb.Seed(value=1)), threading.get_ident()

    joined, loop_thread = run(main())

    assert type(joined) is pb.Joined
    assert joined.value == 11 * 100 + 12  # Left and Right reached Join in the right order
    assert impl.calls == {"Top": 1, "MakeLeft": 1, "MakeRight": 1, "Join": 1}
    assert impl.threads["MakeRight"] != loop_thread
    assert impl.threads["Top"] == impl.threads["MakeLeft"] == impl.threads["Join"] == loop_thread


def test_diamond_runs_its_async_branch_while_the_blocking_branch_is_in_its_thread(
    pb: Any, dk: Any
) -> None:
    """Each branch waits until the other has started: run one after the other, they deadlock."""

    class Overlapping(DiamondImpl):
        def __init__(self, pb: Any, loop: asyncio.AbstractEventLoop) -> None:
            super().__init__(pb)
            self.loop = loop
            self.left_started = threading.Event()
            self.right_started = asyncio.Event()

        async def make_left(self, extra: Any) -> Any:
            self.left_started.set()
            await self.right_started.wait()
            return await super().make_left(extra)

        def make_right(self, extra: Any) -> Any:
            self.loop.call_soon_threadsafe(self.right_started.set)
            assert self.left_started.wait(SAFETY_NET), "MakeLeft never started"
            return super().make_right(extra)

    async def main() -> Any:
        impl = Overlapping(pb, asyncio.get_running_loop())
        return await dk.Diamond(impl).run(pb.Joined, seed=pb.Seed(value=2))

    assert run(main()).value == 21 * 100 + 22


# 2. Independent steps run concurrently --------------------------------------------------------


def test_independent_steps_are_in_flight_together(pb: Any, dk: Any) -> None:
    class Meeting(FanImpl):
        """Every branch waits at a barrier of three: a sequential run never gets past it."""

        def __init__(self, pb: Any) -> None:
            super().__init__(pb)
            self.barrier = asyncio.Barrier(3)
            self.in_flight = 0
            self.peak = 0

        async def _meet(self) -> None:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            await self.barrier.wait()
            self.in_flight -= 1

        async def step_a(self, seed: Any) -> Any:
            await self._meet()
            return await super().step_a(seed)

        async def step_b(self, seed: Any) -> Any:
            await self._meet()
            return await super().step_b(seed)

        async def step_c(self, seed: Any) -> Any:
            await self._meet()
            return await super().step_c(seed)

    async def main() -> tuple[Meeting, Any]:
        impl = Meeting(pb)
        return impl, await dk.Fan(impl).run(pb.Fanned, seed=pb.Seed(value=10))

    impl, fanned = run(main())

    assert fanned.total == 11 + 12 + 13
    assert impl.peak == 3
    assert impl.in_flight == 0
    assert impl.calls == {"StepA": 1, "StepB": 1, "StepC": 1, "Gather": 1}


# 3. Exit anywhere -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("graph_name", "target", "expected"),
    [
        ("Diamond", "Extra", ["Top"]),
        ("Diamond", "Left", ["Top", "MakeLeft"]),
        ("Diamond", "Right", ["Top", "MakeRight"]),
        ("Fan", "A", ["StepA"]),
        ("Fan", "C", ["StepC"]),
        ("Chain", "A", ["First"]),
    ],
)
def test_an_intermediate_target_runs_only_the_steps_it_needs(
    pb: Any, dk: Any, graph_name: str, target: str, expected: list[str]
) -> None:
    impls: dict[str, Any] = {"Diamond": DiamondImpl, "Fan": FanImpl, "Chain": ChainImpl}
    impl = impls[graph_name](pb)
    graph = getattr(dk, graph_name)(impl)
    target_cls = getattr(pb, target)

    result = run(graph.run(target_cls, seed=pb.Seed(value=3)))

    assert type(result) is target_cls
    assert impl.calls == dict.fromkeys(expected, 1)
    plan_target = graph.plan.target(f"testgraphs.{target}")
    assert list(plan_target.steps) == expected
    assert [list(level) for level in plan_target.levels] == [[name] for name in expected]


def test_intermediate_targets_compute_the_same_values_as_the_full_run(pb: Any, dk: Any) -> None:
    graph = dk.Diamond(DiamondImpl(pb))
    seed = pb.Seed(value=4)

    assert run(graph.run(pb.Extra, seed=seed)).value == 40
    assert run(graph.run(pb.Left, seed=seed)).value == 41
    assert run(graph.run(pb.Right, seed=seed)).value == 42


def test_full_target_plan_groups_independent_steps_in_one_level(dk: Any) -> None:
    diamond = dk.Diamond.plan.target("testgraphs.Joined")
    assert diamond.levels == (("Top",), ("MakeLeft", "MakeRight"), ("Join",))
    fan = dk.Fan.plan.target("testgraphs.Fanned")
    assert fan.levels == (("StepA", "StepB", "StepC"), ("Gather",))
    assert fan.inputs == ("testgraphs.Seed",)
    assert fan.optional_inputs == ("testgraphs.Hint",)


# 4. Optional graph input ----------------------------------------------------------------------


def test_optional_graph_input_may_be_left_out(pb: Any, dk: Any) -> None:
    impl = FanImpl(pb)
    graph = dk.Fan(impl)
    hint = pb.Hint(text="go left")

    without = run(graph.run(pb.Fanned, seed=pb.Seed(value=0)))
    explicit_none = run(graph.run(pb.Fanned, seed=pb.Seed(value=0), hint=None))
    with_hint = run(graph.run(pb.Fanned, seed=pb.Seed(value=0), hint=hint))

    assert without.total == explicit_none.total == with_hint.total == 1 + 2 + 3
    assert impl.hints[0] is None
    assert impl.hints[1] is None
    assert impl.hints[2] is hint


# 5. Repeated inputs and steps without inputs --------------------------------------------------


def test_repeated_input_receives_the_one_value_outside_batch_runs(pb: Any, dk: Any) -> None:
    impl = ChainImpl(pb)

    total = run(dk.Chain(impl).run(pb.Total, seed=pb.Seed(value=7)))

    assert total.value == 7
    assert impl.calls == {"First": 1, "Sum": 1}
    (values,) = impl.sum_args
    assert isinstance(values, Sequence)
    assert list(values) == [pb.A(value=7)]


def test_a_step_without_inputs_is_called_with_no_arguments(pb: Any, dk: Any) -> None:
    impl = ChainImpl(pb)

    hint = run(dk.Chain(impl).run(pb.Hint))

    assert hint == pb.Hint(text="now")
    assert impl.now_args == [()]
    assert impl.calls == {"Now": 1}


# 6. Errors ------------------------------------------------------------------------------------


def test_a_failing_step_surfaces_as_step_failed(pb: Any, dk: Any) -> None:
    class Failing(DiamondImpl):
        async def make_left(self, extra: Any) -> Any:
            raise ValueError("left went wrong")

    impl = Failing(pb)

    with pytest.raises(StepFailed) as caught:
        run(dk.Diamond(impl).run(pb.Joined, seed=pb.Seed(value=1)))

    error = caught.value
    assert error.step == "MakeLeft"
    assert isinstance(error.__cause__, ValueError)
    assert error.cause is error.__cause__
    assert "left went wrong" in str(error)
    assert "MakeLeft" in str(error)
    assert "ValueError" in str(error)
    assert "left went wrong" in error.traceback_text
    assert impl.calls["Join"] == 0


def test_a_failing_blocking_step_surfaces_as_step_failed(pb: Any, dk: Any) -> None:
    class Failing(DiamondImpl):
        def make_right(self, extra: Any) -> Any:
            raise RuntimeError("thread trouble")

    with pytest.raises(StepFailed, match="thread trouble") as caught:
        run(dk.Diamond(Failing(pb)).run(pb.Right, seed=pb.Seed(value=1)))

    assert caught.value.step == "MakeRight"
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_a_failure_cancels_the_siblings_in_flight_and_does_not_hang(pb: Any, dk: Any) -> None:
    class OneFails(FanImpl):
        """StepB and StepC hang; StepA fails once both of them are in flight."""

        def __init__(self, pb: Any) -> None:
            super().__init__(pb)
            self.started: set[str] = set()
            self.both_started = asyncio.Event()
            self.cancelled: set[str] = set()

        async def _hang(self, name: str) -> Any:
            self.started.add(name)
            if self.started >= {"StepB", "StepC"}:
                self.both_started.set()
            try:
                await forever()
            except asyncio.CancelledError:
                self.cancelled.add(name)
                raise

        async def step_a(self, seed: Any) -> Any:
            await self.both_started.wait()
            raise ValueError("a failed")

        async def step_b(self, seed: Any) -> Any:
            return await self._hang("StepB")

        async def step_c(self, seed: Any) -> Any:
            return await self._hang("StepC")

    async def main() -> tuple[OneFails, StepFailed, set[asyncio.Task[Any]]]:
        impl = OneFails(pb)
        before = asyncio.all_tasks()
        with pytest.raises(StepFailed) as caught:
            await dk.Fan(impl).run(pb.Fanned, seed=pb.Seed(value=1))
        return impl, caught.value, tasks_since(before)

    impl, error, leftovers = run(main())

    assert error.step == "StepA"
    assert isinstance(error.__cause__, ValueError)
    assert impl.cancelled == {"StepB", "StepC"}
    assert impl.calls["Gather"] == 0
    assert leftovers == set()


@pytest.mark.skipif(
    sys.version_info >= (3, 12), reason="eager step tasks start before a sibling can cancel them"
)
def test_a_step_task_cancelled_before_it_starts_ends_the_run_instead_of_hanging(
    pb: Any, dk: Any
) -> None:
    # Someone else cancels the tasks of StepB and StepC before their first turn: the run
    # ends cancelled, as when such a task is cancelled while it runs, and nothing is left.
    class CancelsSiblings(FanImpl):
        async def step_a(self, seed: Any) -> Any:
            for task in tasks_since(before) - {asyncio.current_task()}:
                task.cancel()
            return await super().step_a(seed)

    before: set[asyncio.Task[Any]] = set()

    async def main() -> tuple[FanImpl, set[asyncio.Task[Any]]]:
        impl = CancelsSiblings(pb)
        before.update(asyncio.all_tasks())
        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(SAFETY_NET / 2):  # a hang ends in TimeoutError
                await dk.Fan(impl).run(pb.Fanned, seed=pb.Seed(value=1))
        return impl, tasks_since(before)

    impl, leftovers = run(main())

    assert impl.calls == Counter({"StepA": 1})
    assert leftovers == set()


def test_a_step_returning_the_wrong_type_fails_naming_the_expected_type(pb: Any, dk: Any) -> None:
    class WrongType(DiamondImpl):
        async def make_left(self, extra: Any) -> Any:
            return pb.Right(value=1)

    with pytest.raises(StepFailed) as caught:
        run(dk.Diamond(WrongType(pb)).run(pb.Left, seed=pb.Seed(value=1)))

    error = caught.value
    assert error.step == "MakeLeft"
    assert isinstance(error.__cause__, TypeError)
    assert str(error.__cause__) == (
        "step 'MakeLeft' returned a testgraphs.Right message instead of a testgraphs.Left "
        "message; a wrong return value is a bug in the step, so it is not retried"
    )


def test_a_step_returning_none_fails(pb: Any, dk: Any) -> None:
    class ReturnsNone(FanImpl):
        async def step_b(self, seed: Any) -> Any:
            return None

    with pytest.raises(
        StepFailed, match=r"returned None instead of a testgraphs\.B message"
    ) as caught:
        run(dk.Fan(ReturnsNone(pb)).run(pb.Fanned, seed=pb.Seed(value=1)))

    assert caught.value.step == "StepB"


def test_a_missing_required_input_is_a_type_error(pb: Any, dk: Any) -> None:
    impl = DiamondImpl(pb)

    with pytest.raises(TypeError, match=r"needs input seed=testgraphs\.Seed") as caught:
        run(dk.Diamond(impl).run(pb.Joined))

    assert not isinstance(caught.value, StepFailed)
    assert "testgraphs.Joined" in str(caught.value)
    assert impl.calls == {}


def test_an_input_of_the_wrong_type_is_a_type_error(pb: Any, dk: Any) -> None:
    impl = DiamondImpl(pb)

    with pytest.raises(TypeError, match=r"input seed must be testgraphs\.Seed, got Left"):
        run(dk.Diamond(impl).run(pb.Joined, seed=pb.Left(value=1)))

    assert impl.calls == {}


def test_an_unknown_input_keyword_is_a_type_error(pb: Any, dk: Any) -> None:
    impl = DiamondImpl(pb)

    with pytest.raises(TypeError, match="takes no input bogus") as caught:
        run(dk.Diamond(impl).run(pb.Joined, seed=pb.Seed(value=1), bogus=pb.Hint()))

    assert "it takes seed" in str(caught.value)
    assert impl.calls == {}


def test_a_message_instead_of_its_class_says_to_pass_the_class(pb: Any, dk: Any) -> None:
    impl = DiamondImpl(pb)
    graph = dk.Diamond(impl)
    seed = pb.Seed(value=1)

    with pytest.raises(TypeError) as caught:
        run(graph.run(pb.Joined(), seed=seed))
    assert str(caught.value) == (
        "testgraphs.Diamond.run() takes the message class as target: pass Joined, not Joined()"
    )
    with pytest.raises(TypeError) as caught:
        run(graph.run("testgraphs.Joined", seed=seed))
    assert str(caught.value) == (
        "testgraphs.Diamond.run() takes the message class as target (e.g. Joined), "
        "not 'testgraphs.Joined'"
    )
    with pytest.raises(TypeError) as caught:
        run(graph.fetch_target(pb.Left(), execution_id="e-1"))
    assert str(caught.value) == (
        "testgraphs.Diamond.fetch() takes the message class as target: pass Left, not Left()"
    )
    assert impl.calls == {}


def test_a_target_the_graph_cannot_produce_is_a_type_error(pb: Any, dk: Any) -> None:
    impl = DiamondImpl(pb)
    graph = dk.Diamond(impl)

    with pytest.raises(TypeError, match=r"cannot produce testgraphs\.Hint") as caught:
        run(graph.run(pb.Hint, seed=pb.Seed(value=1)))
    assert "testgraphs.Joined" in str(caught.value)  # it lists what the graph does produce

    # A graph input is given, never produced.
    with pytest.raises(TypeError, match=r"cannot produce testgraphs\.Seed"):
        run(graph.run(pb.Seed, seed=pb.Seed(value=1)))

    assert impl.calls == {}


def test_binding_an_implementation_without_a_step_method_fails(pb: Any, dk: Any) -> None:
    class NoJoin:
        async def top(self, seed: Any) -> Any: ...
        async def make_left(self, extra: Any) -> Any: ...
        def make_right(self, extra: Any) -> Any: ...

    with pytest.raises(BindError, match=r"'Join'.*join\(\)"):
        dk.Diamond(NoJoin())


def test_binding_a_protocol_subclass_without_a_step_method_fails(pb: Any, dk: Any) -> None:
    """The protocol's own stub (``...``) must not count as an implementation."""

    async def first(self: object, seed: Any) -> Any:
        return pb.A(value=seed.value)

    async def sum_(self: object, values: Sequence[Any]) -> Any:
        return pb.Total()

    partial = type("PartialChain", (dk.ChainSteps,), {"first": first, "sum": sum_})

    with pytest.raises(BindError, match=r"'Now'.*now\(\)"):
        dk.Chain(partial())


def test_binding_a_full_protocol_subclass_works(pb: Any, dk: Any) -> None:
    members = {name: getattr(ChainImpl, name) for name in ("first", "sum", "now")}
    members["__init__"] = ChainImpl.__init__
    full = type("FullChain", (dk.ChainSteps,), members)

    assert run(dk.Chain(full(pb)).run(pb.Total, seed=pb.Seed(value=5))).value == 5


def test_binding_an_async_def_to_a_blocking_step_fails(pb: Any, dk: Any) -> None:
    class AsyncRight(DiamondImpl):
        async def make_right(self, extra: Any) -> Any:
            return pb.Right()

    with pytest.raises(BindError, match=r"'MakeRight'.*blocking.*plain def") as caught:
        dk.Diamond(AsyncRight(pb))

    assert isinstance(caught.value, TypeError)


def test_binding_a_plain_def_to_an_async_step_fails(pb: Any, dk: Any) -> None:
    class PlainTop(DiamondImpl):
        def top(self, seed: Any) -> Any:
            return pb.Extra()

    with pytest.raises(BindError, match=r"'Top'.*async def"):
        dk.Diamond(PlainTop(pb))


def annotate(function: Any, hints: dict[str, Any]) -> None:
    """Give ``function`` annotations that are the fixtures' classes (this module's are text)."""
    function.__annotations__ = hints


def test_binding_checks_annotations_and_reports_every_mismatch_at_once(pb: Any, dk: Any) -> None:
    class BadFan(FanImpl):
        async def step_a(self, seed: Any) -> Any:
            return await super().step_a(seed)

        async def step_b(self, seed: Any) -> Any:
            return await super().step_b(seed)

        async def step_c(self) -> Any:  # type: ignore[override]
            return pb.C()

        async def gather(self, a: Any, b: Any, c: Any, hint: Any) -> Any:
            return await super().gather(a, b, c, hint)

    annotate(BadFan.step_a, {"seed": pb.A, "return": pb.A})
    annotate(BadFan.step_b, {"seed": pb.Seed, "return": pb.B | None})
    # c: wider than needed is fine; hint is optional, so it must accept None.
    hints = {"a": pb.A, "b": Sequence[pb.B], "c": pb.C | None, "hint": pb.Hint, "return": pb.A}
    annotate(BadFan.gather, hints)

    with pytest.raises(BindError) as caught:
        dk.Fan(BadFan(pb))
    assert str(caught.value) == (
        "BadFan does not match the steps of testgraphs.Fan: fix these to match FanSteps in "
        "the generated module\n"
        "  step StepA (BadFan.step_a), parameter seed: expected testgraphs.Seed, "
        "found testgraphs.A\n"
        "  step StepB (BadFan.step_b), return: expected testgraphs.B, "
        "found testgraphs.B | None\n"
        "  step StepC (BadFan.step_c): takes 0 positional parameter(s), the step passes "
        "1 input(s) (seed)\n"
        "  step Gather (BadFan.gather), parameter b: expected testgraphs.B, "
        "found Sequence[testgraphs.B]\n"
        "  step Gather (BadFan.gather), parameter hint: expected testgraphs.Hint | None, "
        "found testgraphs.Hint\n"
        "  step Gather (BadFan.gather), return: expected testgraphs.Fanned, found testgraphs.A"
    )


def test_binding_accepts_annotations_that_fit_what_the_runtime_passes(pb: Any, dk: Any) -> None:
    class WideFan(FanImpl):
        async def step_c(self, seed: Any, extra: int = 0) -> Any:
            return await super().step_c(seed)

    annotate(WideFan.step_a, {"seed": Message, "return": Message})  # base classes
    annotate(WideFan.step_b, {"seed": object, "return": Any})
    annotate(WideFan.step_c, {"seed": "NotImportedHere", "return": pb.C})  # unresolvable
    optional = Optional[pb.C]  # noqa: UP045 (typing.Optional is a union too)
    annotate(WideFan.gather, {"hint": Message | None, "c": optional, "return": pb.Fanned})
    fanned = run(dk.Fan(WideFan(pb)).run(pb.Fanned, seed=pb.Seed(value=1)))
    assert fanned.total == 2 + 3 + 4

    # A repeated input is a list: list, Sequence, Iterable of the type or of a base all fit.
    for repeated in (list[pb.A], Sequence[pb.A], Iterable[Message], Sequence, list):

        class Summing(ChainImpl):
            async def sum(self, values: Any) -> Any:
                return await super().sum(values)

        annotate(Summing.sum, {"values": repeated, "return": pb.Total})
        total = run(dk.Chain(Summing(pb)).run(pb.Total, seed=pb.Seed(value=7)))
        assert total.value == 7

    class Singular(ChainImpl):
        async def sum(self, values: Any) -> Any:
            return await super().sum(values)

    annotate(Singular.sum, {"values": pb.A})
    with pytest.raises(BindError, match=r"parameter values: expected Sequence\[testgraphs\.A\], "):
        dk.Chain(Singular(pb))


# 7. Cancelling the caller ---------------------------------------------------------------------


class Hanging:
    """Records which steps started and which were cancelled; ``hang`` names the steps that hang."""

    def __init__(self, hang: set[str], wait_for: set[str]) -> None:
        self.hang = hang
        self.wait_for = wait_for
        self.started: list[str] = []
        self.cancelled: set[str] = set()
        self.all_hanging = asyncio.Event()

    async def step(self, name: str, result: Any) -> Any:
        self.started.append(name)
        if name not in self.hang:
            return result
        if self.wait_for <= set(self.started):
            self.all_hanging.set()
        try:
            await forever()
        except asyncio.CancelledError:
            self.cancelled.add(name)
            raise
        raise AssertionError("unreachable")


async def cancel_when_hanging(hanging: Hanging, coro: Coroutine[Any, Any, Any]) -> None:
    """Run ``coro`` as a task, cancel it once every hanging step is in flight, check the end."""
    before = asyncio.all_tasks()
    task = asyncio.ensure_future(coro)
    await hanging.all_hanging.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(10):  # give any wrongly started step the chance to show itself
        await asyncio.sleep(0)
    assert tasks_since(before) == set()


def test_cancelling_the_caller_cancels_concurrent_steps_and_starts_no_new_ones(
    pb: Any, dk: Any
) -> None:
    class FanHanging(Hanging):
        async def step_a(self, seed: Any) -> Any:
            return await self.step("StepA", pb.A())

        async def step_b(self, seed: Any) -> Any:
            return await self.step("StepB", pb.B())

        async def step_c(self, seed: Any) -> Any:
            return await self.step("StepC", pb.C())

        async def gather(self, a: Any, b: Any, c: Any, hint: Any) -> Any:
            self.started.append("Gather")
            return pb.Fanned()

    async def main() -> FanHanging:
        # StepA finishes, StepB and StepC hang: Gather must never start.
        impl = FanHanging(hang={"StepB", "StepC"}, wait_for={"StepB", "StepC"})
        await cancel_when_hanging(impl, dk.Fan(impl).run(pb.Fanned, seed=pb.Seed()))
        return impl

    impl = run(main())

    assert sorted(impl.started) == ["StepA", "StepB", "StepC"]
    assert impl.cancelled == {"StepB", "StepC"}


def test_cancelling_the_caller_cancels_a_step_awaited_inline(pb: Any, dk: Any) -> None:
    class DiamondHanging(Hanging):
        async def top(self, seed: Any) -> Any:
            return await self.step("Top", pb.Extra())

        async def make_left(self, extra: Any) -> Any:
            return await self.step("MakeLeft", pb.Left())

        def make_right(self, extra: Any) -> Any:
            self.started.append("MakeRight")
            return pb.Right()

        async def join(self, left: Any, right: Any) -> Any:
            return await self.step("Join", pb.Joined())

    class ChainHanging(Hanging):
        async def first(self, seed: Any) -> Any:
            return await self.step("First", pb.A())

        async def sum(self, values: Sequence[Any]) -> Any:
            return await self.step("Sum", pb.Total())

        async def now(self) -> Any:
            return await self.step("Now", pb.Hint())

    async def main() -> tuple[Hanging, Hanging]:
        # Top is the only runnable step of the diamond; First starts a plain chain.
        diamond = DiamondHanging(hang={"Top"}, wait_for={"Top"})
        await cancel_when_hanging(diamond, dk.Diamond(diamond).run(pb.Joined, seed=pb.Seed()))
        chain = ChainHanging(hang={"First"}, wait_for={"First"})
        await cancel_when_hanging(chain, dk.Chain(chain).run(pb.Total, seed=pb.Seed()))
        return diamond, chain

    diamond, chain = run(main())

    assert diamond.started == ["Top"]
    assert diamond.cancelled == {"Top"}
    assert chain.started == ["First"]
    assert chain.cancelled == {"First"}


# 8. Values belong to one execution ------------------------------------------------------------


def test_separate_executions_do_not_share_values(pb: Any, dk: Any) -> None:
    impl = DiamondImpl(pb)
    graph = dk.Diamond(impl)

    first = run(graph.run(pb.Joined, seed=pb.Seed(value=1)))
    assert impl.calls == {"Top": 1, "MakeLeft": 1, "MakeRight": 1, "Join": 1}
    second = run(graph.run(pb.Joined, seed=pb.Seed(value=2)))

    assert first.value == 11 * 100 + 12
    assert second.value == 21 * 100 + 22
    assert impl.calls == {"Top": 2, "MakeLeft": 2, "MakeRight": 2, "Join": 2}


def test_concurrent_executions_of_one_graph_keep_their_own_values(pb: Any, dk: Any) -> None:
    class Interleaved(FanImpl):
        """Every step of both executions meets at one barrier, so the two runs interleave."""

        def __init__(self, pb: Any) -> None:
            super().__init__(pb)
            self.barrier = asyncio.Barrier(6)

        async def step_a(self, seed: Any) -> Any:
            await self.barrier.wait()
            return await super().step_a(seed)

        async def step_b(self, seed: Any) -> Any:
            await self.barrier.wait()
            return await super().step_b(seed)

        async def step_c(self, seed: Any) -> Any:
            await self.barrier.wait()
            return await super().step_c(seed)

    async def main() -> tuple[Interleaved, list[Any]]:
        impl = Interleaved(pb)
        graph = dk.Fan(impl)
        results = await asyncio.gather(
            graph.run(pb.Fanned, seed=pb.Seed(value=0)),
            graph.run(pb.Fanned, seed=pb.Seed(value=100)),
        )
        return impl, list(results)

    impl, results = run(main())

    assert [r.total for r in results] == [6, 306]
    assert impl.calls == {"StepA": 2, "StepB": 2, "StepC": 2, "Gather": 2}


# 9. Subgraphs ---------------------------------------------------------------------------------


class OuterImpl:
    """Joined(v) -> Total(v + 1); the RunDiamond step has no method: Diamond implements it."""

    async def finish(self, joined: Any) -> Any:
        pb = importlib.import_module("testgraphs.shapes_pb2")
        return pb.Total(value=joined.value + 1)


def test_a_subgraph_step_runs_the_bound_child_graph(pb: Any, dk: Any) -> None:
    nested = importlib.import_module("testgraphs.nested_docket")
    assert nested.OUTER_PLAN.step("RunDiamond").subgraph == "testgraphs.Diamond"
    assert not hasattr(nested.OuterSteps, "run_diamond")
    child_impl = DiamondImpl(pb)
    child = dk.Diamond(child_impl)
    outer = nested.Outer(OuterImpl(), subgraphs={"testgraphs.Diamond": child})
    total = run(outer.run(pb.Total, seed=pb.Seed(value=1)))
    assert total.value == 1112 + 1
    assert child_impl.calls == Counter({"Top": 1, "MakeLeft": 1, "MakeRight": 1, "Join": 1})


def test_a_subgraph_step_needs_its_graph_when_binding(pb: Any, dk: Any) -> None:
    nested = importlib.import_module("testgraphs.nested_docket")
    with pytest.raises(BindError, match=r"step 'RunDiamond' .* runs graph testgraphs\.Diamond"):
        nested.Outer(OuterImpl())
    wrong = dk.Fan(FanImpl(pb))
    with pytest.raises(BindError, match=r"bound to testgraphs\.Fan"):
        nested.Outer(OuterImpl(), subgraphs={"testgraphs.Diamond": wrong})
