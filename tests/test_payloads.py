"""Stored payloads: damaged rows are detected, and a payload codec keeps them secret.

The graph is ``tests/protos/testgraphs/vault.proto``: ``Card`` is a sensitive
message (a graph input), ``Charge`` a sensitive step whose ``Payment`` repeats
the card number, ``Tokenize`` a plain checkpointed step and ``Digest`` a
``GLOBAL`` one fed the card. Every test runs on SQLite and on a real Postgres
schema (``db_url``) and looks at the rows with plain SQL (``raw_sql``), as
someone reading the tables would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import importlib
import json
import logging
import sys
from collections import Counter
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from conftest import raw_sql

from docket_runtime import StepClaimed
from docket_runtime._persistence import input_key, step_keys
from docket_runtime.codec import AesGcmCodec, CorruptPayload, MissingKey, PayloadCodec
from docket_runtime.durable import Registry
from docket_runtime.durable._record import record_execution
from docket_runtime.durable._resume import Continue, Done, Failed, resume
from docket_runtime.stores import Store, open_store

T = TypeVar("T")

CARD = "4111111111111111"
"""The card number that must never be readable in the database."""

K1, K2 = bytes(range(32)), bytes(range(1, 33))
SECRET = b"cache secret, 16+ bytes"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 30.0))


def codec(*ids: str, secret: bytes = SECRET) -> AesGcmCodec:
    keys = {"k1": K1, "k2": K2}
    return AesGcmCodec({i: keys[i] for i in ids}, cache_secret=secret)


@pytest.fixture(scope="module")
def pb(gen_dir: Path) -> Any:
    return importlib.import_module("testgraphs.vault_pb2")


@pytest.fixture(scope="module")
def dk(gen_dir: Path) -> Any:
    return importlib.import_module("testgraphs.vault_docket")


class VaultSteps:
    """Counts calls; every computed value is new, so a recomputation shows."""

    def __init__(self, pb: Any) -> None:
        self.pb = pb
        self.calls: Counter[str] = Counter()

    async def tokenize(self, card: Any, /) -> Any:
        self.calls["Tokenize"] += 1
        return self.pb.Token(token=f"tok-{self.calls['Tokenize']}", last4=card.number[-4:])

    async def digest(self, card: Any, /) -> Any:
        self.calls["Digest"] += 1
        return self.pb.Fingerprint(digest=hashlib.sha256(card.number.encode()).hexdigest())

    async def charge(self, token: Any, /) -> Any:
        self.calls["Charge"] += 1
        n = self.calls["Charge"]
        return self.pb.Payment(payment_id=f"pay-{n}", card_number=CARD, amount_cents=1250)


class Vault:
    """The vault graph on the store at ``url``, opened per call with ``codec``."""

    def __init__(self, url: str, pb: Any, dk: Any) -> None:
        self.url, self.pb, self.dk = url, pb, dk
        self.steps = VaultSteps(pb)
        self.card = pb.Card(number=CARD, holder="A. Holder")

    async def store(self, with_codec: PayloadCodec | None = None) -> Store:
        return await open_store(self.url, migrate=True, codec=with_codec)

    def run(self, target: str, execution_id: str, with_codec: PayloadCodec | None = None) -> Any:
        async def body() -> Any:
            async with await self.store(with_codec) as store:
                graph = self.dk.Vault(self.steps, store=store)
                cls = getattr(self.pb, target)
                return await graph.run(cls, card=self.card, execution_id=execution_id)

        return run(body())

    def fetch(
        self, target: str, *args: Any, with_codec: PayloadCodec | None = None, **kw: Any
    ) -> Any:
        async def body() -> Any:
            async with await self.store(with_codec) as store:
                graph = self.dk.Vault(self.steps, store=store)
                return await graph.fetch(getattr(self.pb, target), *args, **kw)

        return run(body())

    def row(self, step: str) -> tuple[bytes, str]:
        [(output, rendering)] = raw_sql(
            self.url, "SELECT output, output_json FROM docket_results WHERE step = ?", (step,)
        )
        text = rendering if isinstance(rendering, str) else json.dumps(rendering)
        return bytes(output), text

    def damage(self, step: str, output: bytes | None = None, rendering: str | None = None) -> None:
        if output is not None:
            raw_sql(self.url, "UPDATE docket_results SET output = ? WHERE step = ?", (output, step))
        if rendering is not None:
            cast = "::jsonb" if not self.url.startswith("sqlite") else ""
            query = f"UPDATE docket_results SET output_json = ?{cast} WHERE step = ?"
            raw_sql(self.url, query, (rendering, step))


@pytest.fixture
def vault(db_url: str, pb: Any, dk: Any) -> Vault:
    return Vault(db_url, pb, dk)


# Defect: a damaged row used to be read as a valid message ---------------------------------------

DAMAGES = ["empty", "truncated", "other type, checked", "other type, plain", "json"]


def _damaged(vault: Vault, kind: str) -> tuple[bytes | None, str | None]:
    output, _ = vault.row("Tokenize")
    if kind == "empty":
        return b"", None
    if kind == "truncated":
        return output[: len(output) // 2], None
    if kind == "other type, checked":  # the Digest row's bytes, checksum and all
        return vault.row("Digest")[0], None
    if kind == "other type, plain":  # a Fingerprint's proto bytes, no checksum
        return vault.pb.Fingerprint(digest="f" * 12).SerializeToString(), None
    assert kind == "json"
    return None, json.dumps({"token": "forged", "last4": "0000"})


@pytest.mark.parametrize("kind", DAMAGES)
def test_a_damaged_checkpoint_is_recomputed_not_trusted(
    vault: Vault, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    first = vault.run("Token", "e-1")
    vault.run("Fingerprint", "e-1")
    assert vault.steps.calls["Tokenize"] == 1
    output, rendering = _damaged(vault, kind)
    vault.damage("Tokenize", output, rendering)

    with caplog.at_level(logging.WARNING, logger="docket.persistence"):
        again = vault.run("Token", "e-1")
    # Recomputed, not read: a new token, and the damage named in the log.
    assert vault.steps.calls["Tokenize"] == 2
    assert again != first and again.token == "tok-2"
    assert any("damaged" in r.getMessage() for r in caplog.records), caplog.text
    # The recomputed result replaced the row: the next run reads it.
    assert vault.run("Token", "e-1") == again
    assert vault.steps.calls["Tokenize"] == 2


def test_a_row_written_before_checksums_is_still_read(vault: Vault) -> None:
    first = vault.run("Token", "e-1")
    output, _ = vault.row("Tokenize")
    plain = first.SerializeToString(deterministic=True)
    assert output.startswith(plain) and output != plain  # the checksum trailer follows
    vault.damage("Tokenize", plain)  # what a release without checksums wrote

    assert vault.run("Token", "e-1") == first
    assert vault.steps.calls["Tokenize"] == 1


def test_the_bytes_column_still_parses_as_the_message_without_a_codec(vault: Vault) -> None:
    first = vault.run("Token", "e-1")
    output, rendering = vault.row("Tokenize")
    parsed = vault.pb.Token.FromString(output)
    parsed.DiscardUnknownFields()
    assert parsed == first
    assert json.loads(rendering) == {"token": "tok-1", "last4": "1111"}


def test_damaged_durable_inputs_fail_the_execution_clearly(vault: Vault) -> None:
    async def body() -> tuple[Any, Any]:
        async with await vault.store() as store:
            registry = Registry(store)
            graph = registry.bind(vault.dk.Vault, vault.steps)
            await record_execution(graph, vault.pb.Token, {"card": vault.card}, execution_id="d-1")
            [(text,)] = raw_sql(
                vault.url, "SELECT inputs FROM docket_executions WHERE execution_id = 'd-1'"
            )
            inputs = json.loads(text) if isinstance(text, str) else text
            inputs["card"]["proto"] = inputs["card"]["proto"][:-8] + "AAAAAAA="
            cast = "::jsonb" if not vault.url.startswith("sqlite") else ""
            raw_sql(
                vault.url,
                f"UPDATE docket_executions SET inputs = ?{cast} WHERE execution_id = 'd-1'",
                (json.dumps(inputs),),
            )
            outcome = await resume(registry, "d-1", stopping=lambda: False)
            return outcome, await store.get_execution("d-1")

    outcome, row = run(body())
    assert isinstance(outcome, Failed)
    assert "cannot read the inputs of execution 'd-1'" in outcome.error
    assert "input 'card' of execution 'd-1'" in outcome.error
    assert row.status == "failed" and vault.steps.calls["Tokenize"] == 0


# The payload codec ------------------------------------------------------------------------------


def _all_rows(url: str) -> list[str]:
    """Every result and execution row, as one text per row (bytes as latin-1), keys included."""
    rows = raw_sql(url, "SELECT key, output, output_json FROM docket_results")
    rows += raw_sql(url, "SELECT execution_id, inputs, error FROM docket_executions")
    return [
        " ".join(
            bytes(v).decode("latin-1") if isinstance(v, bytes | memoryview) else json.dumps(v)
            for v in row
        )
        for row in rows
    ]


def _json(column: Any) -> Any:
    """A JSON column's value: text on SQLite, decoded already by psycopg on Postgres."""
    return json.loads(column) if isinstance(column, str) else column


