"""Typing of the generated entry points that go through the store: the durable ones
(``enqueue``, ``schedule``, ``result``) and ``fetch``, checked by the real mypy (``--strict``).

Same conventions as test_typing.py (see typing_support.py): a line that
must fail ends in ``# E: <codes> <text>``, a ``reveal_type`` line in ``# R: <type>``.
What mypy accepts also runs, on Procrastinate's in-memory queue and a memory store.
"""

from __future__ import annotations

from typing_support import TypingEnv, check_rejected, check_revealed, check_runs

ACCEPTED = """\
import asyncio
from typing import reveal_type

import procrastinate
from procrastinate.testing import InMemoryConnector

from docket_runtime.durable import Registry, install, run_worker
from docket_runtime.stores import MemoryStore
from testgraphs import orders_docket, orders_pb2, shapes_docket, shapes_pb2


class OrderSteps(orders_docket.OrdersSteps):
    async def validate(self, order: orders_pb2.Order, /) -> orders_pb2.ValidOrder:
        return orders_pb2.ValidOrder(order_id=order.order_id, amount_cents=order.amount_cents)

    async def charge_card(self, valid_order: orders_pb2.ValidOrder, /) -> orders_pb2.Charge:
        return orders_pb2.Charge(charge_id=f"ch-{valid_order.order_id}")

    async def ship(
        self, order: orders_pb2.ValidOrder, charge: orders_pb2.Charge, /
    ) -> orders_pb2.Shipment:
        return orders_pb2.Shipment(tracking=f"tr-{order.order_id}")

    async def confirm(
        self,
        order: orders_pb2.ValidOrder,
        charge: orders_pb2.Charge,
        shipment: orders_pb2.Shipment,
        /,
    ) -> orders_pb2.Confirmation:
        return orders_pb2.Confirmation(
            order_id=order.order_id, charge_id=charge.charge_id, tracking=shipment.tracking
        )


class BillingImpl(orders_docket.BillingSteps):
    async def price(self, basket: orders_pb2.Basket, /) -> orders_pb2.Priced:
        return orders_pb2.Priced(cents=sum(basket.cents))

    async def tax(self, priced: orders_pb2.Priced, /) -> orders_pb2.Taxed:
        return orders_pb2.Taxed(cents=priced.cents * 120 // 100)

    async def print_receipt(self, taxed: orders_pb2.Taxed, /) -> orders_pb2.Receipt:
        return orders_pb2.Receipt(text=f"{taxed.cents} cents")


class FanImpl(shapes_docket.FanSteps):
    async def step_a(self, seed: shapes_pb2.Seed, /) -> shapes_pb2.A:
        return shapes_pb2.A(value=seed.value)

    async def step_b(self, seed: shapes_pb2.Seed, /) -> shapes_pb2.B:
        return shapes_pb2.B(value=seed.value)

    async def step_c(self, seed: shapes_pb2.Seed, /) -> shapes_pb2.C:
        return shapes_pb2.C(value=seed.value)

    async def gather(
        self, a: shapes_pb2.A, b: shapes_pb2.B, c: shapes_pb2.C, hint: shapes_pb2.Hint | None, /
    ) -> shapes_pb2.Fanned:
        return shapes_pb2.Fanned(total=a.value + b.value + c.value + (100 if hint else 0))


class SingleImpl(shapes_docket.SingleSteps):
    async def only(self, seed: shapes_pb2.Seed, /) -> shapes_pb2.Total:
        return shapes_pb2.Total(value=seed.value + 1)


async def main() -> None:
    app = procrastinate.App(connector=InMemoryConnector())
    registry = Registry(MemoryStore())
    orders = registry.bind(orders_docket.Orders, OrderSteps())
    fan = registry.bind(shapes_docket.Fan, FanImpl())
    single = registry.bind(shapes_docket.Single, SingleImpl())
    reveal_type(orders)  # R: testgraphs.orders_docket.Orders
    install(app, registry)
    order = orders_pb2.Order(order_id="o-1", amount_cents=500)
    seed = shapes_pb2.Seed(value=1)
    async with app.open_async():
        job = await orders.enqueue(app, orders_pb2.Confirmation, order=order, execution_id="o-1")
        reveal_type(job)  # R: int | None
        assert job is not None
        await orders.enqueue(
            app, orders_pb2.Charge, order=order, execution_id="o-2", queue="docket", priority=1
        )
        inputs: orders_docket.Orders.OrderInputs = {"order": order}
        await orders.enqueue(app, orders_pb2.Confirmation, execution_id="o-3", **inputs)
        hint = shapes_pb2.Hint(text="x")
        await fan.enqueue(app, shapes_pb2.Fanned, seed=seed, hint=hint, execution_id="f-1")
        await fan.enqueue(app, shapes_pb2.Fanned, seed=seed, execution_id="f-2")
        await single.enqueue(app, shapes_pb2.Total, seed=seed, execution_id="s-1")
        pending = await orders.result(orders_pb2.Confirmation, "o-1")
        reveal_type(pending)  # R: testgraphs.orders_pb2.Confirmation | None
        assert pending is None
        await run_worker(app, registry, wait=False, install_signal_handlers=False)
        confirmation = await orders.result(orders_pb2.Confirmation, "o-1")
        assert confirmation is not None and confirmation.charge_id == "ch-o-1"
        charge = await orders.result(orders_pb2.Charge, execution_id="o-2")
        reveal_type(charge)  # R: testgraphs.orders_pb2.Charge | None
        hinted = await fan.result(shapes_pb2.Fanned, "f-1")
        reveal_type(hinted)  # R: testgraphs.shapes_pb2.Fanned | None
        assert hinted is not None and hinted.total == 103
        total = await single.result(shapes_pb2.Total, "s-1")
        reveal_type(total)  # R: testgraphs.shapes_pb2.Total | None
        assert total == shapes_pb2.Total(value=2)

        # fetch: what a step keeps, by execution id or (GLOBAL) by the step's inputs.
        kept = await orders.fetch(orders_pb2.Charge, execution_id="o-1")
        reveal_type(kept)  # R: testgraphs.orders_pb2.Charge | None
        assert kept is not None and kept.charge_id == "ch-o-1"
        billing = registry.bind(orders_docket.Billing, BillingImpl())
        basket = orders_pb2.Basket(id="b-1", cents=[100, 250])
        receipt = await billing.run(orders_pb2.Receipt, basket=basket, execution_id="b-1")
        assert receipt.text == "420 cents"
        priced = await billing.fetch(orders_pb2.Priced, basket)
        reveal_type(priced)  # R: testgraphs.orders_pb2.Priced | None
        taxed = await billing.fetch(orders_pb2.Taxed, execution_id="b-1")
        reveal_type(taxed)  # R: testgraphs.orders_pb2.Taxed | None
        assert (priced, taxed) == (orders_pb2.Priced(cents=350), orders_pb2.Taxed(cents=420))

    def next_order(
        previous: orders_pb2.Confirmation | None,
    ) -> orders_docket.Orders.OrderInputs:
        return {"order": order}

    async def next_seed(previous: shapes_pb2.Total | None) -> shapes_docket.Single.SeedInputs:
        return {"seed": shapes_pb2.Seed(value=0 if previous is None else previous.value)}

    yearly = "0 0 1 1 *"
    name = orders.schedule(app, registry, orders_pb2.Confirmation, cron=yearly, inputs=next_order)
    reveal_type(name)  # R: str
    orders.schedule(
        app, registry, orders_pb2.Shipment, cron=yearly, inputs=lambda previous: {"order": order}
    )
    fan.schedule(app, registry, shapes_pb2.Fanned, cron=yearly, inputs=lambda _: {"seed": seed})
    single.schedule(app, registry, shapes_pb2.Total, cron=yearly, inputs=next_seed, name="s")
    print("ran")


asyncio.run(main())
"""

