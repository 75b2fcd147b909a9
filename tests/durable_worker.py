"""The step implementations of the durable tests, and a worker process running them.

    python tests/durable_worker.py '<json config>'

Not a test module (pytest does not collect it): ``tests/test_durable.py``
starts it with ``subprocess.Popen``, kills it and starts another; the
in-process tests import :func:`build` from it. The config holds ``url`` (the
Postgres database, whose search_path selects the test's schema), ``gen_dir``
(where the session generated ``tests/protos_durable``), and optionally
``block`` (a step that records its start, then never returns, so that the
test can kill the worker there), ``concurrency``,
``polling``, ``heartbeat``, ``stalled_timeout`` and ``sweep_interval``
(seconds; ``defaults: true`` leaves all four to ``run_worker``),
``pool_timeout`` (seconds the queue's pool waits for a connection),
``pools`` (the largest size of each of its connection pools),
``app_name`` (the ``application_name`` of the worker's connections,
``<app_name>-store`` for its store's, so that a test can terminate them),
and ``trace_file`` (the graphs are then traced, and every span is appended
to that file as it ends, one JSON object a line: see :func:`span_record`).

A Sleep step of an execution whose id starts with ``busy`` holds the event
loop (``time.sleep``) instead of awaiting.

Every side effect a test counts is a row of ``durable_effects`` (Postgres)
or an entry of :class:`MemoryEffects` (in process): ``(execution id, what)``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from docket_runtime import Events, context
from docket_runtime.stores import Store

EFFECTS_TABLE = (
    "CREATE TABLE IF NOT EXISTS durable_effects ("
    " id bigserial PRIMARY KEY, execution_id text NOT NULL, what text NOT NULL,"
    " pid integer NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())"
)


class Effects(Protocol):
    """Where steps record the side effects that a test counts."""

    async def add(self, execution_id: str, what: str) -> None: ...


class MemoryEffects:
    """Side effects in a list, for in-process tests."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str]] = []

    async def add(self, execution_id: str, what: str) -> None:
        self.rows.append((execution_id, what))

    def count(self, execution_id: str, what: str) -> int:
        return sum(1 for row in self.rows if row == (execution_id, what))


class PgEffects:
    """Side effects as rows of ``durable_effects``, committed before the step goes on.

    A write whose connection was terminated is tried again (the tests drop
    connections on purpose); a unique-key conflict on a second try means the
    first one got through, one on the first try is a real duplicate and raises.
    """

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    async def add(self, execution_id: str, what: str) -> None:
        import psycopg

        for attempt in range(1, 6):
            try:
                async with self.pool.connection() as conn:
                    await conn.execute(
                        "INSERT INTO durable_effects (execution_id, what, pid) VALUES (%s, %s, %s)",
                        (execution_id, what, os.getpid()),
                    )
                return
            except psycopg.errors.UniqueViolation:
                if attempt == 1:
                    raise
                return
            except psycopg.OperationalError:
                if attempt == 5:
                    raise
                await asyncio.sleep(0.1 * attempt)