def test_no_row_holds_the_card_number_with_a_codec(vault: Vault) -> None:
    keys = codec("k1")
    payment = vault.run("Payment", "e-1", keys)
    vault.run("Fingerprint", "e-1", keys)
    assert payment.card_number == CARD
    rows = _all_rows(vault.url)
    # Tokenize, Charge, Digest and the inputs kept under the id (a run without record keeps no
    # execution): the inputs row holds an HMAC of the card and no rendering of it.
    assert len(rows) == 4
    for row in rows:
        assert CARD not in row and CARD[-8:] not in row
    (kept,) = raw_sql(
        vault.url, "SELECT output_json FROM docket_results WHERE step = ?", ("docket.inputs",)
    )
    card = _json(kept[0])["card"]
    assert card["text"] == "hidden"
    plain = hashlib.sha256(vault.card.SerializeToString(deterministic=True)).hexdigest()
    assert card["sha256"] != plain
    # The sensitive step has no JSON rendering; the plain one keeps its queryable JSON.
    assert vault.row("Charge")[1] == "null"
    assert json.loads(vault.row("Tokenize")[1]) == {"token": "tok-1", "last4": "1111"}


def test_without_a_codec_only_the_json_of_sensitive_steps_is_left_out(vault: Vault) -> None:
    vault.run("Payment", "e-1")
    output, rendering = vault.row("Charge")
    assert rendering == "null"
    assert CARD.encode() in output  # no codec: the bytes are the message's
    # The inputs kept under the id: a sensitive type is digested, never rendered.
    (kept,) = raw_sql(
        vault.url, "SELECT output_json FROM docket_results WHERE step = ?", ("docket.inputs",)
    )
    assert CARD not in json.dumps(kept[0]) and _json(kept[0])["card"]["text"] == "hidden"


