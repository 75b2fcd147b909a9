"""pyfmt: nested literals laid out as ruff format lays them out."""

from __future__ import annotations

import json

import pytest

from docket_gen import pyfmt
from docket_gen.pyfmt import Call, Dict, Raw, Tuple, string


@pytest.mark.parametrize(
    "text", ["plain", "é", 'a"b', "a\\b", "tab\there", "line\nx", "\u2028", ""]
)
def test_string_literals_are_escaped_as_json_escapes_them(text: str) -> None:
    assert string(text).text == json.dumps(text, ensure_ascii=False)


def test_what_fits_stays_on_one_line_and_the_rest_explodes_one_level_at_a_time() -> None:
    short = Tuple([string("a")])
    assert pyfmt.render(Call("f", [short], [("k", Raw("1"))])) == 'f(("a",), k=1)'
    names = Tuple([string(f"name_{i:02d}") for i in range(8)])
    node = Call("outer", kwargs=[("names", names), ("more", Dict([(string("k"), short)]))])
    assert pyfmt.render(node, 1, "x = ").split("\n") == [
        "    x = outer(",
        "        names=(",
        *(f'            "name_{i:02d}",' for i in range(8)),
        "        ),",
        '        more={"k": ("a",)},',
        "    )",
    ]
