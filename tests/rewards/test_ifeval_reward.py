"""IFEval constraints through lm-eval's checkers: python -m pytest tests/rewards/test_ifeval_reward.py -q"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest

from rewards.ifeval import Constraint, build_constraint, check_constraints, conflicts, instruction_ids

P = "Write a short note about the sea."


def c(instruction_id: str, **kwargs) -> Constraint:
    return Constraint(instruction_id, kwargs, "")


def test_all_25_types_load_offline_without_the_task_manager(tmp_path):
    """Fresh process, empty cache dir, nltk.download booby-trapped: everything must still work."""
    code = (
        "import sys, nltk\n"
        "def trap(*a, **k): raise AssertionError('network download attempted')\n"
        "nltk.download = trap\n"
        "from rewards.ifeval import instruction_ids, check_constraints, Constraint\n"
        "ids = instruction_ids()\n"
        "v = check_constraints('p', 'One. Two. Three.', [Constraint('length_constraints:number_sentences',"
        " {'num_sentences': 3, 'relation': 'at least'}, '')])\n"
        "print(len(ids), v.followed, 'datasets' in sys.modules, 'lm_eval.tasks' in sys.modules)\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("25 [True] False False")
    assert (tmp_path / "zaya_rl/nltk_data/tokenizers/punkt_tab/english/abbrev_types.txt").is_file()


def test_registry_has_the_25_types():
    ids = instruction_ids()
    assert len(ids) == 25 and "punctuation:no_comma" in ids and "language:response_language" in ids
    table = conflicts()
    assert "detectable_format:json_format" in table["keywords:frequency"]  # made symmetric


def test_build_is_deterministic_and_leaves_global_random_alone():
    random.seed(123)
    expected = random.random()
    random.seed(123)
    a = build_constraint("length_constraints:number_words", 7, P)
    assert random.random() == expected
    assert a == build_constraint("length_constraints:number_words", 7, P)
    draws = {build_constraint("length_constraints:number_words", s, P).kwargs["num_words"] for s in range(20)}
    assert len(draws) > 5


def test_repeat_prompt_gets_the_prompt():
    assert build_constraint("combination:repeat_prompt", 0, P).kwargs["prompt_to_repeat"] == P


def test_unsatisfiable_draws_are_redrawn():
    for seed in range(200):
        kw = build_constraint("length_constraints:nth_paragraph_first_word", seed, P).kwargs
        assert 1 <= kw["nth_paragraph"] <= kw["num_paragraphs"]
        kw = build_constraint("length_constraints:number_sentences", seed, P).kwargs
        assert not (kw["relation"] == "less than" and kw["num_sentences"] <= 1)


CASES = [
    (c("change_case:english_lowercase"), "this is a short note about the sea and the waves.", True),
    (c("change_case:english_lowercase"), "This is a short note about the sea.", False),
    (c("punctuation:no_comma"), "no commas here", True),
    (c("punctuation:no_comma"), "one, two", False),
    (c("length_constraints:number_words", num_words=5, relation="less than"), "one two three four", True),
    (c("length_constraints:number_words", num_words=4, relation="less than"), "one two three four", False),
    (c("detectable_content:postscript", postscript_marker="P.S."), "Hello.\nP.S. bye", True),
    (c("detectable_content:postscript", postscript_marker="P.S."), "Hello. bye", False),
    (c("detectable_format:json_format"), '```json\n{"a": 1}\n```', True),
    (c("detectable_format:json_format"), "{a: 1}", False),
    (c("detectable_format:title"), "<<My Title>>\ntext", True),
    (c("detectable_format:title"), "<< >>\ntext", False),
    (c("combination:two_responses"), "first answer\n******\nsecond answer", True),
    (c("combination:two_responses"), "same\n******\nsame", False),
    (c("detectable_content:number_placeholders", num_placeholders=2), "at [place] on [date]", True),
    (c("detectable_content:number_placeholders", num_placeholders=3), "at [place] on [date]", False),
    (c("keywords:existence", keywords=["sea", "salt"]), "the sea is full of salt", True),
    (c("keywords:forbidden_words", forbidden_words=["sea"]), "the Sea is blue", False),
    (c("length_constraints:number_sentences", num_sentences=3, relation="at least"), "Dr. Smith came. He sat. He left.", True),
    (c("change_case:capital_word_frequency", capital_frequency=2, capital_relation="at least"), "VERY GOOD idea", True),
    (c("startend:end_checker", end_phrase="Any other questions?"), '"Fine. Any other questions?"', True),
]


@pytest.mark.parametrize(("constraint", "response", "followed"), CASES)
def test_checkers_strict(constraint, response, followed):
    assert check_constraints(P, response, [constraint]).followed == [followed]


def test_loose_forgives_a_preamble_line_and_asterisks():
    quote = c("startend:quotation")
    response = 'Sure, here it is:\n"The sea is wide."'
    assert check_constraints(P, response, [quote], mode="strict").followed == [False]
    assert check_constraints(P, response, [quote], mode="loose").followed == [True]


def test_fraction_and_all_or_nothing():
    cs = [c("change_case:english_lowercase"), c("punctuation:no_comma")]
    response = "the sea is wide, and the sky is blue today."
    frac = check_constraints(P, response, cs)
    strict_all = check_constraints(P, response, cs, all_or_nothing=True)
    assert (frac.reward, frac.followed) == (0.5, [True, False]) and "punctuation:no_comma" in frac.reason
    assert strict_all.reward == 0.0


def test_empty_response_follows_nothing():
    assert check_constraints(P, "", [c("punctuation:no_comma")]).followed == [False]


def test_failures_are_reported_not_raised():
    bogus = c("keywords:frequency", keyword="sea", frequency=2, relation="roughly")  # lm-eval raises ValueError
    v = check_constraints(P, "sea sea", [bogus])
    assert v.status == "error" and "ValueError" in v.reason and v.reward == 0.0
    assert check_constraints(P, "x", []).status == "error"
    assert check_constraints(P, None, [c("punctuation:no_comma")]).reward == 0.0
    with pytest.raises(ValueError, match="unknown IFEval instruction"):
        build_constraint("keywords:nonexistent", 0, P)


def test_constraint_round_trips_through_json():
    original = build_constraint("keywords:letter_frequency", 3, P)
    assert Constraint(**json.loads(json.dumps(vars(original)))) == original
