"""RLVE-Gym adapter, through the worker pool: references verify, reward maps, sympify stays in the worker.

python -m pytest tests/environments/test_envs_rlve.py -q           # a sample of environments
python -m pytest tests/environments/test_envs_rlve.py -q -m slow   # all 400 at difficulty 3
"""

from __future__ import annotations

import importlib.util
import os
import random
import time

import numpy as np
import pytest

from environments import get_environment, list_environments
from environments.workers import VerifierPool

pytestmark = pytest.mark.skipif(importlib.util.find_spec("Gym") is None, reason="rlve-gym is not installed")

SAMPLE = [
    "Sorting", "Multiplication", "Sudoku", "ShortestPath", "SAT", "TwoSAT", "Integral", "Differentiate",
    "KnightsAndKnaves", "PolyaModel", "BucketSorting", "Cinema", "QuadMagicItems", "CountdownEqual", "Josephus",
    "Knapsack", "CRT", "SpiralMatrix",
]  # fmt: skip


@pytest.fixture(scope="module")
def pool():
    # preload: every worker imports RLVE (~5 s) before any call's deadline starts
    with VerifierPool(2, timeout_s=60.0, preload=[("rlve/Sorting", {})]) as p:
        yield p


def test_all_400_are_registered_with_an_unbounded_ladder():
    specs = list_environments("rlve")
    assert len(specs) == 400
    assert {(s.min_difficulty, s.max_difficulty, s.source) for s in specs} == {(0, None, "rlve-gym")}


def test_sample_generates_deterministically_and_references_verify(pool):
    requests = [(f"rlve/{name}", {}, seed, d) for name in SAMPLE for d in (0, 1, 2) for seed in (0, 1)]
    first, second = pool.generate_batch(requests), pool.generate_batch(requests)
    assert [p.to_dict() for p in first] == [p.to_dict() for p in second]
    with_ref = [p for p in first if p.answer is not None]
    # these two store only the optimum and check the submitted solution
    assert {p.env for p in first} - {p.env for p in with_ref} == {"rlve/Knapsack", "rlve/CountdownEqual"}
    scores = pool.verify_batch([(p, f"\\boxed{{{p.answer}}}") for p in with_ref])
    assert [(p.env, s.accuracy) for p, s in zip(with_ref, scores, strict=True) if s.accuracy != 1.0] == []
    wrong = pool.verify_batch([(p, "I give up.") for p in first])
    assert all((s.status, s.accuracy, s.reward, s.format_ok) == ("ok", 0.0, 0.0, False) for s in wrong)


def test_problem_text_names_the_answer_format(pool):
    boxed = pool.generate("rlve/Sorting", {}, 0, 0)
    tags = pool.generate("rlve/Sorting", {"answer_format": "answer_tags"}, 0, 0)
    assert boxed.prompt_text.endswith("\n\nPut your final answer within \\boxed{}.")
    assert tags.prompt_text.endswith("\n\nPut your final answer between <answer> and </answer>.")
    assert tags.metadata["env_kwargs"] == {"answer_format": "answer_tags"}
    assert pool.verify(tags, f"<answer>{tags.answer}</answer>").accuracy == 1.0
    assert pool.verify(tags, f"\\boxed{{{tags.answer}}}").format_ok is False


@pytest.mark.parametrize("reward", ["binary", "shifted", "clip"])
def test_reward_maps_from_rlve_score(pool, reward):
    problem = pool.generate("rlve/Sorting", {"reward": reward}, 3, 2)
    gold = problem.answer.split()
    n = len(gold)
    swapped = gold[:]
    swapped[0], swapped[-1] = swapped[-1], swapped[0]  # two positions wrong: RLVE score ((n-2)/n)^10
    partial = ((n - 2) / n) ** 10
    expected = {  # rlve score -> (binary, shifted, clip)
        "full": (1.0, 1.0, 1.0),
        "partial": (0.0, (partial + 1) / 2, partial),
        "invalid": (0.0, 0.25, 0.0),  # wrong length: RLVE -0.5
        "no_format": (0.0, 0.0, 0.0),  # RLVE -1
    }
    responses = {
        "full": f"\\boxed{{{problem.answer}}}",
        "partial": f"\\boxed{{{' '.join(swapped)}}}",
        "invalid": "\\boxed{1 2}",
        "no_format": "1 2 3",
    }
    column = ["binary", "shifted", "clip"].index(reward)
    for key, response in responses.items():
        score = pool.verify(problem, response)
        assert score.reward == pytest.approx(expected[key][column]), key
        assert score.accuracy == (1.0 if key == "full" else 0.0)
        assert score.format_ok == (key != "no_format")


