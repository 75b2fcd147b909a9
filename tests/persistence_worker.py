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


def main() -> None:
    mode, config = sys.argv[1], json.loads(sys.argv[2])
    sys.path.insert(0, config["gen_dir"])
    pb = importlib.import_module("testgraphs.orders_pb2")
    dk = importlib.import_module("testgraphs.orders_docket")
    runner = run_order if mode == "order" else run_race
    asyncio.run(runner(config, pb, dk))


if __name__ == "__main__":
    main()
