"""Typed SQL views of kept results: ``docket-gen --views`` and ``docket views apply``.

The views of the examples are golden files (``tests/golden/views``;
``DOCKET_UPDATE_GOLDEN=1`` rewrites them), and so are those of
``tests/protos_views/viewgraphs/payments.proto``, whose outputs hold every kind
of field the views map. That graph runs against SQLite and Postgres, its views
are applied with the real command, and queries with typed predicates read the
kept results back.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, compile_request, raw_sql, run_docket_gen

from docket_gen.plugin import generate
from docket_runtime.cli import main as docket_main
from docket_runtime.stores import StoreError, open_store
from docket_runtime.views import apply_views, split_statements

GOLDEN = ROOT / "tests" / "golden" / "views"
VIEW_PROTOS = ROOT / "tests" / "protos_views"
CASES = {
    **{p.parent.name: p for p in sorted((ROOT / "examples").glob("*/protos"))},
    "viewgraphs": VIEW_PROTOS,
}
CHARGE_VIEW = "viewgraphs_payments_charge_card"
SCORE_VIEW = "viewgraphs_payments_score_risk"


def _views(root: Path, tmp_path: Path) -> dict[str, str]:
    """The view files generated for the protos under ``root``, by path."""
    protos = tmp_path / "protos"
    shutil.copytree(root, protos)
    request = compile_request(protos)
    request.parameter = "views"
    response = generate(request)
    assert response.error == ""
    return {f.name: f.content for f in response.file if f.name.endswith(".sql")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_generated_views_match_golden(case: str, tmp_path: Path) -> None:
    generated = _views(CASES[case], tmp_path)
    goldens = {p.relative_to(GOLDEN).as_posix() for p in GOLDEN.glob(f"{case}/*.sql")}
    if os.environ.get("DOCKET_UPDATE_GOLDEN") == "1":
        for name, content in generated.items():
            (GOLDEN / name).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / name).write_text(content)
        goldens = set(generated)
    assert goldens == set(generated), "run with DOCKET_UPDATE_GOLDEN=1 and review the diff"
    for name, content in generated.items():
        assert (GOLDEN / name).read_text() == content, f"{name}: DOCKET_UPDATE_GOLDEN=1"
    assert _views(CASES[case], tmp_path / "again") == generated  # deterministic


def test_views_are_opt_in_and_only_for_kept_steps(tmp_path: Path) -> None:
    protos = tmp_path / "protos"
    shutil.copytree(ROOT / "examples" / "hello" / "protos", protos)
    request = compile_request(protos)
    request.parameter = "views"
    assert [f.name for f in generate(request).file] == ["hello/greeter_docket.py"]
    sql = (GOLDEN / "viewgraphs" / "payments_views.postgres.sql").read_text()
    assert "notify" not in sql.lower()  # Notify keeps nothing


def test_a_sensitive_step_gets_no_view(tmp_path: Path) -> None:
    generated = _views(ROOT / "tests" / "protos", tmp_path)
    vault = generated["testgraphs/vault_views.postgres.sql"]
    assert "testgraphs_vault_tokenize" in vault and "testgraphs_vault_digest" in vault
    assert "charge" not in vault.lower()  # Charge is sensitive


# Running a graph, then reading its results through the views ----------------------------------


@pytest.fixture(scope="module")
def views_gen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``tests/protos_views`` generated with --views, importable for the module."""
    out = tmp_path_factory.mktemp("views-gen")
    done = run_docket_gen(VIEW_PROTOS, "-o", out, "--views")
    assert done.returncode == 0, done.stderr
    sys.path.insert(0, str(out))
    try:
        yield out
    finally:
        sys.path.remove(str(out))


class PaymentSteps:
    """Charges with every kind of field; the risk score depends on the city."""

    def __init__(self, pb: Any) -> None:
        self.pb = pb

    async def charge_card(self, order: Any, /) -> Any:
        pb = self.pb
        big = order.amount_cents > 1_000_000
        charge = pb.Charge(
            charge_id=f"ch-{order.order_id}",
            amount_cents=order.amount_cents,
            attempts=2,
            fee_cents=4_000_000_000,
            ledger_seq=2**63 + 5 if big else 7,
            captured=big,
            risk=0.25,
            rate=0.5,
            status=pb.STATUS_APPROVED if order.amount_cents > 1000 else pb.STATUS_DECLINED,
            receipt=b"\x00\xffreceipt",
            address=pb.Address(city=order.city, zip="75001", geo=pb.Geo(lat=48.5, lon=2.25)),
            tags=["first", "card"],
            fees={"network": 30},
            order=f"#{order.order_id}",
            created_at="yesterday",
        )
        charge.charged_at.FromDatetime(datetime(2024, 6, 1, 12, 30, tzinfo=UTC))
        charge.took.FromTimedelta(timedelta(seconds=1, milliseconds=500))
        charge.refund_cents.value = 5_000_000_000
        return charge

    async def score_risk(self, order: Any, /) -> Any:
        return self.pb.RiskScore(value=0.9 if order.city == "Berlin" else 0.1, model="m1")

    async def notify(self, charge: Any, /) -> Any:
        return self.pb.Notice(text=charge.charge_id)


