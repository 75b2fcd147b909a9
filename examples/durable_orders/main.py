"""Orders through durable workers: random gateway timeouts, declined cards, one charge each.

From the repository root, against a Postgres database you can write to:

    pip install -e '.[gen,cli,procrastinate]'
    docket-gen examples/durable_orders/protos -o examples/durable_orders/gen
    docketctl db migrate --url "$DOCKET_DATABASE_URL" --with-queue
    python examples/durable_orders/main.py --url "$DOCKET_DATABASE_URL"

It enqueues ``--orders`` orders (every fifth one with a card that is
declined), starts ``--workers`` worker processes (``--workers 0`` if you run
``worker.py`` yourself, in other terminals), waits until every order ended,
and prints what happened to each: the gateway times out at random (before or
after charging), each timeout is retried by a job scheduled after the
backoff, and no order is ever charged twice.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from checkout import GATEWAY_TABLE, Wiring, wire
from durable_orders.orders_pb2 import Confirmation, Order

from docket_runtime.durable import apply_queue_schema
from docket_runtime.stores import open_store

HERE = Path(__file__).resolve().parent
ENDED = ("succeeded", "failed", "cancelled")


async def prepare(url: str) -> None:
    """Both schemas and the gateway's table (what `docketctl db migrate --with-queue` does)."""
    store = await open_store(url, migrate=True)
    await store.close()
    await apply_queue_schema(url)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(GATEWAY_TABLE)


async def main(url: str, orders: int, workers: int) -> int:
    await prepare(url)
    wiring = await wire(url)
    procs = [
        subprocess.Popen([sys.executable, str(HERE / "worker.py"), "--url", url])
        for _ in range(workers)
    ]
    run = time.strftime("%H%M%S")
    ids = [f"order-{run}-{n:02d}" for n in range(orders)]
    try:
        async with wiring.app.open_async():
            for n, order_id in enumerate(ids):
                card = "0000000000000002" if n % 5 == 4 else "4242424242424242"
                order = Order(order_id=order_id, customer=f"c{n}", card=card, amount_cents=1999)
                # Typed like run(): a missing or mistyped input is a mypy error.
                await wiring.checkout.enqueue(
                    wiring.app, Confirmation, order=order, execution_id=order_id
                )
            print(f"enqueued {orders} orders; waiting for {workers or 'your'} worker(s)...")
            started = time.monotonic()
            while True:
                rows = [await wiring.store.get_execution(i) for i in ids]
                if all(r is not None and r.status in ENDED for r in rows):
                    break
                if time.monotonic() - started > 120:
                    print("gave up after 120 s: are workers running?")
                    return 1
                await asyncio.sleep(0.5)
            print(f"all ended in {time.monotonic() - started:.1f}s\n")
            await report(wiring, url, ids)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait()
        await wiring.close()
    return 0


async def report(wiring: Wiring, url: str, ids: list[str]) -> None:
    """One line per order: its status, charge attempts, charges taken, jobs used."""
    print(f"{'order':<18} {'status':<10} {'charge tries':>12} {'charges':>8} {'jobs':>5}  note")
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for order_id in ids:
            row = await wiring.store.get_execution(order_id)
            assert row is not None
            runs = {r.step: r for r in await wiring.store.get_step_runs(order_id)}
            tries = runs["ChargeCard"].attempts if "ChargeCard" in runs else 0
            cur = await conn.execute(
                "SELECT count(*) FROM example_payments WHERE order_id = %s", (order_id,)
            )
            charges = (await cur.fetchone() or (0,))[0]
            cur = await conn.execute(
                "SELECT count(*) FROM procrastinate_jobs WHERE lock = %s", (f"docket:{order_id}",)
            )
            jobs = (await cur.fetchone() or (0,))[0]
            note = ""
            if row.status == "succeeded":
                done = await wiring.checkout.result(Confirmation, order_id)
                note = "" if done is None else f"{done.payment_id} {done.tracking}"
            elif row.error:
                note = row.error.splitlines()[0].split("attempt(s): ", 1)[-1][:60]
            print(f"{order_id:<18} {row.status:<10} {tries:>12} {charges:>8} {jobs:>5}  {note}")
            assert charges <= 1, "charged twice!"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("DOCKET_DATABASE_URL"))
    parser.add_argument("--orders", type=int, default=15)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not args.url:
        parser.error("give --url postgresql://... (or set DOCKET_DATABASE_URL)")
    sys.exit(asyncio.run(main(args.url, args.orders, args.workers)))