def build(
    store: Store,
    effects: Effects,
    *,
    block: Iterable[str] = (),
    durable_all: bool = False,
    events: Sequence[Events] = (),
) -> Any:
    """A registry with every graph of ``durabletest.orders`` bound to ``store``.

    ``durable_all`` registers Delivery in durable mode for every step (its
    Check step then retries through the queue rather than in memory).
    ``events`` are bound to every graph (a ``Tracing`` in the tracing tests).
    """
    dk = importlib.import_module("durabletest.orders_docket")
    pb = importlib.import_module("durabletest.orders_pb2")

    from docket_runtime.durable import Registry

    blocked = frozenset(block)

    async def hold(what: str) -> None:
        if what in blocked:
            await effects.add(context().execution_id, f"{what}:blocked")
            await asyncio.Event().wait()  # until the test kills the process

    class OrderSteps:
        async def validate(self, order: Any, /) -> Any:
            if order.amount_cents <= 0:
                raise ValueError(f"amount must be positive, got {order.amount_cents}")
            return pb.ValidOrder(order_id=order.order_id, amount_cents=order.amount_cents)

        async def charge_card(self, valid_order: Any, /) -> Any:
            await hold("ChargeCard")
            await effects.add(context().execution_id, "ChargeCard")
            return pb.Charge(charge_id=f"ch-{valid_order.order_id}", amount_cents=1)

        async def ship(self, order: Any, charge: Any, /) -> Any:
            await hold("Ship")
            ctx = context()
            if order.order_id.startswith("flaky") and ctx.attempt <= 2:
                await effects.add(ctx.execution_id, f"Ship:failed:{ctx.attempt}")
                raise ConnectionError("carrier API unreachable")
            await effects.add(ctx.execution_id, f"Ship:{ctx.attempt}")
            return pb.Shipment(tracking=f"tr-{order.order_id}")

        async def confirm(self, order: Any, charge: Any, shipment: Any, /) -> Any:
            return pb.Confirmation(
                order_id=order.order_id, charge_id=charge.charge_id, tracking=shipment.tracking
            )

    class FulfilmentSteps:
        async def pack(self, valid_order: Any, /) -> Any:
            await effects.add(context().execution_id, "Pack")
            return pb.Parcel(order_id=valid_order.order_id, weight=3)

        async def print_label(self, parcel: Any, /) -> Any:
            ctx = context()
            await effects.add(ctx.execution_id, f"PrintLabel:{ctx.attempt}")
            if parcel.order_id.startswith("label-flaky") and ctx.attempt == 1:
                raise ConnectionError("label printer offline")
            return pb.ShippingLabel(code=f"L-{parcel.order_id}")

    class DeliverySteps:
        async def check(self, order: Any, /) -> Any:
            ctx = context()
            await effects.add(ctx.execution_id, f"Check:{ctx.attempt}")
            if order.order_id.startswith("check-flaky") and ctx.attempt == 1:
                raise ConnectionError("address service down")
            return pb.ValidOrder(order_id=order.order_id, amount_cents=order.amount_cents)

        async def notify(self, shipping_label: Any, /) -> Any:
            ctx = context()
            await effects.add(ctx.execution_id, f"Notify:{ctx.attempt}")
            if ctx.execution_id.startswith("notify-flaky") and ctx.attempt == 1:
                raise ConnectionError("mail server busy")
            return pb.Notice(text=f"sent {shipping_label.code}")

    class ChainSteps:
        async def first(self, seed: Any, /) -> Any:
            await effects.add(context().execution_id, "First")
            context().hand_off()
            return pb.Part1(value=seed.value + 1)

        async def second(self, part1: Any, /) -> Any:
            await effects.add(context().execution_id, "Second")
            context().hand_off()
            return pb.Part2(value=part1.value * 10)

        async def third(self, part2: Any, /) -> Any:
            await effects.add(context().execution_id, "Third")
            return pb.Report(value=part2.value + 5)

    class TallySteps:
        async def count(self, tally_input: Any, /) -> Any:
            await effects.add(context().execution_id, "Count")
            return pb.Total(count=tally_input.previous + 1)

    class SleeperSteps:
        async def sleep(self, nap: Any, /) -> Any:
            execution_id = context().execution_id
            await effects.add(execution_id, "Sleep:start")
            if execution_id.startswith("busy"):
                time.sleep(nap.seconds)  # holds the event loop, on purpose
            try:
                await asyncio.sleep(0 if execution_id.startswith("busy") else nap.seconds)
            except asyncio.CancelledError:
                await effects.add(execution_id, "Sleep:cancelled")
                raise
            await effects.add(execution_id, "Sleep:end")
            return pb.Woke(text="slept")

        async def after(self, woke: Any, /) -> Any:
            await effects.add(context().execution_id, "After")
            return pb.Woken(text=woke.text)

    registry = Registry(store)
    registry.bind(dk.Orders, OrderSteps(), events=events)
    fulfilment = dk.Fulfilment(FulfilmentSteps(), store=store, record=True, events=events)
    registry.bind(
        dk.Delivery,
        DeliverySteps(),
        durable_all=durable_all,
        subgraphs={"durabletest.Fulfilment": fulfilment},
        events=events,
    )
    registry.bind(dk.Chain, ChainSteps(), events=events)
    registry.bind(dk.Tally, TallySteps(), events=events)
    registry.bind(dk.Sleeper, SleeperSteps(), events=events)
    return registry


async def main(config: dict[str, Any]) -> None:
    """Run one worker until killed (or SIGTERM)."""
    import procrastinate
    from psycopg_pool import AsyncConnectionPool

    from docket_runtime.durable import install, run_worker
    from docket_runtime.stores import open_store

    url = config["url"]
    store_url = url
    if "app_name" in config:
        url = _named(url, config["app_name"])
        store_url = _named(url, f"{config['app_name']}-store")
    pools = config.get("pools")  # the largest size of each connection pool, if given
    if pools is not None:
        store_url = f"{store_url}&pool_max_size={pools}&pool_min_size=1"
    store = await open_store(store_url)
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        url,
        min_size=1,
        max_size=min(4, pools or 4),
        kwargs={"autocommit": True},
        open=False,
        check=AsyncConnectionPool.check_connection,
    )
    await pool.open()
    events = _tracing(config["trace_file"]) if "trace_file" in config else ()
    registry = build(
        store,
        PgEffects(pool),
        block=config.get("block", ()),
        events=events,
    )
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(
            conninfo=url,
            min_size=1,
            max_size=pools or 8,
            timeout=config.get("pool_timeout", 30.0),
        )
    )
    install(app, registry)
    timing: dict[str, float] = {}
    if not config.get("defaults"):
        timing = {
            "heartbeat_interval": config.get("heartbeat", 0.2),
            "stalled_timeout": config.get("stalled_timeout", 1.0),
            "sweep_interval": config.get("sweep_interval", 0.5),
        }
    async with app.open_async():
        await run_worker(
            app,
            registry,
            concurrency=config.get("concurrency", 1),
            polling_interval=config.get("polling", 0.1),
            name=config.get("name", "worker"),
            **timing,  # type: ignore[arg-type]
        )
    await pool.close()
    await store.close()


def _named(url: str, name: str) -> str:
    """``url`` whose connections report ``application_name`` ``name``."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "application_name"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("application_name", name)])))


def _tracing(path: str) -> Sequence[Events]:
    """A Tracing whose spans are written to ``path`` as they end, one JSON object a line."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    from docket_runtime.otel import Tracing

    class JsonLines(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            with open(path, "a") as out:
                for span in spans:
                    out.write(json.dumps(span_record(span)) + "\n")
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLines()))
    return [Tracing(tracer_provider=provider)]


def span_record(span: Any) -> dict[str, Any]:
    """The parts of a finished SDK span the tracing tests compare, as JSON values."""
    context, parent = span.context, span.parent
    return {
        "name": span.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_id": None if parent is None else f"{parent.span_id:016x}",
        "kind": span.kind.name,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
        "events": [event.name for event in span.events],
        "pid": os.getpid(),
    }


if __name__ == "__main__":
    settings = json.loads(sys.argv[1])
    sys.path.insert(0, str(Path(settings["gen_dir"])))
    importlib.invalidate_caches()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(main(settings))