@pytest.mark.parametrize("name", ["Integral", "Differentiate"])
def test_sympify_payload_is_rejected_before_it_can_run(pool, tmp_path, name):
    problem = pool.generate(f"rlve/{name}", {}, 0, 1)
    marker = tmp_path / "pwned"
    for payload in (f"__import__('os').system('touch {marker}')", "x.__class__", "exec('1')"):
        score = pool.verify(problem, f"\\boxed{{{payload}}}")
        assert score.status == "ok" and score.accuracy == 0.0 and "rejected before sympify" in score.reason
    assert not marker.exists()


@pytest.mark.parametrize("name", ["Integral", "Differentiate"])
def test_screened_scorers_still_accept_their_references(pool, name):
    for seed, difficulty in [(0, 0), (1, 1), (2, 3), (3, 5)]:
        problem = pool.generate(f"rlve/{name}", {}, seed, difficulty)
        assert pool.verify(problem, f"\\boxed{{{problem.answer}}}").accuracy == 1.0, (seed, difficulty, problem.answer)


def test_in_process_generation_restores_global_rng_and_matches_the_workers(pool):
    random.seed(1)
    np.random.seed(2)
    py_state, np_state = random.getstate(), np.random.get_state()
    hash_seed = os.environ.get("PYTHONHASHSEED")
    local = [get_environment(f"rlve/{name}").generate(5, 2) for name in SAMPLE]
    assert random.getstate() == py_state
    assert all(
        (a == b).all() if hasattr(a, "all") else a == b
        for a, b in zip(np.random.get_state(), np_state, strict=True)
    )
    assert os.environ.get("PYTHONHASHSEED") == hash_seed
    remote = pool.generate_batch([(f"rlve/{name}", {}, 5, 2) for name in SAMPLE])
    assert [p.to_dict() for p in local] == [p.to_dict() for p in remote]


def test_polya_model_scores_the_extracted_answer(pool):
    """Upstream PolyaModel parses the whole output, so its own reference never verifies; we pass the boxed text."""
    p = pool.generate("rlve/PolyaModel", {}, 0, 2)
    num, den = (int(x) for x in p.answer.split("/"))
    assert pool.verify(p, f"Thinking... so \\boxed{{{p.answer}}}").accuracy == 1.0
    assert pool.verify(p, f"\\boxed{{{num + 1}/{den}}}").accuracy == 0.0
    assert pool.verify(p, p.answer).format_ok is False  # no markers: RLVE's wrong-format score


def test_bad_kwargs_are_rejected_by_name():
    with pytest.raises(ValueError, match="rlve/Sorting: reward must be one of"):
        get_environment("rlve/Sorting", reward="raw")


@pytest.mark.slow
def test_all_400_generate_and_references_verify_at_difficulty_3():
    names = [s.name for s in list_environments("rlve")]
    with VerifierPool(2, timeout_s=120.0, preload=[("rlve/Sorting", {})]) as pool:
        start = time.monotonic()
        problems = pool.generate_batch([(n, {}, 0, 3) for n in names])
        elapsed = time.monotonic() - start
        failed = [(n, p) for n, p in zip(names, problems, strict=True) if not hasattr(p, "answer")]
        assert failed == []
        with_ref = [p for p in problems if p.answer is not None]
        scores = pool.verify_batch([(p, f"\\boxed{{{p.answer}}}") for p in with_ref])
    print(f"\nRLVE d=3: 400 generated in {elapsed:.1f}s on 2 workers; {len(with_ref)} with reference")
    assert len(with_ref) >= 330
    assert [p.env for p, s in zip(with_ref, scores, strict=True) if s.accuracy != 1.0] == []