def test_a_codec_leaves_error_messages_as_they_are(vault: Vault) -> None:
    # "What stays clear": an exception message that quotes an input is stored as it is.
    class Leaky(VaultSteps):
        async def tokenize(self, card: Any, /) -> Any:
            raise ValueError(f"card {card.number} refused")

    async def body() -> None:
        async with await vault.store(codec("k1")) as store:
            graph = vault.dk.Vault(Leaky(vault.pb), store=store, record=True)
            with pytest.raises(Exception, match="refused"):
                await graph.run(vault.pb.Token, card=vault.card, execution_id="leak")

    run(body())
    [(message,)] = raw_sql(
        vault.url, "SELECT error_message FROM docket_step_attempts WHERE execution_id = 'leak'"
    )
    assert message == f"card {CARD} refused"
    [(error,)] = raw_sql(vault.url, "SELECT error FROM docket_executions")
    assert CARD in error


def test_fetch_returns_the_plaintext_with_the_key(vault: Vault) -> None:
    keys = codec("k1")
    payment = vault.run("Payment", "e-1", keys)
    fingerprint = vault.run("Fingerprint", "e-1", keys)
    assert vault.fetch("Payment", execution_id="e-1", with_codec=keys) == payment
    assert vault.fetch("Fingerprint", vault.card, with_codec=keys) == fingerprint


