"""Aggregation prompt: chat structure, problem and tails in order, token bound.

``python -m pytest tests/rsa/test_prompts.py -q``.
"""

from __future__ import annotations

import pytest

from zaya_rl.models.tokenizer import encode_chat
from zaya_rl.rsa.prompts import DEFAULT_ANSWER_FORMAT, build_aggregation_messages

MESSAGES = [
    {"role": "system", "content": "SYS"},
    {"role": "user", "content": "old question"},
    {"role": "assistant", "content": "old reply"},
    {"role": "user", "content": "Find x if 2x = 10."},
]


def test_messages_structure_keeps_system_and_last_user_turn():
    msgs = build_aggregation_messages(MESSAGES, ["tail one", "tail two"], answer_format="in \\boxed{}")
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert msgs[0] == {"role": "system", "content": "SYS"}
    text = msgs[1]["content"]
    assert "Problem:\nFind x if 2x = 10." in text
    assert "old question" not in text and "old reply" not in text
    assert text.count("in \\boxed{}") == 2  # the instruction and the closing line both name the format
    # Tails appear in the given order, each after its own numbered separator.
    i1, i2 = text.index("tail one"), text.index("tail two")
    s1, s2 = text.index("Excerpt 1 of 2"), text.index("Excerpt 2 of 2")
    assert s1 < i1 < s2 < i2
    assert text.rstrip().endswith("in \\boxed{}.")


def test_text_problem_and_default_format():
    msgs = build_aggregation_messages("Compute 1+1.", ["a"])
    assert len(msgs) == 1 and msgs[0]["role"] == "user"
    assert "Problem:\nCompute 1+1." in msgs[0]["content"]
    assert DEFAULT_ANSWER_FORMAT in msgs[0]["content"]
    assert "one excerpt" in msgs[0]["content"]


def test_bad_inputs():
    with pytest.raises(ValueError, match="tails is empty"):
        build_aggregation_messages("q", [])
    with pytest.raises(ValueError, match="no user turn"):
        build_aggregation_messages([{"role": "system", "content": "s"}], ["t"])


def test_prompt_tokens_are_base_plus_tail_tokens(tok):
    # Byte-level tokenizer: tokens add up exactly, so a prompt is the empty-tail prompt plus the tails'
    # bytes, i.e. at most |problem| + C*tau + template overhead.
    base = len(encode_chat(tok, build_aggregation_messages(MESSAGES, ["", "", ""])))
    tails = ["x" * 16, "é" * 8, "end of an attempt \\boxed{5}"[-16:]]
    ids = encode_chat(tok, build_aggregation_messages(MESSAGES, tails))
    assert len(ids) == base + sum(len(t.encode()) for t in tails)
    assert len(ids) <= base + 3 * 16
    assert tok.decode(ids).endswith("<|assistant|>")  # the chat template with a generation prompt