# Every marked line must be an error, and no other line.
REJECTED = """\
import procrastinate

from docket_runtime.durable import Registry
from testgraphs import orders_docket, orders_pb2, shapes_docket, shapes_pb2


async def enqueues(
    app: procrastinate.App,
    orders: orders_docket.Orders,
    fan: shapes_docket.Fan,
    single: shapes_docket.Single,
) -> None:
    order = orders_pb2.Order()
    seed = shapes_pb2.Seed()
    # A missing input, a misspelled one, one of the wrong message type, None for a required one.
    await single.enqueue(app, shapes_pb2.Total, execution_id="x")  # E: call-arg Missing named argument "seed" for "enqueue" of "Single"
    await single.enqueue(app, shapes_pb2.Total, sed=seed, execution_id="x")  # E: call-arg Unexpected keyword argument "sed" for "enqueue" of "Single"; did you mean "seed"?
    await single.enqueue(app, shapes_pb2.Total, seed=shapes_pb2.Hint(), execution_id="x")  # E: arg-type Argument "seed" to "enqueue" of "Single" has incompatible type "Hint"; expected "Seed"
    await single.enqueue(app, shapes_pb2.Total, seed=None, execution_id="x")  # E: arg-type Argument "seed" to "enqueue" of "Single" has incompatible type "None"; expected "Seed"
    # The same where several targets take those inputs (one signature), or where targets
    # take different inputs (one overload per set of inputs).
    await orders.enqueue(app, orders_pb2.Confirmation, execution_id="x")  # E: call-arg Missing named argument "order" for "enqueue" of "Orders"
    await orders.enqueue(app, orders_pb2.Confirmation, ordr=order, execution_id="x")  # E: call-arg Unexpected keyword argument "ordr" for "enqueue" of "Orders"; did you mean "order"?
    await orders.enqueue(app, orders_pb2.Confirmation, order=seed, execution_id="x")  # E: arg-type Argument "order" to "enqueue" of "Orders" has incompatible type "Seed"; expected "Order"
    await fan.enqueue(app, shapes_pb2.Fanned, seed=seed, hint=seed, execution_id="x")  # E: call-overload No overload variant of "enqueue" of "Fan" matches argument types "App", "type[Fanned]", "Seed", "Seed", "str"
    await fan.enqueue(app, shapes_pb2.A, seed=seed, hint=shapes_pb2.Hint(), execution_id="x")  # E: arg-type Argument 2 to "enqueue" of "Fan" has incompatible type "type[A]"; expected "type[Fanned]"
    # A target the graph does not produce.
    await orders.enqueue(app, orders_pb2.RiskScore, order=order, execution_id="x")  # E: type-var Value of type variable "_OrdersTarget" of "enqueue" of "Orders" cannot be "RiskScore"
    await single.enqueue(app, shapes_pb2.Hint, seed=seed, execution_id="x")  # E: arg-type Argument 2 to "enqueue" of "Single" has incompatible type "type[Hint]"; expected "type[Total]"
    # No execution id (an idempotency key: always given), not an app, an option of run().
    await single.enqueue(app, shapes_pb2.Total, seed=seed)  # E: call-arg Missing named argument "execution_id" for "enqueue" of "Single"
    await single.enqueue(object(), shapes_pb2.Total, seed=seed, execution_id="x")  # E: arg-type Argument 1 to "enqueue" of "Single" has incompatible type "object"; expected "App"
    await single.enqueue(app, shapes_pb2.Total, seed=seed, execution_id="x", deadline=1.0)  # E: call-arg Unexpected keyword argument "deadline" for "enqueue" of "Single"


def schedules(
    app: procrastinate.App,
    registry: Registry,
    orders: orders_docket.Orders,
    fan: shapes_docket.Fan,
    single: shapes_docket.Single,
) -> None:
    order = orders_pb2.Order()
    seed = shapes_pb2.Seed()
    every = "* * * * *"

    def after_charge(previous: orders_pb2.Charge | None) -> orders_docket.Orders.OrderInputs:
        return {"order": order}

    def seeds(previous: shapes_pb2.Total | None) -> shapes_docket.Single.SeedInputs:
        return {"seed": seed}

    # inputs() returns a misspelled, mistyped, missing or unchecked input.
    single.schedule(app, registry, shapes_pb2.Total, cron=every, inputs=lambda p: {"sed": seed})  # E: arg-type,return-value Incompatible return value type (got "dict[str, Seed]", expected "SeedInputs | Awaitable[SeedInputs]")
    single.schedule(app, registry, shapes_pb2.Total, cron=every, inputs=lambda p: {"seed": order})  # E: arg-type,return-value got "dict[str, Order]"
    single.schedule(app, registry, shapes_pb2.Total, cron=every, inputs=lambda p: {})  # E: arg-type,return-value got "dict[Never, Never]"
    single.schedule(app, registry, shapes_pb2.Total, cron=every, inputs=lambda p: {"seed": p})  # E: arg-type,return-value got "dict[str, Total | None]"
    orders.schedule(app, registry, orders_pb2.Shipment, cron=every, inputs=lambda p: {"order": seed})  # E: arg-type,return-value (got "dict[str, Seed]", expected "OrderInputs | Awaitable[OrderInputs]")
    # inputs() of another target: it takes the previous output of the target it builds for.
    orders.schedule(app, registry, orders_pb2.Confirmation, cron=every, inputs=after_charge)  # E: arg-type Argument "inputs" to "schedule" of "Orders" has incompatible type "Callable[[Charge | None], OrderInputs]"; expected "Callable[[Confirmation | None], OrderInputs | Awaitable[OrderInputs]]"
    orders.schedule(app, registry, orders_pb2.Confirmation, cron=every, inputs=seeds)  # E: arg-type Argument "inputs" to "schedule" of "Orders" has incompatible type "Callable[[Total | None], SeedInputs]"
    # (Where targets take different inputs, mypy names the first overload when none matches.)
    fan.schedule(app, registry, shapes_pb2.Fanned, cron=every, inputs=seeds)  # E: arg-type,type-var Argument "inputs" to "schedule" of "Fan" has incompatible type "Callable[[Total | None], testgraphs.shapes_docket.Single.SeedInputs]"
    # A target the graph does not produce; no cron.
    orders.schedule(app, registry, orders_pb2.RiskScore, cron=every, inputs=after_charge)  # E: arg-type,type-var Value of type variable "_OrdersTarget" of "schedule" of "Orders" cannot be "RiskScore"
    single.schedule(app, registry, shapes_pb2.Total, inputs=seeds)  # E: call-arg Missing named argument "cron" for "schedule" of "Single"


async def fetches(
    orders: orders_docket.Orders,
    billing: orders_docket.Billing,
    scoring: orders_docket.Scoring,
    fan: shapes_docket.Fan,
) -> None:
    review, model, basket = orders_pb2.Review(), orders_pb2.Model(), orders_pb2.Basket()
    # A target whose step keeps nothing (Confirm, PrintReceipt), a graph that keeps nothing.
    await orders.fetch(orders_pb2.Confirmation, execution_id="x")  # E: type-var Value of type variable "_OrdersCheckpointTarget" of "fetch" of "Orders" cannot be "Confirmation"
    await billing.fetch(orders_pb2.Receipt, execution_id="x")  # E: arg-type Argument 1 to "fetch" of "Billing" has incompatible type "type[Receipt]"
    await fan.fetch(shapes_pb2.Fanned, execution_id="x")  # E: attr-defined "Fan" has no attribute "fetch"
    await orders.fetch(orders_pb2.RiskScore, execution_id="x")  # E: type-var Value of type variable "_OrdersCheckpointTarget" of "fetch" of "Orders" cannot be "RiskScore"
    # A checkpoint is found by execution id (a keyword), a GLOBAL result by the step's inputs.
    await orders.fetch(orders_pb2.Charge)  # E: call-arg Missing named argument "execution_id" for "fetch" of "Orders"
    await orders.fetch(orders_pb2.Charge, "x")  # E: call-arg Too many positional arguments for "fetch" of "Orders"
    await scoring.fetch(orders_pb2.RiskScore, execution_id="x")  # E: call-arg Unexpected keyword argument "execution_id" for "fetch" of "Scoring"
    await billing.fetch(orders_pb2.Priced, execution_id="x")  # E: arg-type Argument 1 to "fetch" of "Billing" has incompatible type "type[Priced]"
    await billing.fetch(orders_pb2.Taxed, basket)  # E: arg-type Argument 1 to "fetch" of "Billing" has incompatible type "type[Taxed]"
    # The step's inputs: in order, all of them, of their types.
    await scoring.fetch(orders_pb2.RiskScore, model, review)  # E: arg-type Argument 2 to "fetch" of "Scoring" has incompatible type "Model"; expected "Review"
    await scoring.fetch(orders_pb2.RiskScore, review)  # E: call-arg Too few arguments for "fetch" of "Scoring"
    await scoring.fetch(orders_pb2.RiskScore, inputs=[review, model])  # E: call-arg Unexpected keyword argument "inputs" for "fetch" of "Scoring"
    await billing.fetch(orders_pb2.Priced, review)  # E: call-overload No overload variant of "fetch" of "Billing" matches argument types "type[Priced]", "Review"
    shipment: orders_pb2.Shipment = await orders.fetch(orders_pb2.Shipment, execution_id="x")  # E: assignment expression has type "Shipment | None", variable has type "Shipment"


async def results(orders: orders_docket.Orders, single: shapes_docket.Single) -> None:
    await orders.result(orders_pb2.RiskScore, "x")  # E: type-var Value of type variable "_OrdersTarget" of "result" of "Orders" cannot be "RiskScore"
    await single.result(shapes_pb2.Hint, "x")  # E: arg-type Argument 1 to "result" of "Single" has incompatible type "type[Hint]"; expected "type[Total]"
    charge: orders_pb2.Charge | None = await orders.result(orders_pb2.Confirmation, "x")  # E: assignment expression has type "Confirmation | None", variable has type "Charge | None"
    total: shapes_pb2.Total = await single.result(shapes_pb2.Total, "x")  # E: assignment expression has type "Total | None", variable has type "Total"
"""  # noqa: E501


def test_the_durable_entry_points_type_check_and_reveal_target_types(
    typing_env: TypingEnv,
) -> None:
    revealed = check_revealed(typing_env, "durable_accepted.py", ACCEPTED)
    assert len(revealed) == 10


def test_the_accepted_durable_calls_run_on_an_in_memory_queue(typing_env: TypingEnv) -> None:
    check_runs(typing_env, "durable_accepted_run.py", ACCEPTED)


def test_wrong_enqueue_schedule_result_and_fetch_calls_are_rejected(typing_env: TypingEnv) -> None:
    rejected = check_rejected(typing_env, "durable_rejected.py", REJECTED)
    assert len(rejected) == 42