@pytest.mark.parametrize("holder", ["no codec", "another key"])
def test_a_missing_key_is_an_error_naming_it_and_the_row_is_left_alone(
    vault: Vault, holder: str
) -> None:
    vault.run("Payment", "e-1", codec("k1"))
    before = raw_sql(vault.url, "SELECT key, output, output_json FROM docket_results")
    reader = None if holder == "no codec" else codec("k2")

    with pytest.raises(MissingKey, match="key id 'k1'") as fetched:
        vault.fetch("Payment", execution_id="e-1", with_codec=reader)
    assert fetched.value.key_id == "k1"
    # A run that finds the checkpoint fails too, rather than computing it again over it.
    with pytest.raises(MissingKey, match="key id 'k1'"):
        vault.run("Payment", "e-1", reader)
    assert vault.steps.calls["Charge"] == 1
    assert raw_sql(vault.url, "SELECT key, output, output_json FROM docket_results") == before


def test_rotation_writes_with_the_newest_key_and_reads_old_rows(vault: Vault) -> None:
    old = vault.run("Payment", "e-1", codec("k1"))
    rotated = codec("k1", "k2")
    new = vault.run("Payment", "e-2", rotated)
    assert b"k1" in _charge_row(vault, "e-1") and b"k2" in _charge_row(vault, "e-2")
    assert vault.fetch("Payment", execution_id="e-1", with_codec=rotated) == old
    assert vault.fetch("Payment", execution_id="e-2", with_codec=rotated) == new
    # Once k1 is dropped, its rows are unreadable, by name.
    with pytest.raises(MissingKey, match=r"key id 'k1'.*has only 'k2'"):
        vault.fetch("Payment", execution_id="e-1", with_codec=codec("k2"))


def _charge_row(vault: Vault, execution_id: str) -> bytes:
    [(output,)] = raw_sql(
        vault.url,
        "SELECT output FROM docket_results WHERE step = 'Charge' AND execution_id = ?",
        (execution_id,),
    )
    return bytes(output)[:40]


def test_tampered_ciphertext_is_damage_and_recomputed(vault: Vault) -> None:
    keys = codec("k1")
    first = vault.run("Token", "e-1", keys)
    output, _ = vault.row("Tokenize")
    flipped = output[:-1] + bytes([output[-1] ^ 1])
    vault.damage("Tokenize", flipped)
    again = vault.run("Token", "e-1", keys)
    assert again != first and vault.steps.calls["Tokenize"] == 2


def test_global_keys_are_hmacs_that_differ_by_secret(vault: Vault) -> None:
    vault.run("Fingerprint", "e-1", codec("k1", secret=b"a" * 16))
    vault.run("Fingerprint", "e-2", codec("k1", secret=b"b" * 16))
    vault.run("Fingerprint", "e-3")
    keys = sorted(k for (k,) in raw_sql(vault.url, "SELECT key FROM docket_results"))
    step = vault.dk.Vault.plan.step("Digest")
    expected = sorted(
        input_key(step_keys(vault.dk.Vault.plan, step), [vault.card], secret)
        for secret in (codec("k1", secret=b"a" * 16), codec("k1", secret=b"b" * 16), None)
    )
    # Three secrets (none being one), three keys for the same inputs: each ran the step.
    assert keys == expected and len(set(keys)) == 3
    assert vault.steps.calls["Digest"] == 3


def test_durable_inputs_are_encrypted_and_read_back_with_the_key(
    vault: Vault, caplog: pytest.LogCaptureFixture
) -> None:
    keys = codec("k1")

    async def body(with_codec: PayloadCodec | None, execution_id: str, record: bool) -> Any:
        async with await vault.store(with_codec) as store:
            registry = Registry(store)
            graph = registry.bind(vault.dk.Vault, vault.steps)
            if record:
                inputs = {"card": vault.card}
                await record_execution(graph, vault.pb.Payment, inputs, execution_id=execution_id)
                # Enqueued again with the same inputs: recognised as the same (another
                # card would be a ValueError), since the same payload encrypts the same.
                await record_execution(graph, vault.pb.Payment, inputs, execution_id=execution_id)
                other = {"card": vault.pb.Card(number="5500000000000004")}
                with pytest.raises(ValueError, match="was used with other inputs"):
                    await record_execution(
                        graph, vault.pb.Payment, other, execution_id=execution_id
                    )
                return None
            return await resume(registry, execution_id, stopping=lambda: False)

    run(body(keys, "d-1", record=True))
    [(text,)] = raw_sql(vault.url, "SELECT inputs FROM docket_executions")
    inputs = json.loads(text) if isinstance(text, str) else text
    assert set(inputs["card"]) == {"type", "proto"}  # sensitive: no "json"
    assert CARD not in json.dumps(inputs) and CARD.encode() not in _b64(inputs["card"]["proto"])

    # A worker without the key leaves the execution as it is, and says which key.
    before = raw_sql(vault.url, "SELECT status, inputs FROM docket_executions")
    with caplog.at_level(logging.ERROR, logger="docket.durable"):
        outcome = run(body(None, "d-1", record=False))
    assert isinstance(outcome, Continue) and "key id 'k1'" in outcome.reason
    # An error logged that names the key id, as durable.md says.
    [logged] = [r for r in caplog.records if r.name == "docket.durable"]
    assert logged.levelno == logging.ERROR and "key id 'k1'" in logged.getMessage()
    assert logged.getMessage().endswith("; resuming in 60s")
    assert outcome.at is not None
    assert 55 < (outcome.at - datetime.now(UTC)).total_seconds() <= 60
    assert raw_sql(vault.url, "SELECT status, inputs FROM docket_executions") == before

    assert run(body(keys, "d-1", record=False)) == Done("succeeded")
    assert vault.steps.calls["Charge"] == 1

    async def result() -> Any:
        async with await vault.store(keys) as store:
            graph = Registry(store).bind(vault.dk.Vault, vault.steps)
            return await graph.result(vault.pb.Payment, "d-1")

    assert run(result()).card_number == CARD


