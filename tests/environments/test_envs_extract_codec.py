"""Answer extraction helpers and the type-preserving JSON codec.

python -m pytest tests/environments/test_envs_extract_codec.py -q
"""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

from environments import codec
from environments.extract import (
    extract_answer,
    last_answer_line,
    last_answer_tag,
    last_boxed,
    normalize_integer,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("x \\boxed{1} y \\boxed{ 2 }", "2"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{a{b}c} then \\boxed{unclosed", "a{b}c"),
        ("no box", None),
        ("\\boxed{}", ""),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


def test_tags_and_answer_lines():
    assert last_answer_tag("<answer>1</answer> <ANSWER> 2\n3 </ANSWER>") == "2\n3"
    assert last_answer_line("Answer: 4\nanswer : 5 \nthe answer: 6") == "5"
    assert last_answer_line("no final line") is None


def test_extract_order_and_format_flag():
    assert extract_answer("<answer>1</answer> \\boxed{2}") == ("2", True)
    assert extract_answer("<answer>1</answer>\nAnswer: 3") == ("1", True)
    assert extract_answer("Answer: 3") == ("3", True)
    assert extract_answer("7") == (None, False)
    assert extract_answer(" 7 ", allow_bare=True) == ("7", True)
    assert extract_answer("  ", allow_bare=True) == (None, False)


@pytest.mark.parametrize(
    "raw, canonical",
    [("+07", "7"), ("-0", "0"), ("12.000", "12"), ("1,234", "1234"), ("12345678901234567890.0", "12345678901234567890"),
     (" abc ", "abc"), ("1.5", "1.5")],
)  # fmt: skip
def test_normalize_integer(raw, canonical):
    assert normalize_integer(raw) == canonical


def test_codec_round_trips_what_plain_json_breaks():
    value = {
        "tuple": (1, (2, 3)),
        "int_keys": {1: "a", (2, 3): [4]},
        "set": {1, 2},
        "frozen": frozenset({"x"}),
        "fraction": Fraction(-3, 4),
        "tag_lookalike": {"__tuple__": [1]},
        "plain": [1, "s", None, True, 2.5, {"k": "v"}],
    }
    wire = json.loads(json.dumps(codec.encode(value)))
    assert codec.decode(wire) == value
    assert type(codec.decode(wire)["tuple"]) is tuple
    assert json.loads(json.dumps(value["plain"])) == codec.encode(value["plain"])  # plain data is unchanged


def test_codec_numpy_scalars_become_python_numbers_and_objects_are_refused():
    assert codec.encode({"n": np.int64(3), "f": np.float32(0.5)}) == {"n": 3, "f": 0.5}
    with pytest.raises(TypeError, match="cannot encode builtins.object"):
        codec.encode({"x": object()})
