"""A durable worker for the checkout graph: resumes executions, retries, recovers.

    python examples/durable_orders/worker.py --url postgresql://... [--concurrency 4]

Stop it with Ctrl-C (or SIGTERM): running executions finish first. Kill it
with -9 instead and start another: the jobs it held are swept back to the
queue within ``--stalled-timeout`` seconds and resumed from their checkpoints.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os

from checkout import wire

from docket_runtime.durable import run_worker


async def main(
    url: str, concurrency: int, stalled_timeout: float, failure_rate: float, charge_delay: float
) -> None:
    wiring = await wire(url, failure_rate=failure_rate, charge_delay=charge_delay)
    try:
        async with wiring.app.open_async():
            await run_worker(
                wiring.app,
                wiring.registry,
                concurrency=concurrency,
                polling_interval=0.5,  # finds the jobs the stalled-jobs sweep puts back
                heartbeat_interval=2.0,
                stalled_timeout=stalled_timeout,
                sweep_interval=stalled_timeout / 2,
            )
    finally:
        await wiring.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("DOCKET_DATABASE_URL"))
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--stalled-timeout", type=float, default=10.0)
    parser.add_argument("--failure-rate", type=float, default=0.3, help="gateway timeouts")
    parser.add_argument(
        "--charge-delay", type=float, default=0.02, help="seconds a charge takes (to watch one)"
    )
    args = parser.parse_args()
    if not args.url:
        parser.error("give --url postgresql://... (or set DOCKET_DATABASE_URL)")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("docket").setLevel(logging.INFO)
    asyncio.run(
        main(args.url, args.concurrency, args.stalled_timeout, args.failure_rate, args.charge_delay)
    )