def _b64(text: str) -> bytes:
    import base64

    return base64.b64decode(text)


def test_aes_gcm_without_cryptography_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # As if the crypto extra were not installed: the import fails.
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)
    with pytest.raises(ImportError) as caught:
        AesGcmCodec({"k": K1}, cache_secret=SECRET)
    assert str(caught.value) == (
        "AesGcmCodec needs the cryptography package: pip install 'docket-proto[crypto]'"
    )


def test_codec_rejects_bad_keys_and_names_damage() -> None:
    with pytest.raises(ValueError, match="16, 24 or 32 bytes"):
        AesGcmCodec({"k": b"short"}, cache_secret=SECRET)
    with pytest.raises(ValueError, match="at least 16 bytes"):
        AesGcmCodec({"k": K1}, cache_secret=b"x")
    with pytest.raises(ValueError, match="at least one key"):
        AesGcmCodec({}, cache_secret=SECRET)
    keys = codec("k1")
    kid, data = keys.encode(b"payload", associated=b"a.Type")
    assert kid == "k1" and keys.decode(kid, data, associated=b"a.Type") == b"payload"
    # Deterministic: the same payload, the same bytes (enqueue compares inputs).
    assert keys.encode(b"payload", associated=b"a.Type") == (kid, data)
    with pytest.raises(CorruptPayload, match="does not authenticate under key 'k1'"):
        keys.decode(kid, data, associated=b"b.Type")
    assert isinstance(keys, PayloadCodec)


# docketctl --------------------------------------------------------------------------------------

KEYS_MODULE = """\
from docket_runtime.codec import AesGcmCodec


def codec():
    return AesGcmCodec({"k1": bytes(range(32))}, cache_secret=b"cache secret, 16+ bytes")


CODEC = codec()
"""


def _ctl(*args: str, codec_env: str | None = None) -> Any:
    from click.testing import CliRunner

    from docket_runtime._cli import docketctl

    env = {"DOCKET_DATABASE_URL": None, "DOCKET_CODEC": codec_env}
    return CliRunner().invoke(docketctl, list(args), catch_exceptions=False, env=env)