def _run_orders(url: str) -> None:
    pb = importlib.import_module("viewgraphs.payments_pb2")
    dk = importlib.import_module("viewgraphs.payments_docket")

    async def body() -> None:
        async with await open_store(url, migrate=True) as store:
            graph = dk.Payments(PaymentSteps(pb), store=store)
            for number, (cents, city) in enumerate(
                [(500, "Paris"), (1500, "Berlin"), (5_000_000_000, "Berlin")], start=1
            ):
                order = pb.Order(order_id=f"o-{number}", amount_cents=cents, city=city)
                await graph.run(pb.Notice, order=order, execution_id=f"o-{number}")
                await graph.run(pb.RiskScore, order=order)

    asyncio.run(asyncio.wait_for(body(), 30))


def _views_file(gen: Path, url: str) -> Path:
    dialect = "sqlite" if url.startswith("sqlite") else "postgres"
    return gen / "viewgraphs" / f"payments_views.{dialect}.sql"


def test_views_read_kept_results_with_typed_predicates(
    db_url: str, views_gen: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _run_orders(db_url)
    assert (
        docket_main(["views", "apply", str(_views_file(views_gen, db_url)), "--url", db_url]) == 0
    )
    out = capsys.readouterr().out
    assert "applied 2 view(s)" in out and f"{CHARGE_VIEW}, {SCORE_VIEW}" in out

    def ids(where: str) -> list[str]:
        rows = raw_sql(db_url, f"SELECT execution_id FROM {CHARGE_VIEW} WHERE {where} ORDER BY 1")
        return [row[0] for row in rows]

    assert ids("amount_cents > 1000") == ["o-2", "o-3"]
    assert ids("amount_cents > 4294967296") == ["o-3"]  # beyond 32 bits: a bigint compare
    assert ids("ledger_seq > 9223372036854775807") == (["o-3"] if "postgres" in db_url else [])
    assert ids("status = 'STATUS_DECLINED'") == ["o-1"]
    assert ids("address_city = 'Berlin' AND captured = true") == ["o-3"]
    assert ids("charged_at >= '2024-06-01' AND refund_cents > 4294967296") == ["o-1", "o-2", "o-3"]
    assert ids("\"order\" = '#o-2' AND created_at_ = 'yesterday'") == ["o-2"]

    (row,) = raw_sql(
        db_url,
        "SELECT charge_id, attempts, fee_cents, risk, rate, receipt, address_zip, address_geo, "
        f"tags, fees, charged_at, took, created_at, expires_at FROM {CHARGE_VIEW} "
        "WHERE execution_id = 'o-1'",
    )
    (
        charge_id,
        attempts,
        fee,
        risk,
        rate,
        receipt,
        zip_code,
        geo,
        tags,
        fees,
        at,
        took,
        kept,
        exp,
    ) = row
    assert (charge_id, attempts, fee, risk, rate, zip_code) == (
        "ch-o-1",
        2,
        4e9,
        0.25,
        0.5,
        "75001",
    )
    assert base64.b64decode(receipt) == b"\x00\xffreceipt"
    assert exp is None and kept is not None
    if "postgres" in db_url:
        assert geo == {"lat": 48.5, "lon": 2.25} and tags == ["first", "card"]
        assert fees == {"network": "30"}  # int64 map values are JSON strings
        assert at == datetime(2024, 6, 1, 12, 30, tzinfo=UTC)
        assert took == timedelta(seconds=1.5)
        (seq,) = raw_sql(db_url, f"SELECT ledger_seq FROM {CHARGE_VIEW} WHERE execution_id = 'o-3'")
        assert seq == (Decimal(2**63 + 5),)
    else:
        assert (geo, tags, fees) == (
            '{"lat":48.5,"lon":2.25}',
            '["first","card"]',
            '{"network":"30"}',
        )
        assert (at, took) == ("2024-06-01T12:30:00Z", "1.500s")

    scores = raw_sql(
        db_url, f"SELECT execution_id, value, model FROM {SCORE_VIEW} WHERE value > 0.5"
    )
    assert scores == [(None, 0.9, "m1")] * 2  # GLOBAL: by content, no execution
    (count,) = raw_sql(db_url, f"SELECT count(*) FROM {SCORE_VIEW}")
    assert count == (3,)


def test_a_renamed_field_renames_its_column(db_url: str, views_gen: Path, tmp_path: Path) -> None:
    _run_orders(db_url)
    first = _views_file(views_gen, db_url)
    asyncio.run(apply_views(db_url, [first]))
    renamed = tmp_path / "renamed"
    shutil.copytree(VIEW_PROTOS, renamed)
    proto = renamed / "viewgraphs" / "payments.proto"
    proto.write_text(
        proto.read_text().replace(
            "int64 amount_cents = 2;\n  int32", "int64 total_cents = 2;\n  int32"
        )
    )
    done = run_docket_gen(renamed, "-o", tmp_path / "gen", "--views")
    assert done.returncode == 0, done.stderr
    second = tmp_path / "gen" / "viewgraphs" / first.name
    assert "total_cents" in second.read_text()
    assert asyncio.run(apply_views(db_url, [second])) == [CHARGE_VIEW, SCORE_VIEW]
    columns = _columns(db_url, CHARGE_VIEW)
    assert "total_cents" in columns and "amount_cents" not in columns
    assert columns[:4] == ["execution_id", "created_at", "expires_at", "charge_id"]
    # Rows kept before the rename hold the old key: the new column reads NULL for them.
    assert raw_sql(db_url, f"SELECT count(*) FROM {CHARGE_VIEW} WHERE total_cents IS NULL") == [
        (3,)
    ]


def _columns(url: str, view: str) -> list[str]:
    if url.startswith("sqlite"):
        return [row[1] for row in raw_sql(url, f"PRAGMA table_info({view})")]
    rows = raw_sql(
        url,
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
        (view,),
    )
    return [row[0] for row in rows]


# What apply refuses ---------------------------------------------------------------------------


def test_apply_refuses_a_database_without_tables_and_the_other_dialect(
    tmp_path: Path, views_gen: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    sqlite_file = _views_file(views_gen, url)
    with pytest.raises(StoreError, match="does not exist; create it with"):
        asyncio.run(apply_views(url, [sqlite_file]))
    assert not (tmp_path / "empty.db").exists()
    sqlite3.connect(tmp_path / "empty.db").close()  # a database, but not Docket's
    with pytest.raises(StoreError, match="has no Docket tables"):
        asyncio.run(apply_views(url, [sqlite_file]))
    asyncio.run(_migrate(url))
    postgres_file = sqlite_file.with_name("payments_views.postgres.sql")
    with pytest.raises(StoreError, match="is written for Postgres"):
        asyncio.run(apply_views(url, [postgres_file]))
    with pytest.raises(StoreError, match="views need SQLite or Postgres"):
        asyncio.run(apply_views("memory://", [sqlite_file]))
    with pytest.raises(StoreError, match="cannot read"):
        asyncio.run(apply_views(url, [tmp_path / "missing.sql"]))


async def _migrate(url: str) -> None:
    async with await open_store(url, migrate=True):
        pass


def test_a_file_is_applied_whole_or_not_at_all(db_url: str, tmp_path: Path) -> None:
    asyncio.run(_migrate(db_url))
    script = tmp_path / "views.sql"
    script.write_text(
        "-- two views; the second names a missing table\n"
        "CREATE VIEW first_view AS SELECT step FROM docket_results;\n"
        "CREATE VIEW second_view AS SELECT step FROM no_such_table;\n"
    )
    assert docket_main(["views", "apply", str(script), "--url", db_url]) == 1
    assert _columns(db_url, "first_view") == []


def test_split_statements_respects_quotes_and_comments() -> None:
    sql = "-- a; comment\nSELECT ';' AS \"a;b\"; /* c; */ SELECT 2;\n\n"
    assert split_statements(sql) == ["SELECT ';' AS \"a;b\"", "SELECT 2"]


def test_the_sqlite_views_run_on_the_sqlite_cli_too(tmp_path: Path, views_gen: Path) -> None:
    sqlite = shutil.which("sqlite3")
    if sqlite is None:
        pytest.skip("the sqlite3 command is not installed")
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    asyncio.run(_migrate(url))
    done = subprocess.run(
        [sqlite, str(tmp_path / "cli.db")],
        input=_views_file(views_gen, url).read_text(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    with sqlite3.connect(tmp_path / "cli.db") as conn:
        names = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'view'")
        }
    assert names == {CHARGE_VIEW, SCORE_VIEW}


def test_views_is_also_a_click_group(tmp_path: Path, views_gen: Path) -> None:
    from click.testing import CliRunner

    from docket_runtime._cli_views import views_group

    url = f"sqlite:///{tmp_path / 'click.db'}"
    asyncio.run(_migrate(url))
    file = str(_views_file(views_gen, url))
    result = CliRunner().invoke(views_group(), ["apply", file], env={"DOCKET_DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    assert result.output.startswith("applied 2 view(s) to sqlite:///")
    result = CliRunner().invoke(views_group(), ["apply", file, "--url", "memory://"])
    assert result.exit_code == 1 and "views need SQLite or Postgres" in result.output
