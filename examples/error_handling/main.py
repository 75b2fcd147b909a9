"""Four classic outcomes of a workflow, and what the caller sees in each.

1. A valid order goes through.
2. An invalid order fails at once: ValidationError is listed in
   ``non_retryable_errors``, so it is not retried.
3. The carrier's API is down: QuoteShipping is retried with backoff until its
   attempts run out (an Events hook prints every attempt and wait).
4. The fraud check raises an Abort while the sibling steps are in flight: the
   execution stops at once and cancels them; the stock reservation is released
   by a shielded cleanup.

Generate the code first (from the repository root):

    docket-gen examples/error_handling/protos -o examples/error_handling/gen
    python examples/error_handling/main.py
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "gen"))

from error_handling import orders_docket
from error_handling.orders_pb2 import (
    Confirmation,
    FraudCheck,
    OrderRequest,
    Reservation,
    ShippingQuote,
    ValidOrder,
)

import docket_runtime
from docket_runtime import Abort, ExecutionAborted, StepEvent, StepFailed, StepRetrying


class ValidationError(ValueError):
    """The request itself is wrong: no retry can fix it."""


class FraudSuspected(Abort):
    """Stops the whole order at once: never retried, everything in flight is cancelled."""


class OrderSteps(orders_docket.OrderGraphSteps):
    """Pretends to call a carrier, a fraud service and a warehouse; records cancellations."""

    def __init__(self, *, carrier_down: bool = False) -> None:
        self.carrier_down = carrier_down
        self.cancelled: list[str] = []
        self.released: list[str] = []

    async def validate(self, order_request: OrderRequest, /) -> ValidOrder:
        if order_request.quantity <= 0:
            raise ValidationError(f"quantity must be positive, got {order_request.quantity}")
        return ValidOrder(
            customer=order_request.customer,
            item=order_request.item,
            quantity=order_request.quantity,
        )

    async def quote_shipping(self, valid_order: ValidOrder, /) -> ShippingQuote:
        try:
            await asyncio.sleep(0.05)  # the carrier's API
        except asyncio.CancelledError:
            self.cancelled.append("QuoteShipping")
            raise
        if self.carrier_down:
            raise ConnectionError("carrier API unreachable")
        return ShippingQuote(cents=499 * valid_order.quantity, carrier="Parcelo")

    async def check_fraud(self, valid_order: ValidOrder, /) -> FraudCheck:
        await asyncio.sleep(0.02)
        if valid_order.customer == "mallory":
            raise FraudSuspected(f"customer {valid_order.customer!r} is on the block list")
        return FraudCheck(score=3)

    async def reserve_stock(self, valid_order: ValidOrder, /) -> Reservation:
        reservation = f"res-{docket_runtime.context().idempotency_key[:8]}"
        try:
            await asyncio.sleep(0.2)  # the warehouse is slow
        except asyncio.CancelledError:
            self.cancelled.append("ReserveStock")
            # Runs to the end even though this step is being cancelled.
            await docket_runtime.shielded(self._release(reservation))
            raise
        return Reservation(id=reservation)

    async def _release(self, reservation: str) -> None:
        await asyncio.sleep(0.01)
        self.released.append(reservation)

    async def place_order(
        self,
        order: ValidOrder,
        quote: ShippingQuote,
        fraud: FraudCheck,
        reservation: Reservation,
        /,
    ) -> Confirmation:
        return Confirmation(
            order_id=f"ord-{docket_runtime.context().idempotency_key[:8]}",
            shipping_cents=quote.cents,
            carrier=quote.carrier,
            reservation_id=reservation.id,
        )


class Narrator(docket_runtime.Events):
    """Prints every failed attempt: whether the step runs again, and after how long."""

    def __init__(self, plan: docket_runtime.GraphPlan) -> None:
        self.plan = plan

    def step_retrying(self, event: StepRetrying) -> None:
        print(
            f"   {event.step}: attempt {event.attempt} failed ({_describe(event.error)}); "
            f"retrying in {event.delay * 1000:.0f} ms"
        )

    def step_failed(self, event: StepEvent) -> None:
        retry = self.plan.step(event.step).retry
        if isinstance(event.error, Abort):
            what = "aborts the order"
        elif retry is not None and event.attempt < retry.max_attempts:
            what = "not retryable"
        else:
            what = "no more attempts"
        print(f"   {event.step}: attempt {event.attempt} failed ({_describe(event.error)}); {what}")


def _describe(error: BaseException | None) -> str:
    return "?" if error is None else f"{type(error).__name__}: {error}"


async def place(title: str, steps: OrderSteps, request: OrderRequest, execution_id: str) -> None:
    """Run one case and print what the caller got."""
    print(f"\n== {title}")
    graph = orders_docket.OrderGraph(steps, events=[Narrator(orders_docket.ORDER_GRAPH_PLAN)])
    started = time.perf_counter()
    try:
        confirmation = await graph.run(
            Confirmation, order_request=request, execution_id=execution_id
        )
    except ExecutionAborted as error:
        print(f"-> aborted by {error.step}: {_describe(error.cause)}")
        print(f"   cancelled while in flight: {', '.join(sorted(steps.cancelled)) or 'none'}")
        print(f"   released by shielded cleanup: {', '.join(steps.released) or 'none'}")
    except StepFailed as error:
        print(
            f"-> failed at {error.step} after {error.attempts} attempt(s): {_describe(error.cause)}"
        )
    else:
        print(
            f"-> confirmed {confirmation.order_id}: {request.quantity} x {request.item}, "
            f"shipping ${confirmation.shipping_cents / 100:.2f} by {confirmation.carrier}, "
            f"stock {confirmation.reservation_id}"
        )
    print(f"   ({(time.perf_counter() - started) * 1000:.0f} ms)")


async def main() -> None:
    await place(
        "1. A valid order",
        OrderSteps(),
        OrderRequest(customer="ada", item="notebook", quantity=2),
        "order-1",
    )
    await place(
        "2. An invalid order: a validation error is not retried",
        OrderSteps(),
        OrderRequest(customer="ada", item="notebook", quantity=0),
        "order-2",
    )
    await place(
        "3. The carrier is down: retried with backoff until the attempts run out",
        OrderSteps(carrier_down=True),
        OrderRequest(customer="ada", item="notebook", quantity=1),
        "order-3",
    )
    await place(
        "4. Fraud: an abort stops the order while the other steps are in flight",
        OrderSteps(),
        OrderRequest(customer="mallory", item="notebook", quantity=50),
        "order-4",
    )


if __name__ == "__main__":
    asyncio.run(main())
