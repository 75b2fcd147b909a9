"""What worker.py and main.py share: the steps, the fake payment gateway, the wiring.

The queue app, the store and the registry are built the same way in the
process that enqueues orders (main.py) and in the workers (worker.py); the
graph is bound to the same implementation in both, so either can run it.
"""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent / "gen"))

import procrastinate
from durable_orders import orders_docket
from durable_orders.orders_pb2 import (
    Confirmation,
    Order,
    Payment,
    Shipment,
    ValidOrder,
)
from psycopg_pool import AsyncConnectionPool

from docket_runtime import context
from docket_runtime.durable import Registry, install
from docket_runtime.stores import Store, open_store

GATEWAY_TABLE = """\
CREATE TABLE IF NOT EXISTS example_payments (
    idempotency_key text PRIMARY KEY,  -- one payment per key, however often it is retried
    order_id        text NOT NULL,
    amount_cents    bigint NOT NULL,
    payment_id      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
)"""


class CardDeclined(Exception):
    """The bank said no: never retried (listed in non_retryable_errors)."""


class GatewayTimeout(Exception):
    """The gateway did not answer in time: retried, by a job scheduled after the backoff."""


class Gateway:
    """A fake payment provider living in the same Postgres, with a flaky network.

    Like a real one (Stripe, Adyen), it deduplicates charges by idempotency key:
    a retry after a timeout that happened *after* the charge gets the same
    payment back instead of charging again.
    """

    def __init__(
        self, pool: AsyncConnectionPool[Any], failure_rate: float, delay: float = 0.02
    ) -> None:
        self.pool = pool
        self.failure_rate = failure_rate
        self.delay = delay

    async def charge(self, key: str, order: ValidOrder) -> str:
        await asyncio.sleep(self.delay)  # the network
        if random.random() < self.failure_rate / 2:
            raise GatewayTimeout("no answer from the gateway (nothing charged)")
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "WITH new AS (INSERT INTO example_payments "
                "(idempotency_key, order_id, amount_cents, payment_id) "
                "VALUES (%s, %s, %s, 'pay_' || substr(md5(%s), 1, 12)) "
                "ON CONFLICT (idempotency_key) DO NOTHING RETURNING payment_id) "
                "SELECT payment_id FROM new UNION ALL "
                "SELECT payment_id FROM example_payments WHERE idempotency_key = %s",
                (key, order.order_id, order.amount_cents, key, key),
            )
            row = await cur.fetchone()
        assert row is not None
        if random.random() < self.failure_rate / 2:
            raise GatewayTimeout("the gateway charged, but its answer was lost")
        return str(row[0])


class CheckoutSteps(orders_docket.CheckoutSteps):
    """The four steps. Each is a plain async method taking and returning messages."""

    def __init__(self, gateway: Gateway, ship_failure_rate: float) -> None:
        self.gateway = gateway
        self.ship_failure_rate = ship_failure_rate

    async def validate(self, order: Order, /) -> ValidOrder:
        if order.amount_cents <= 0:
            raise ValueError(f"amount must be positive, got {order.amount_cents}")
        return ValidOrder(
            order_id=order.order_id,
            customer=order.customer,
            card=order.card,
            amount_cents=order.amount_cents,
        )

    async def charge_card(self, valid_order: ValidOrder, /) -> Payment:
        ctx = context()
        if valid_order.card.startswith("0000"):
            raise CardDeclined(f"card ending {valid_order.card[-4:]} declined")
        ctx.logger.info("charging %s (attempt %d)", valid_order.order_id, ctx.attempt)
        payment_id = await self.gateway.charge(ctx.idempotency_key, valid_order)
        return Payment(payment_id=payment_id, amount_cents=valid_order.amount_cents)

    async def ship(self, order: ValidOrder, payment: Payment, /) -> Shipment:
        await asyncio.sleep(0.05)  # the carrier's API
        if random.random() < self.ship_failure_rate:
            raise ConnectionError("carrier API unreachable")
        return Shipment(tracking=f"TRK-{order.order_id.upper()}", carrier="Parcelo")

    async def confirm(
        self, order: ValidOrder, payment: Payment, shipment: Shipment, /
    ) -> Confirmation:
        return Confirmation(
            order_id=order.order_id, payment_id=payment.payment_id, tracking=shipment.tracking
        )


def make_app(url: str) -> procrastinate.App:
    """The Procrastinate app (defined here, not in a __main__ module, as Procrastinate wants)."""
    return procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))


class Wiring:
    """An open store, gateway pool, registry and app; close() releases them."""

    def __init__(
        self,
        store: Store,
        pool: AsyncConnectionPool[Any],
        registry: Registry,
        app: procrastinate.App,
        checkout: orders_docket.Checkout,
    ) -> None:
        self.store = store
        self.pool = pool
        self.registry = registry
        self.app = app
        self.checkout = checkout

    async def close(self) -> None:
        await self.pool.close()
        await self.store.close()


async def wire(
    url: str,
    *,
    failure_rate: float = 0.3,
    ship_failure_rate: float = 0.1,
    charge_delay: float = 0.02,
) -> Wiring:
    """Open everything a worker or an enqueuing service needs at ``url``."""
    store = await open_store(url)
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        url, min_size=1, max_size=4, kwargs={"autocommit": True}, open=False
    )
    await pool.open()
    registry = Registry(store)
    checkout = registry.bind(
        orders_docket.Checkout,
        CheckoutSteps(Gateway(pool, failure_rate, charge_delay), ship_failure_rate),
    )
    app = make_app(url)
    install(app, registry)
    return Wiring(store, pool, registry, app, checkout)
