"""The steps of the Checkout graph."""

from __future__ import annotations

from shop_service.gen.shop.v1 import checkout_docket
from shop_service.gen.shop.v1.checkout_pb2 import Order, Quote, Receipt
from shop_service.gen.shop.v1.money_pb2 import Money

PRICES = {"book": 1200, "pen": 150}


class CheckoutSteps(checkout_docket.CheckoutSteps):
    """Prices from a table; the payment provider is pretended."""

    async def price(self, order: Order, /) -> Quote:
        cents = sum(PRICES[sku] for sku in order.skus)
        return Quote(order_id=order.order_id, total=Money(cents=cents, currency="EUR"))

    async def charge(self, quote: Quote, /) -> Receipt:
        return Receipt(order_id=quote.order_id, charged=quote.total)
