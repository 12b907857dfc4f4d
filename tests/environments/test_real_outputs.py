"""Answer extraction and canary settings against completions SmolLM2-135M-Instruct really wrote.

``data/smollm2_outputs.json`` holds greedy completions of the model (vLLM for CPU, its chat template, 384
tokens) on reasoning-gym arithmetic and GSM-style problems, each labelled by hand with the final answer a
reader takes from it (or none) and why; and real looping completions vs the longest normal ones, for the
canary of configs/smollm2_cpu.yaml. python -m pytest tests/environments/test_real_outputs.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from environments.extract import final_number
from environments.registry import get_environment
from zaya_rl.canary import CompressibilityCanary
from zaya_rl.config import load_config

DATA = json.loads((Path(__file__).parent / "data" / "smollm2_outputs.json").read_text())
CANARY = load_config(Path(__file__).resolve().parents[2] / "configs" / "smollm2_cpu.yaml").canary


@pytest.mark.parametrize("case", DATA["outputs"], ids=[c["why"][:50] for c in DATA["outputs"]])
def test_final_number_reads_what_a_reader_reads(case):
    assert final_number(case["text"])[0] == case["expected"], case["why"]


def test_a_number_in_the_reasoning_never_scores():
    # every unmarked output holds numbers, and an equal-length run of guesses would hit some of them
    unmarked = [c for c in DATA["outputs"] if c["expected"] is None]
    assert len(unmarked) >= 5
    env = get_environment("rg/basic_arithmetic", answer_format="number", reward="binary")
    problem = env.generate(0, 0)
    for case in unmarked:
        import re

        for number in set(re.findall(r"-?\d+", case["text"])):
            hit = env.verify(problem.__class__(**{**problem.to_dict(), "answer": number}), case["text"])
            assert hit.accuracy == 0.0 and not hit.format_ok, (number, case["why"])


def _flags(text: str) -> bool:
    return CompressibilityCanary(CANARY.threshold, CANARY.patience, CANARY.chunk_bytes).feed(text)


def test_canary_flags_real_loops_and_not_the_longest_normal_answers():
    assert all(_flags(t) for t in DATA["canary_loops"])
    assert not any(_flags(t) for t in DATA["canary_prose"])
    # the default 8 chunks of 512 bytes never fire within this model's 256-384-token budget
    default = [CompressibilityCanary().feed(t) for t in DATA["canary_loops"]]
    assert not any(default)
