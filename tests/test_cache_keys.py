"""``(docket.step).cache.key``: GLOBAL keys made from some fields of a step's input.

Runs ``tests/protos/testgraphs/keyed.proto`` on each backend (``db_url``: SQLite
and real Postgres), and checks the key bytes of each kind of field.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import importlib
import re
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from conftest import ROOT, raw_sql, run_docket_gen, write_protos

from docket_runtime._keyfields import selector
from docket_runtime._persistence import input_key, step_keys
from docket_runtime.codec import AesGcmCodec, PayloadCodec
from docket_runtime.plan import CachePolicy
from docket_runtime.stores import open_store
from docket_runtime.stores.base import GlobalKeys

T = TypeVar("T")
SECRET = b"cache secret, 16+ bytes"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 30.0))


@pytest.fixture(scope="module")
def pb(gen_dir: Path) -> Any:
    return importlib.import_module("testgraphs.keyed_pb2")


@pytest.fixture(scope="module")
def dk(gen_dir: Path) -> Any:
    return importlib.import_module("testgraphs.keyed_docket")


class KeyedSteps:
    """Counts calls; each result carries its call number, so a hit shows."""

    def __init__(self, pb: Any) -> None:
        self.pb = pb
        self.calls: Counter[str] = Counter()

    async def embed(self, chunk: Any, /) -> Any:
        self.calls["Embed"] += 1
        return self.pb.Embedding(text=chunk.text, call=self.calls["Embed"])

    async def summarize(self, document: Any, model: Any, /) -> Any:
        self.calls["Summarize"] += 1
        return self.pb.Summary(text=document.chunk.text, call=self.calls["Summarize"])

    async def index(self, chunk: Any, /) -> Any:
        self.calls["Index"] += 1
        return self.pb.Entry(text=chunk.text, call=self.calls["Index"])


class Keyed:
    def __init__(self, url: str, pb: Any, dk: Any) -> None:
        self.url, self.pb, self.dk = url, pb, dk
        self.steps = KeyedSteps(pb)

    def run(self, target: str, codec: PayloadCodec | None = None, **inputs: Any) -> Any:
        async def body() -> Any:
            async with await open_store(self.url, migrate=True, codec=codec) as store:
                graph = self.dk.Keyed(self.steps, store=store)
                return await graph.run(getattr(self.pb, target), **inputs)

        return run(body())

    def keys(self, step: str) -> list[str]:
        query = "SELECT key FROM docket_results WHERE step = ? ORDER BY key"
        return [key for (key,) in raw_sql(self.url, query, (step,))]

    def chunk(self, text: str, source: str = "web", position: int = 0) -> Any:
        meta = self.pb.Meta(source=source, fetched_at=position * 1000)
        return self.pb.Chunk(text=text, meta=meta, position=position, tags=[source])


@pytest.fixture
def keyed(db_url: str, pb: Any, dk: Any) -> Keyed:
    return Keyed(db_url, pb, dk)


def test_the_plan_carries_the_paths_rooted_at_the_parameters(dk: Any, gen_dir: Path) -> None:
    plan = dk.Keyed.plan
    assert plan.step("Embed").cache.key == ("chunk.text",)
    assert plan.step("Summarize").cache.key == ("document.chunk.text", "model")
    assert plan.step("Index").cache == CachePolicy(scope=plan.step("Index").cache.scope)
    source = (gen_dir / "testgraphs" / "keyed_docket.py").read_text()
    # Emitted only where set, like every other option.
    assert source.count("key=(") == 2, source


def test_a_key_on_one_field_hits_across_different_surrounding_messages(keyed: Keyed) -> None:
    first = keyed.run("Embedding", chunk=keyed.chunk("hello", "web", 1))
    again = keyed.run("Embedding", chunk=keyed.chunk("hello", "pdf", 7))
    assert (first.call, again.call) == (1, 1)
    assert keyed.steps.calls["Embed"] == 1
    other = keyed.run("Embedding", chunk=keyed.chunk("world", "web", 1))
    assert (other.text, other.call) == ("world", 2)
    assert len(keyed.keys("Embed")) == 2
    # The whole-input step of the same graph misses on the same two chunks.
    keyed.run("Entry", chunk=keyed.chunk("hello", "web", 1))
    keyed.run("Entry", chunk=keyed.chunk("hello", "pdf", 7))
    assert keyed.steps.calls["Index"] == 2


def test_a_nested_path_and_a_whole_input_of_a_bundle(keyed: Keyed) -> None:
    pb = keyed.pb

    def summarize(doc_id: str, text: str, model: str) -> Any:
        document = pb.Document(doc_id=doc_id, chunk=keyed.chunk(text, doc_id))
        return keyed.run("Summary", document=document, llm=pb.Llm(name=model))

    assert summarize("d1", "same", "m1").call == 1
    assert summarize("d2", "same", "m1").call == 1  # another document, same chunk text
    assert summarize("d1", "same", "m2").call == 2  # the model is keyed whole
    assert summarize("d1", "other", "m1").call == 3
    assert keyed.steps.calls["Summarize"] == 3
    assert len(keyed.keys("Summarize")) == 3


def test_the_row_key_is_the_field_key_not_the_whole_input_key(keyed: Keyed) -> None:
    chunk = keyed.chunk("hello", "web", 3)
    keyed.run("Embedding", chunk=chunk)
    plan = keyed.dk.Keyed.plan
    step = plan.step("Embed")
    field_key = input_key(step_keys(plan, step), [chunk], None)
    assert keyed.keys("Embed") == [field_key]
    whole = GlobalKeys(plan.name, "Embed", "v1")([chunk.SerializeToString(deterministic=True)])
    text_only = GlobalKeys(plan.name, "Embed", "v1")([b"hello"])
    assert field_key not in (whole, text_only)
    # The cache version and namespace still apply.
    for cache in (
        dataclasses.replace(step.cache, version="v2"),
        dataclasses.replace(step.cache, namespace="acme.embeddings"),
        dataclasses.replace(step.cache, key=("chunk.meta",)),
    ):
        other = dataclasses.replace(step, cache=cache)
        assert input_key(step_keys(plan, other), [chunk], None) != field_key


def test_the_hmac_key_under_a_codec_also_keys_on_the_fields(keyed: Keyed) -> None:
    codec = AesGcmCodec({"k1": bytes(range(32))}, cache_secret=SECRET)
    assert keyed.run("Embedding", codec, chunk=keyed.chunk("hello", "web", 1)).call == 1
    assert keyed.run("Embedding", codec, chunk=keyed.chunk("hello", "pdf", 2)).call == 1
    assert keyed.run("Embedding", codec, chunk=keyed.chunk("bye", "pdf", 2)).call == 2
    plan = keyed.dk.Keyed.plan
    keys = step_keys(plan, plan.step("Embed"))
    expected = sorted(
        input_key(keys, [keyed.chunk(text, "any", 9)], codec) for text in ("hello", "bye")
    )
    assert keyed.keys("Embed") == expected
    # Without the codec, the same fields give another key: the HMAC is not a plain digest.
    assert input_key(keys, [keyed.chunk("hello")], None) not in expected


def test_key_parts_of_each_kind_of_field(pb: Any, dk: Any) -> None:
    plan = dk.Keyed.plan
    embed = plan.step("Embed")

    def parts(*paths: str, value: Any) -> list[bytes | None]:
        step = dataclasses.replace(embed, cache=dataclasses.replace(embed.cache, key=paths))
        select = selector(step, [pb.Chunk])
        assert select is not None
        return select([value])

    chunk = pb.Chunk(text="é", position=-5, tags=["a", "bc"], weight=0.5, draft=True, raw=b"\x00")
    assert parts(
        "chunk.text",
        "chunk.position",
        "chunk.tags",
        "chunk.weight",
        "chunk.draft",
        "chunk.raw",
        value=chunk,
    ) == [
        "é".encode(),
        b"-5",
        b"\x00" * 7 + b"\x01a" + b"\x00" * 7 + b"\x02bc",
        b"\x3f\xe0" + b"\x00" * 6,
        b"\x01",
        b"\x00",
    ]
    # Presence: an unset optional scalar or message differs from a set empty one.
    assert parts("chunk.lang", "chunk.meta", "chunk.meta.source", value=pb.Chunk()) == [
        None,
        None,
        None,
    ]
    set_empty = pb.Chunk(lang="", meta=pb.Meta())
    assert parts("chunk.lang", "chunk.meta", "chunk.meta.source", value=set_empty) == [
        b"",
        b"",
        b"",
    ]
    assert parts("chunk", value=chunk) == [chunk.SerializeToString(deterministic=True)]
    assert selector(plan.step("Index"), [pb.Chunk]) is None


def test_a_hand_edited_path_fails_at_bind(pb: Any, dk: Any) -> None:
    embed = dk.Keyed.plan.step("Embed")
    for path, problem in (
        ("text", "names no input of the step"),
        ("chunk.nope", "testgraphs.Chunk has no field 'nope'"),
        ("chunk.text.more", "goes through a non-message field"),
    ):
        step = dataclasses.replace(embed, cache=dataclasses.replace(embed.cache, key=(path,)))
        with pytest.raises(ValueError, match=problem):
            selector(step, [pb.Chunk])


def test_fetch_keys_the_whole_inputs_it_is_given_on_the_fields(keyed: Keyed) -> None:
    keyed.run("Embedding", chunk=keyed.chunk("hello", "web", 1))

    async def fetch(chunk: Any) -> Any:
        async with await open_store(keyed.url) as store:
            graph = keyed.dk.Keyed(keyed.steps, store=store)
            return await graph.fetch(keyed.pb.Embedding, chunk)

    assert run(fetch(keyed.chunk("hello", "pdf", 9))).call == 1
    assert run(fetch(keyed.chunk("other", "web", 1))) is None


_PROTO = re.compile(r"^(?P<indent> *)```proto\n(?P<body>.*?)^(?P=indent)```$", re.M | re.S)


@pytest.mark.parametrize("page", ["generating.md", "persistence.md"])
def test_the_documented_cache_key_snippet_generates(page: str, tmp_path: Path) -> None:
    text = (ROOT / "docs" / page).read_text()
    [body] = [textwrap.dedent(m["body"]) for m in _PROTO.finditer(text) if "key:" in m["body"]]
    first, _, rest = body.partition("\n")
    name = first.removeprefix("// ").strip()
    out = tmp_path / "gen"
    done = run_docket_gen(write_protos(tmp_path / "protos", {name: rest}), "-o", out)
    assert done.returncode == 0, done.stderr
    # In a subprocess: both pages define docs.Chunk, and the descriptor pool is global.
    module = name.removesuffix(".proto").replace("/", ".") + "_docket"
    script = (
        f"import {module} as m\n"
        "[g] = [v for v in vars(m).values() if hasattr(v, 'plan')]\n"
        "print({s.name: s.cache.key for s in g.plan.steps})\n"
    )
    shown = subprocess.run(
        [sys.executable, "-c", script], cwd=out, capture_output=True, text=True, check=True
    )
    keys = ast.literal_eval(shown.stdout)
    assert keys == {
        "Embed": ("chunk.text",) if page == "generating.md" else ("chunk.text", "model")
    }
