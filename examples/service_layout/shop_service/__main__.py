"""Run one checkout: ``python -m shop_service`` (generate first: see pyproject.toml)."""

from __future__ import annotations

import asyncio

from shop_service import VERSION
from shop_service.gen.shop.v1 import checkout_docket
from shop_service.gen.shop.v1.checkout_pb2 import Order, Receipt
from shop_service.steps import CheckoutSteps


async def main() -> None:
    graph = checkout_docket.Checkout(CheckoutSteps())
    order = Order(order_id="o-1", skus=["book", "pen"])
    receipt = await graph.run(Receipt, order=order)
    money = receipt.charged
    print(f"shop-service {VERSION}: {receipt.order_id}", end=" ")
    print(f"charged {money.cents} {money.currency}")


if __name__ == "__main__":
    asyncio.run(main())
