"""The cost of checking (and encrypting) a stored payload, per row, against reading it plain.

    python bench/payload.py [--rows 20000] [--rounds 5]

A cache hit decodes one row; before checksums it was ``cls.FromString(row.output)``
(the baseline, timed in the same process). ``checked`` is what a hit does now
without a codec (the checksum of the bytes and of the canonical JSON column,
then the parse); ``encrypted`` with an ``AesGcmCodec`` bound. The write side
(``encode``: serialise, render JSON, checksum, encrypt) is timed the same way
against serialise plus render, what a write did before. Two messages: a small
one (a ``google.protobuf.Field`` of 7 fields) and one of about 10 KB.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from google.protobuf import json_format, type_pb2

from docket_runtime._persistence import decode, encode
from docket_runtime.codec import AesGcmCodec
from docket_runtime.plan import CachePolicy, CacheScope, Step

STEP = Step(
    name="Bench",
    method="bench",
    output="google.protobuf.Field",
    cache=CachePolicy(scope=CacheScope.WORKFLOW),
)
CODEC = AesGcmCodec({"k1": bytes(32)}, cache_secret=b"bench cache secret")


def messages() -> dict[str, type_pb2.Field]:
    small = type_pb2.Field(
        kind=type_pb2.Field.TYPE_STRING,
        cardinality=type_pb2.Field.CARDINALITY_OPTIONAL,
        number=7,
        name="amount_cents",
        type_url="type.googleapis.com/shop.Money",
        json_name="amountCents",
        default_value="0",
    )
    large = type_pb2.Field(name="blob", default_value="x" * 10_000, number=1)
    return {"small": small, "10 KB": large}


def baseline_write(message: type_pb2.Field) -> tuple[bytes, str]:
    """What a write did before checks: serialise, render JSON."""
    rendering = json_format.MessageToJson(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        indent=None,
        sort_keys=True,
    )
    return message.SerializeToString(deterministic=True), rendering


def per_row(rows: int, rounds: int, call: Callable[[], Any]) -> float:
    """Median microseconds per call over ``rounds`` rounds of ``rows`` calls."""
    medians = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(rows):
            call()
        medians.append((time.perf_counter() - start) / rows * 1e6)
    return statistics.median(medians)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    n, rounds = args.rows, args.rounds
    version = ".".join(map(str, sys.version_info[:3]))
    print(f"Python {version}, {n} rows x {rounds} rounds, median µs per row")
    print(f"{'':22}{'baseline':>10}{'checked':>10}{'ratio':>8}{'encrypted':>11}{'ratio':>8}")
    for label, message in messages().items():
        cls = type(message)
        plain_row = encode(STEP, "k", "workflow", "e", message, graph="g", codec=None)
        secret_row = encode(STEP, "k", "workflow", "e", message, graph="g", codec=CODEC)
        assert decode(plain_row, cls, None) == message == decode(secret_row, cls, CODEC)
        raw = message.SerializeToString(deterministic=True)
        lines: dict[str, tuple[Callable[[], Any], ...]] = {
            "read": (
                partial(cls.FromString, raw),
                partial(decode, plain_row, cls, None),
                partial(decode, secret_row, cls, CODEC),
            ),
            "write": (
                partial(baseline_write, message),
                partial(encode, STEP, "k", "workflow", "e", message, graph="g", codec=None),
                partial(encode, STEP, "k", "workflow", "e", message, graph="g", codec=CODEC),
            ),
        }
        for side, (base, checked, encrypted) in lines.items():
            b, c, e = (per_row(n, rounds, call) for call in (base, checked, encrypted))
            name = f"{side} {label}"
            print(f"{name:22}{b:10.2f}{c:10.2f}{c / b:7.2f}x{e:11.2f}{e / b:7.2f}x")


if __name__ == "__main__":
    main()
