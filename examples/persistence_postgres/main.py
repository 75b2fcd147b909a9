"""The checkout of examples/persistence in Postgres, recorded, then looked at with plain SQL.

order-2001 goes through; order-2002's card is declined. ChargeCard is
``AT_MOST_ONCE``: a failed charge is not retried, and rerunning the script
does not try it again either (the payment provider may have taken the money
before failing): it reports ``StepClaimed`` until someone checks and calls
``rerun_from``. Every execution and step run is recorded (``record=True``);
the script ends with the three queries from docs/persistence.md.

Generate the code first (from the repository root), then run it twice:

    docket-gen examples/persistence_postgres/protos -o examples/persistence_postgres/gen
    python examples/persistence_postgres/main.py \\
        --url postgresql://postgres@127.0.0.1:5432/test

The tables go into the first schema of the connection's search_path (add
``?options=-csearch_path%3Dmyschema`` to the URL to choose one).
``--release`` forgets order-2002's charge so that it is tried again.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "gen"))

import psycopg
from persistence_postgres import checkout_docket
from persistence_postgres.checkout_pb2 import Customer, FraudScore, Order, Payment, Receipt

from docket_runtime import StepClaimed, StepFailed
from docket_runtime.stores import connect

QUERIES = {
    "A field of every kept charge": """\
SELECT execution_id,
       output_json->>'payment_id' AS payment_id,
       (output_json->>'amount_cents')::bigint AS cents,
       created_at
FROM docket_results
WHERE step = 'ChargeCard'
ORDER BY created_at DESC
LIMIT 20""",
    "What happened to one execution": """\
SELECT step, status, attempts, round(duration_ms::numeric, 1) AS ms, owner,
       (regexp_match(error, '([^\\n]+)\\n*$'))[1] AS error
FROM docket_step_runs
WHERE execution_id = 'order-2002'
ORDER BY started_at""",
    "Step runs that did not succeed (failed, or never reported back)": """\
SELECT execution_id, step, status, attempts, owner, now() - started_at AS since
FROM docket_step_runs
WHERE status <> 'succeeded'
ORDER BY started_at""",
}


class CardDeclined(Exception):
    """The payment provider said no."""


class CheckoutSteps(checkout_docket.CheckoutSteps):
    def __init__(self) -> None:
        self.ran: list[str] = []

    async def score_fraud(self, customer: Customer, /) -> FraudScore:
        self.ran.append("ScoreFraud")
        await asyncio.sleep(0.2)  # the expensive model call
        return FraudScore(risk=0.02, model="fraud-v1")

    async def charge_card(self, order: Order, score: FraudScore, /) -> Payment:
        self.ran.append("ChargeCard")
        if order.amount_cents > 100_000:
            raise CardDeclined(f"insufficient funds for {order.amount_cents / 100:.2f}")
        return Payment(
            payment_id=f"pay_{order.order_id}", amount_cents=order.amount_cents, risk=score.risk
        )

    async def write_receipt(self, order: Order, payment: Payment, /) -> Receipt:
        self.ran.append("WriteReceipt")
        return Receipt(order_id=order.order_id, text=f"paid {payment.amount_cents / 100:.2f}")


async def main(url: str, release: bool) -> None:
    store = await connect(url)
    async with store:
        applied = await store.migrate()  # what `docketctl db migrate --url ...` does
        print(f"store: {store.url}; migrations applied now: {applied or 'none (up to date)'}\n")
        steps = CheckoutSteps()
        graph = checkout_docket.Checkout(steps, store=store, record=True)
        if release:
            print(f"released: {await graph.rerun_from('ChargeCard', 'order-2002')}\n")
        customer = Customer(email="ada@example.com", country="GB")
        for order in (
            Order(order_id="order-2001", amount_cents=4200),
            Order(order_id="order-2002", amount_cents=250_000),
        ):
            steps.ran.clear()
            try:
                receipt = await graph.run(
                    Receipt, order=order, customer=customer, execution_id=order.order_id
                )
                outcome = receipt.text
            except StepFailed as failed:
                outcome = f"StepFailed: {failed}"
            except StepClaimed as claimed:
                outcome = f"StepClaimed: {claimed}"
            print(f"{order.order_id}: ran {', '.join(steps.ran) or 'nothing'}\n    {outcome}\n")

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for title, query in QUERIES.items():
            print(f"-- {title}\n{query};\n")
            cur = await conn.execute(query.encode())
            names = [column.name for column in cur.description or ()]
            print("    " + " | ".join(names))
            for row in await cur.fetchall():
                print("    " + " | ".join("" if v is None else str(v) for v in row))
            print()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", default="postgresql://postgres@127.0.0.1:5432/test", help="a Postgres URL"
    )
    parser.add_argument("--release", action="store_true", help="let order-2002 be charged again")
    args = parser.parse_args()
    asyncio.run(main(args.url, args.release))