def test_docketctl_shows_plaintext_with_the_codec_and_names_a_missing_key(
    vault: Vault, tmp_path: Path
) -> None:
    vault.run("Payment", "e-1", codec("k1"))
    (tmp_path / "vault_keys.py").write_text(KEYS_MODULE)
    show = ["executions", "show", "e-1", "--url", vault.url, "--results", "--json"]
    graph = ["--graph", "testgraphs.vault_docket:Vault", "--path", str(tmp_path)]

    # The codec by option, or by $DOCKET_CODEC, a function or the object: the sensitive result
    # in clear.
    for done in (
        _ctl(*show, *graph, "--codec", "vault_keys:codec"),
        _ctl(*show, *graph, codec_env="vault_keys:codec"),
        _ctl(*show, *graph, "--codec", "vault_keys:CODEC"),
    ):
        assert done.exit_code == 0, done.stderr
        outputs = {r["step"]: r["output"] for r in json.loads(done.stdout)["results"]}
        assert outputs["Charge"] == {
            "payment_id": "pay-1",
            "card_number": CARD,
            "amount_cents": "1250",
        }
        assert outputs["Tokenize"] == {"token": "tok-1", "last4": "1111"}

    # No codec: one line naming the key id, exit 1.
    missing = _ctl(*show, *graph)
    assert missing.exit_code == 1 and missing.stdout == ""
    assert missing.stderr.startswith("docketctl: error: result ")
    assert "key id 'k1'" in missing.stderr and "no payload codec" in missing.stderr

    # No graph: the JSON column as stored, null for the sensitive step.
    stored = _ctl(*show)
    assert stored.exit_code == 0, stored.stderr
    outputs = {r["step"]: r["output"] for r in json.loads(stored.stdout)["results"]}
    assert outputs["Charge"] is None and outputs["Tokenize"]["token"] == "tok-1"
    text = _ctl(*show[:-1])
    assert "sensitive: not rendered" in text.stdout and CARD not in text.stdout

    # A damaged row is shown as damaged, not as a message.
    vault.damage("Tokenize", b"")
    damaged = _ctl(*show, *graph, "--codec", "vault_keys:codec")
    [tokenize] = [r for r in json.loads(damaged.stdout)["results"] if r["step"] == "Tokenize"]
    assert tokenize["output"] is None and "disagree" in tokenize["damaged"]

    bad = _ctl(*show, "--codec", "vault_keys:KEYS_MISSING", "--path", str(tmp_path))
    assert bad.exit_code == 1 and "is not a payload codec" in bad.stderr


def test_docketctl_settle_keeps_the_result_encrypted_with_the_codec(
    vault: Vault, tmp_path: Path
) -> None:
    async def claim_of(execution_id: str) -> None:
        async with await vault.store() as store:
            await store.claim_step(execution_id, "Charge", owner="elsewhere:1:gone")

    run(claim_of("s-1"))
    (tmp_path / "vault_keys.py").write_text(KEYS_MODULE)
    payment = {"payment_id": "pay-9", "card_number": CARD, "amount_cents": "1250"}
    done = _ctl(
        *["settle", "s-1", "Charge", "--url", vault.url, "--force"],
        *["--result-json", json.dumps(payment)],
        *["--graph", "testgraphs.vault_docket:Vault", "--path", str(tmp_path)],
        *["--codec", "vault_keys:codec"],
    )
    assert done.exit_code == 0, done.stderr
    output, rendering = vault.row("Charge")
    assert rendering == "null" and CARD.encode() not in output and b"k1" in output[:40]
    found = vault.fetch("Payment", execution_id="s-1", with_codec=codec("k1"))
    assert found == vault.pb.Payment(payment_id="pay-9", card_number=CARD, amount_cents=1250)

    # Without --codec, the result it keeps is not encrypted (the docs say so).
    run(claim_of("s-2"))
    plain = _ctl(
        *["settle", "s-2", "Charge", "--url", vault.url, "--force"],
        *["--result-json", json.dumps(payment)],
        *["--graph", "testgraphs.vault_docket:Vault", "--path", str(tmp_path)],
    )
    assert plain.exit_code == 0, plain.stderr
    [(output,)] = raw_sql(
        vault.url, "SELECT output FROM docket_results WHERE execution_id = ?", ("s-2",)
    )
    assert CARD.encode() in bytes(output)


def test_json_is_written_as_jsonb_prints_it_so_a_hit_checks_it_cheaply(db_url: str) -> None:
    from google.protobuf import source_context_pb2, type_pb2

    from docket_runtime._persistence import encode
    from docket_runtime.plan import CachePolicy, CacheScope, Step

    step = Step(
        name="Describe",
        method="describe",
        output="google.protobuf.Type",
        cache=CachePolicy(scope=CacheScope.WORKFLOW),
    )
    message = type_pb2.Type(
        name="shop.Payment — é",
        fields=[type_pb2.Field(name="amount_cents", number=3, json_name="amountCents")],
        oneofs=["method", "id"],
        source_context=source_context_pb2.SourceContext(file_name='a "quoted"\n name'),
    )
    row = encode(step, "key-1", "workflow", "e-1", message, graph="g", codec=None)

    async def body() -> Any:
        async with await open_store(db_url, migrate=True) as store:
            await store.put_result(row)
            return (await store.get_results(["key-1"]))["key-1"]

    found = run(body())
    # Same text back (Postgres included): the read compares a crc of it, no JSON parse.
    assert found.output_json == row.output_json
    assert json.loads(found.output_json)["source_context"]["file_name"] == 'a "quoted"\n name'


