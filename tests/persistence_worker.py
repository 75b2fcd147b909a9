"""A separate process for the persistence tests: runs the generated Orders graph on a store.

    python tests/persistence_worker.py order '<json config>'
    python tests/persistence_worker.py race '<json config>'

Not a test module (pytest does not collect it): ``tests/test_persistence.py``
starts it with ``subprocess.Popen``, kills it, races two of it. The config
always holds ``url`` (the store), ``gen_dir`` (where the test session
generated ``tests/protos``), ``owner`` (the claim owner) and ``workdir``
(files shared with the test).

``order``: one execution ``execution_id`` of Orders up to Confirmation. Each
step appends ``start <Step>`` and ``done <Step>`` lines to
``workdir/effects.log`` (a side effect the test counts); the step named by
``block`` logs its start, then waits forever (the test kills the process).
Prints one JSON line: ``{"confirmation": {...}}`` or ``{"claimed": {...}}``.

``batch``: one batch ``b`` of Orders up to Charge over ``items`` orders
(``o-0``...), ``concurrency`` at a time, recorded. ChargeCard's side effect is
an INSERT into ``batch_effects`` (UNIQUE order id) in the store's database;
the orders of ``hold_after_effect`` then wait forever (killed after the
effect, before the result is saved), and from item ``hold_claims_from`` on,
the claim is held between its INSERT and the step's start (killed with the
claim ``claimed``). Prints nothing; the test kills it.

``race``: runs Orders up to Charge for every id of ``held``, ``racing`` and
``after`` at once, after a barrier (``workdir/ready-<owner>``, then wait for
``workdir/go``). ChargeCard's side effect is an INSERT into ``race_effects``.
A ``held`` charge waits for ``workdir/release`` before it returns; an
``after`` id's Validate lets the first process to arrive through and makes the
second wait until the first one's ChargeCard is recorded ``succeeded``. Prints
one JSON line per id as it ends: ``{"id", "charge"}`` or ``{"id", "claimed"}``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import psycopg
from google.protobuf import json_format

from docket_runtime import StepClaimed
from docket_runtime.stores import open_store

POLL = 0.005


def emit(payload: dict[str, Any]) -> None:
    print(json.dumps(payload), flush=True)


async def wait_for_file(path: Path) -> None:
    while not path.exists():
        await asyncio.sleep(POLL)


class FileOrderSteps:
    """The Orders steps, logging every start and end to ``effects.log``."""

    def __init__(self, pb: Any, log: Path, owner: str, block: str) -> None:
        self.pb = pb
        self.log = log
        self.owner = owner
        self.block = block

    async def _effect(self, step: str) -> None:
        with self.log.open("a") as out:
            out.write(f"start {step}\n")
        if step == self.block:
            await asyncio.Event().wait()  # until the test kills this process
        with self.log.open("a") as out:
            out.write(f"done {step}\n")

    async def validate(self, order: Any, /) -> Any:
        await self._effect("Validate")
        return self.pb.ValidOrder(
            order_id=order.order_id, amount_cents=order.amount_cents, card=order.card
        )

    async def charge_card(self, order: Any, /) -> Any:
        await self._effect("ChargeCard")
        return self.pb.Charge(
            charge_id=f"ch-{self.owner}-{order.order_id}", amount_cents=order.amount_cents
        )

    async def ship(self, order: Any, charge: Any, /) -> Any:
        await self._effect("Ship")
        return self.pb.Shipment(tracking=f"tr-{self.owner}-{order.order_id}")

    async def confirm(self, order: Any, charge: Any, shipment: Any, /) -> Any:
        await self._effect("Confirm")
        return self.pb.Confirmation(
            order_id=order.order_id, charge_id=charge.charge_id, tracking=shipment.tracking
        )


async def run_order(config: dict[str, Any], pb: Any, dk: Any) -> None:
    workdir = Path(config["workdir"])
    steps = FileOrderSteps(pb, workdir / "effects.log", config["owner"], config.get("block", ""))
    async with await open_store(config["url"]) as store:
        graph = dk.Orders(steps, store=store, record=True, owner=config["owner"])
        order = pb.Order(order_id="o-1", amount_cents=1250, card="4242")
        try:
            confirmation = await graph.run(
                pb.Confirmation, order=order, execution_id=config["execution_id"]
            )
        except StepClaimed as claimed:
            what = {"step": claimed.step, "owner": claimed.owner, "status": claimed.status}
            emit({"claimed": what})
            return
    as_dict = json_format.MessageToDict(confirmation, preserving_proto_field_name=True)
    emit({"confirmation": as_dict})


class RacingSteps:
    """The Orders steps of the race: the charge is a row in ``race_effects``."""

    def __init__(self, pb: Any, conn: psycopg.AsyncConnection[Any], config: dict[str, Any]):
        self.pb = pb
        self.conn = conn
        self.owner: str = config["owner"]
        self.held = set(config["held"])
        self.after = set(config["after"])
        self.release = Path(config["workdir"]) / "release"

    async def validate(self, order: Any, /) -> Any:
        if order.order_id in self.after:
            cur = await self.conn.execute(
                "INSERT INTO race_arrivals (execution_id, owner) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING",
                (order.order_id, self.owner),
            )
            if cur.rowcount == 0:  # second to arrive: let the first one finish its charge
                while not await self._charged(order.order_id):
                    await asyncio.sleep(POLL)
        return self.pb.ValidOrder(order_id=order.order_id, amount_cents=order.amount_cents)

    async def _charged(self, execution_id: str) -> bool:
        cur = await self.conn.execute(
            "SELECT 1 FROM docket_step_runs WHERE execution_id = %s AND step = 'ChargeCard' "
            "AND status = 'succeeded'",
            (execution_id,),
        )
        return await cur.fetchone() is not None

    async def charge_card(self, order: Any, /) -> Any:
        await self.conn.execute(
            "INSERT INTO race_effects (execution_id, owner) VALUES (%s, %s)",
            (order.order_id, self.owner),
        )
        if order.order_id in self.held:
            await wait_for_file(self.release)
        return self.pb.Charge(charge_id=f"{self.owner}:{order.order_id}")

    async def ship(self, order: Any, charge: Any, /) -> Any:
        raise AssertionError("not part of the race")

    async def confirm(self, order: Any, charge: Any, shipment: Any, /) -> Any:
        raise AssertionError("not part of the race")


async def run_race(config: dict[str, Any], pb: Any, dk: Any) -> None:
    workdir = Path(config["workdir"])
    owner = config["owner"]
    ids = [*config["held"], *config["racing"], *config["after"]]
    conn = await psycopg.AsyncConnection.connect(config["url"], autocommit=True)
    try:
        async with await open_store(config["url"]) as store:
            graph = dk.Orders(RacingSteps(pb, conn, config), store=store, owner=owner)

            async def one(execution_id: str) -> None:
                order = pb.Order(order_id=execution_id, amount_cents=100)
                try:
                    charge = await graph.run(pb.Charge, order=order, execution_id=execution_id)
                except StepClaimed as claimed:
                    emit(
                        {
                            "id": execution_id,
                            "claimed": {"owner": claimed.owner, "status": claimed.status},
                        }
                    )
                else:
                    emit({"id": execution_id, "charge": charge.charge_id})

            (workdir / f"ready-{owner}").touch()
            await wait_for_file(workdir / "go")
            await asyncio.gather(*(one(i) for i in ids))
    finally:
        await conn.close()


class BatchEffectSteps(FileOrderSteps):
    """The Orders steps of the ``batch`` mode: the charge is a row in ``batch_effects``."""

    def __init__(self, pb: Any, config: dict[str, Any]) -> None:
        super().__init__(pb, Path(config["workdir"]) / "effects.log", "batch", "")
        self.url: str = config["url"]
        self.hold = set(config["hold_after_effect"])

    async def charge_card(self, order: Any, /) -> Any:
        if self.url.startswith("sqlite:///"):
            with sqlite3.connect(self.url.removeprefix("sqlite:///"), timeout=10) as conn:
                conn.execute("INSERT INTO batch_effects (order_id) VALUES (?)", (order.order_id,))
        else:
            async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                await conn.execute(
                    "INSERT INTO batch_effects (order_id) VALUES (%s)", (order.order_id,)
                )
        if order.order_id in self.hold:
            await asyncio.Event().wait()  # until the test kills this process
        return self.pb.Charge(charge_id=f"ch-{order.order_id}", amount_cents=order.amount_cents)


class HeldClaims:
    """A real store, except that the claims of items from ``first`` on are never started:
    the process dies holding them ``claimed``."""

    def __init__(self, store: Any, first: int) -> None:
        self._store = store
        self.first = first

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def step_started(self, execution_id: str, step: str, **kwargs: Any) -> int:
        if kwargs.get("claimed") and int(execution_id.rpartition("/")[2]) >= self.first:
            await asyncio.Event().wait()
        count: int = await self._store.step_started(execution_id, step, **kwargs)
        return count


async def run_batch(config: dict[str, Any], pb: Any, dk: Any) -> None:
    orders = [
        pb.Order(order_id=f"o-{i}", amount_cents=1250, card="4242") for i in range(config["items"])
    ]
    async with await open_store(config["url"]) as store:
        held = HeldClaims(store, config["hold_claims_from"])
        graph = dk.Orders(BatchEffectSteps(pb, config), store=held, record=True)
        await graph.run_batch(
            pb.Charge, orders, execution_id="b", max_concurrency=config["concurrency"]
        )


def main() -> None:
    mode, config = sys.argv[1], json.loads(sys.argv[2])
    sys.path.insert(0, config["gen_dir"])
    pb = importlib.import_module("testgraphs.orders_pb2")
    dk = importlib.import_module("testgraphs.orders_docket")
    runner = {"order": run_order, "race": run_race, "batch": run_batch}[mode]
    asyncio.run(runner(config, pb, dk))


if __name__ == "__main__":
    main()
