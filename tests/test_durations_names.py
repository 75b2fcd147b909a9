"""Unit tests of the generator's small helpers: duration strings and Python names."""

from __future__ import annotations

import pytest

from docket_gen.durations import DurationError, parse_duration
from docket_gen.names import (
    docket_module_path,
    is_dotted_name,
    is_identifier,
    module_of,
    python_name,
    snake_case,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("5s", 5.0),
        ("2m", 120.0),
        ("24h", 86400.0),
        ("1d", 86400.0),
        ("1m30s", 90.0),
        ("1.5h", 5400.0),
        (" 5s ", 5.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5 sec", "5", "s", "1m 30s", "-1s", ".5s", "5S", "1y"])
def test_unreadable_duration(text: str) -> None:
    with pytest.raises(DurationError) as caught:
        parse_duration(text)
    assert str(caught.value) == (
        f"bad duration {text!r}: write a number and a unit (ms, s, m, h, d), "
        'e.g. "250ms", "5s", "2m", "24h" or "1m30s"'
    )


def test_empty_and_zero_durations() -> None:
    with pytest.raises(DurationError, match=r"^empty duration: write a number and a unit"):
        parse_duration("  ")
    with pytest.raises(DurationError, match=r"^bad duration '0ms': it must be longer than zero$"):
        parse_duration("0ms")


@pytest.mark.parametrize(
    ("name", "snake"),
    [
        ("FetchProfile", "fetch_profile"),
        ("FetchURL", "fetch_url"),
        ("FetchUrl", "fetch_url"),
        ("HTTPGet", "http_get"),
        ("GetV2Data", "get_v2_data"),
        ("Top", "top"),
        ("already_snake", "already_snake"),
    ],
)
def test_snake_case(name: str, snake: str) -> None:
    assert snake_case(name) == snake


def test_python_name_escapes_keywords_and_soft_keywords() -> None:
    assert python_name("from") == "from_"
    assert python_name("class") == "class_"
    assert python_name("match") == "match_"
    assert python_name("type") == "type_"
    assert python_name("order") == "order"


def test_identifiers_and_dotted_names() -> None:
    assert is_identifier("Fetch_2")
    assert not is_identifier("bad name")
    assert not is_identifier("2fast")
    assert not is_identifier("")
    assert is_dotted_name("acme.errors.Declined")
    assert is_dotted_name("ValueError")
    assert not is_dotted_name("acme..Declined")
    assert not is_dotted_name("not ok")


def test_module_paths() -> None:
    assert module_of("shop/bad.proto") == "shop.bad_pb2"
    assert module_of("a/b-c.proto") == "a.b_c_pb2"
    assert docket_module_path("shop/bad.proto") == "shop/bad_docket.py"
    assert docket_module_path("a/b-c.proto") == "a/b_c_docket.py"