def test_a_damaged_at_most_once_result_is_reported_not_run_again(
    vault: Vault, caplog: pytest.LogCaptureFixture
) -> None:
    vault.run("Payment", "e-1")
    output, _ = vault.row("Charge")
    vault.damage("Charge", output[:-1])
    with (
        caplog.at_level(logging.WARNING, logger="docket.persistence"),
        pytest.raises(
            StepClaimed, match=r"succeeded \(claimed by .*\), but its recorded result is unreadable"
        ),
    ):
        vault.run("Payment", "e-1")
    assert vault.steps.calls["Charge"] == 1  # never charged twice
    assert "damaged cached result" in caplog.text and "step Charge" in caplog.text


def test_durable_inputs_written_before_checksums_are_still_read(vault: Vault) -> None:
    import base64

    from google.protobuf import json_format

    card = vault.card
    # What enqueue wrote before checksums: plain proto bytes and the JSON beside them.
    old = {
        "card": {
            "type": "testgraphs.Card",
            "proto": base64.b64encode(card.SerializeToString(deterministic=True)).decode(),
            "json": json_format.MessageToDict(card, preserving_proto_field_name=True),
        }
    }

    async def body() -> Any:
        async with await vault.store() as store:
            registry = Registry(store)
            graph = registry.bind(vault.dk.Vault, vault.steps)
            await store.queue_execution(
                "old-1", graph="testgraphs.Vault", target="testgraphs.Token", inputs=json.dumps(old)
            )
            outcome = await resume(registry, "old-1", stopping=lambda: False)
            return outcome, await graph.result(vault.pb.Token, "old-1")

    outcome, token = run(body())
    assert outcome == Done("succeeded") and token.last4 == "1111"


def test_enqueue_keeps_the_inputs_encrypted_and_a_worker_with_the_key_runs_it(
    vault: Vault,
) -> None:
    import procrastinate
    from procrastinate.testing import InMemoryConnector

    from docket_runtime.durable import enqueue, install, run_worker

    keys = codec("k1")

    async def body() -> Any:
        async with await vault.store(keys) as store:
            registry = Registry(store)
            graph = registry.bind(vault.dk.Vault, vault.steps)
            app = procrastinate.App(connector=InMemoryConnector())
            install(app, registry)
            async with app.open_async():
                queued = await enqueue(
                    app, graph, vault.pb.Payment, {"card": vault.card}, execution_id="q-1"
                )
                assert queued
                [(text,)] = raw_sql(vault.url, "SELECT inputs FROM docket_executions")
                await run_worker(
                    app, registry, wait=False, install_signal_handlers=False, sweep_interval=60.0
                )
            return text, await graph.result(vault.pb.Payment, "q-1")

    text, payment = run(body())
    inputs = json.loads(text) if isinstance(text, str) else text
    assert set(inputs["card"]) == {"type", "proto"} and CARD not in json.dumps(inputs)
    assert CARD.encode() not in _b64(inputs["card"]["proto"])
    assert payment.card_number == CARD and vault.steps.calls["Charge"] == 1
    for row in _all_rows(vault.url):
        assert CARD not in row


def test_json_that_postgres_respells_is_still_checked_by_value(db_url: str) -> None:
    from google.protobuf import struct_pb2

    from docket_runtime._persistence import decode, encode
    from docket_runtime.plan import CachePolicy, CacheScope, Step

    step = Step(
        name="Measure",
        method="measure",
        output="google.protobuf.Struct",
        cache=CachePolicy(scope=CacheScope.WORKFLOW),
    )
    message = struct_pb2.Struct()
    message.update({"big": 1e20, "tiny": 1.5e-7, "zero": -0.0, "tenth": 0.1, "list": [1e21, 2]})
    row = encode(step, "key-1", "workflow", "e-1", message, graph="g", codec=None)

    async def body() -> Any:
        async with await open_store(db_url, migrate=True) as store:
            await store.put_result(row)
            return (await store.get_results(["key-1"]))["key-1"]

    found = run(body())
    if db_url.startswith("postgres"):
        assert found.output_json != row.output_json  # JSONB prints 1e+20 in full
    assert decode(found, struct_pb2.Struct, None) == message
    # A changed value is still caught.
    edited = found.output_json.replace("0.1", "0.2")
    assert edited != found.output_json
    assert decode(dataclasses.replace(found, output_json=edited), struct_pb2.Struct, None) is None


