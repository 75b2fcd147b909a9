"""Precious results kept in a SQLite file: run it twice, the card is charged once.

Two orders of one customer go through a checkout: ScoreFraud (expensive,
cached by content for a day: the second order of the same customer reuses
the score), ChargeCard (precious: a checkpoint per execution, claimed before it
runs, never run twice for one execution id) and WriteReceipt (cheap, always
recomputed). The second run of this script reruns the same execution ids: only
the receipts are written again; the charges are read back from the file.

Generate the code first (from the repository root):

    docket-gen examples/persistence/protos -o examples/persistence/gen
    python examples/persistence/main.py          # charges both orders
    python examples/persistence/main.py          # charges nothing: checkpoints
    python examples/persistence/main.py --reset  # delete the database, start over

The database is ``checkout.db`` next to this file (``--db`` to put it elsewhere);
look inside with ``sqlite3 examples/persistence/checkout.db``.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "gen"))

from persistence import checkout_docket
from persistence.checkout_pb2 import Customer, FraudScore, Order, Payment, Receipt

from docket_runtime.stores import open_store

HERE = Path(__file__).resolve().parent

QUERY = """\
SELECT execution_id,
       json_extract(output_json, '$.payment_id') AS payment_id,
       CAST(json_extract(output_json, '$.amount_cents') AS INTEGER) AS cents
FROM docket_results
WHERE step = 'ChargeCard'
ORDER BY execution_id"""


class CheckoutSteps(checkout_docket.CheckoutSteps):
    """Pretends to call a fraud model and a payment provider; remembers what ran."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    async def score_fraud(self, customer: Customer, /) -> FraudScore:
        self.ran.append("ScoreFraud")
        await asyncio.sleep(0.2)  # the expensive model call
        return FraudScore(risk=0.02 if customer.country == "GB" else 0.10, model="fraud-v1")

    async def charge_card(self, order: Order, score: FraudScore, /) -> Payment:
        self.ran.append("ChargeCard")
        print(f"    charging {order.amount_cents / 100:.2f} for {order.order_id}")
        return Payment(
            payment_id=f"pay_{order.order_id}", amount_cents=order.amount_cents, risk=score.risk
        )

    async def write_receipt(self, order: Order, payment: Payment, /) -> Receipt:
        self.ran.append("WriteReceipt")
        text = f"{order.order_id}: paid {payment.amount_cents / 100:.2f} ({payment.payment_id})"
        return Receipt(order_id=order.order_id, text=text)


def not_run(ran: list[str]) -> list[tuple[str, str]]:
    """Why each step of the Receipt target that did not run was not run."""
    notes = []
    if "ChargeCard" not in ran:
        notes.append(("from store", "ChargeCard, this execution's checkpoint: no second charge"))
    if "ScoreFraud" not in ran:
        if "ChargeCard" in ran:
            notes.append(("from store", "ScoreFraud, the cached score of this customer (GLOBAL)"))
        else:
            notes.append(("not needed", "ScoreFraud, as only ChargeCard needs it"))
    return notes


async def main(db: Path) -> None:
    # Creates the file and its tables on first use (`docketctl db migrate` does the same).
    store = await open_store(f"sqlite:///{db}", migrate=True)
    async with store:
        steps = CheckoutSteps()
        graph = checkout_docket.Checkout(steps, store=store)
        customer = Customer(email="ada@example.com", country="GB")
        for order in (
            Order(order_id="order-1001", amount_cents=4200),
            Order(order_id="order-1002", amount_cents=1999),
        ):
            print(f"{order.order_id}:")
            steps.ran.clear()
            receipt = await graph.run(
                Receipt, order=order, customer=customer, execution_id=order.order_id
            )
            print(f"    {'ran:':<12} {', '.join(steps.ran)}")
            for label, note in not_run(steps.ran):
                print(f"    {label + ':':<12} {note}")
            print(f"    {'receipt:':<12} {receipt.text}")
        # Read a kept result without computing anything.
        payment = await graph.fetch(Payment, execution_id="order-1001")
        found = payment.payment_id if payment else None
        print(f"\nfetch(Payment, execution_id='order-1001') -> {found}")

    print(f"\n{QUERY};\n")
    with sqlite3.connect(db) as conn:
        for row in conn.execute(QUERY):
            print("    " + " | ".join(str(v) for v in row))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=HERE / "checkout.db", help="the SQLite file")
    parser.add_argument("--reset", action="store_true", help="delete the database first")
    args = parser.parse_args()
    if args.reset:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{args.db}{suffix}").unlink(missing_ok=True)
    print(f"store: sqlite:///{args.db}\n")
    asyncio.run(main(args.db))