def test_a_rewritten_row_moves_to_the_newest_key(vault: Vault) -> None:
    vault.run("Token", "e-1", codec("k1"))
    assert b"k1" in vault.row("Tokenize")[0][:40]
    rotated = codec("k1", "k2")

    async def forget() -> None:
        async with await vault.store(rotated) as store:
            await vault.dk.Vault(vault.steps, store=store).rerun_from("Tokenize", "e-1")

    run(forget())
    vault.run("Token", "e-1", rotated)
    assert b"k2" in vault.row("Tokenize")[0][:40]


class Reversing:
    """A codec of one's own (no cryptography): any object with the protocol's methods."""

    cache_secret = b"reversing secret"

    def encode(self, data: bytes, *, associated: bytes) -> tuple[str, bytes]:
        return "rev", data[::-1]

    def decode(self, key_id: str, data: bytes, *, associated: bytes) -> bytes:
        if key_id != "rev":
            raise MissingKey(key_id, ["rev"])
        return data[::-1]


def test_any_object_with_the_protocol_is_a_codec(vault: Vault) -> None:
    mine = Reversing()
    assert isinstance(mine, PayloadCodec)
    payment = vault.run("Payment", "e-1", mine)
    output, _ = vault.row("Charge")
    assert CARD[::-1].encode() in output and CARD.encode() not in output
    assert vault.fetch("Payment", execution_id="e-1", with_codec=mine) == payment


def test_a_durable_run_whose_checkpoint_needs_a_missing_key_fails_naming_it(
    vault: Vault,
) -> None:
    vault.run("Token", "d-2", codec("k1"))  # a checkpoint under k1
    before = raw_sql(vault.url, "SELECT key, output, output_json FROM docket_results")
    k2 = codec("k2")

    async def body() -> Any:
        async with await vault.store(k2) as store:
            registry = Registry(store)
            graph = registry.bind(vault.dk.Vault, vault.steps)
            await record_execution(graph, vault.pb.Token, {"card": vault.card}, execution_id="d-2")
            outcome = await resume(registry, "d-2", stopping=lambda: False)
            return outcome, await store.get_execution("d-2")

    outcome, row = run(body())
    assert isinstance(outcome, Failed) and "key id 'k1'" in outcome.error
    assert row.status == "failed" and "key id 'k1'" in (row.error or "")
    assert raw_sql(vault.url, "SELECT key, output, output_json FROM docket_results") == before
    assert vault.steps.calls["Tokenize"] == 1


def test_after_a_rotation_the_same_inputs_are_enqueued_again(vault: Vault) -> None:
    async def body() -> Any:
        async with await vault.store(codec("k1")) as store:
            graph = Registry(store).bind(vault.dk.Vault, vault.steps)
            await record_execution(graph, vault.pb.Token, {"card": vault.card}, execution_id="r-1")
            await store.finish_execution("r-1", status="failed", error="boom")
        async with await vault.store(codec("k1", "k2")) as store:
            graph = Registry(store).bind(vault.dk.Vault, vault.steps)
            # Encrypted under k2 now, so the stored text differs: still the same inputs.
            assert await record_execution(
                graph, vault.pb.Token, {"card": vault.card}, execution_id="r-1"
            )
            other = {"card": vault.pb.Card(number="5500000000000004")}
            with pytest.raises(ValueError, match="was used with other inputs"):
                await record_execution(graph, vault.pb.Token, other, execution_id="r-1")
            return await store.get_execution("r-1")

    row = run(body())
    assert row.status == "queued" and row.error is None


def test_rows_written_before_the_codec_stay_readable_with_it(vault: Vault) -> None:
    first = vault.run("Token", "e-1")
    assert vault.run("Token", "e-1", codec("k1")) == first
    assert vault.steps.calls["Tokenize"] == 1
    assert vault.fetch("Token", execution_id="e-1", with_codec=codec("k1")) == first
