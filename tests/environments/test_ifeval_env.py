"""The instruction-following environment: python -m pytest tests/environments/test_ifeval_env.py -q"""

from __future__ import annotations

import json
from importlib.metadata import entry_points

import pytest

from environments.base import Problem, Score
from environments.builtin import ifeval as if_env
from environments.builtin.ifeval import EASY, EXTRA_CONFLICTS, MAX_CONSTRAINTS, IFEvalEnv
from rewards.ifeval import IFVerdict, conflicts

ENV = IFEvalEnv()


def ids(p: Problem) -> list[str]:
    return [c["instruction_id"] for c in p.metadata["constraints"]]


def test_registered_by_entry_point():
    eps = {ep.name: ep for ep in entry_points(group="zaya_rl.environments")}  # load only ours
    assert eps["ifeval"].load() is IFEvalEnv


def test_deterministic_and_serialisable():
    a = ENV.generate(9, 3)
    assert a == ENV.generate(9, 3) and a != ENV.generate(10, 3)
    back = Problem.from_dict(json.loads(json.dumps(a.to_dict())))
    assert back == a
    assert a.prompt_text.startswith(a.metadata["base_prompt"])
    assert all(c["description"] in a.prompt_text for c in a.metadata["constraints"])


@pytest.mark.parametrize("difficulty", range(6))
def test_number_kind_and_compatibility_of_constraints(difficulty):
    table = conflicts()
    for a, b in EXTRA_CONFLICTS:
        table[a].add(b)
    for seed in range(40):
        chosen = ids(ENV.generate(seed, difficulty))
        assert len(chosen) == min(MAX_CONSTRAINTS, 1 + difficulty // 2)
        if difficulty % 2 == 0:
            assert set(chosen) <= set(EASY)
        for i, a in enumerate(chosen):
            assert all(b not in table[a] and a not in table[b] for b in chosen[i + 1:]), chosen


def test_odd_difficulties_reach_hard_types():
    seen = {i for seed in range(200) for i in ids(ENV.generate(seed, 5))}
    assert len(seen - set(EASY)) >= 10


def test_reference_responses_where_constructible():
    """Constructed references pass; all easy-pool problems have one, the rest nearly all."""
    built = {0: 0, 1: 0}
    for difficulty in range(6):
        for seed in range(30):
            p = ENV.generate(seed, difficulty)
            try:
                reference = ENV.reference_response(p)
            except NotImplementedError:
                assert difficulty % 2 == 1, ids(p)
                continue
            built[difficulty % 2] += 1
            score = ENV.verify(p, reference)
            assert (score.reward, score.accuracy) == (1.0, 1.0), (ids(p), score.reason)
    assert built[0] == 90 and built[1] >= 75


def test_response_language_has_no_reference():
    p = next(p for s in range(300) if "language:response_language" in ids(p := ENV.generate(s, 1)))
    with pytest.raises(NotImplementedError, match="response_language"):
        ENV.reference_response(p)


def test_wrong_response_scores_zero():
    for seed in range(10):
        p = ENV.generate(seed, 4)
        s = ENV.verify(p, ENV.wrong_response(p))
        assert (s.reward, s.accuracy, s.status) == (0.0, 0.0, "ok")


def test_partial_reward_and_all_or_nothing():
    p = Problem("ifeval", 0, 2, [{"role": "user", "content": "x"}], None, {
        "base_prompt": "Write about the sea.", "topic": "the sea", "constraints": [
            {"instruction_id": "punctuation:no_comma", "kwargs": {}, "description": ""},
            {"instruction_id": "change_case:english_lowercase", "kwargs": {}, "description": ""}]})
    response = "the sea is calm today and the boats are out on the water."
    assert IFEvalEnv().verify(p, response).reward == 1.0
    upper = response.capitalize()
    half = IFEvalEnv().verify(p, upper)
    assert (half.reward, half.accuracy) == (0.5, 0.0) and "english_lowercase" in half.reason
    assert IFEvalEnv(all_or_nothing=True).verify(p, upper).reward == 0.0


def test_loose_mode():
    p = Problem("ifeval", 0, 0, [{"role": "user", "content": "x"}], None, {
        "base_prompt": "Write about the sea.", "topic": "the sea",
        "constraints": [{"instruction_id": "startend:quotation", "kwargs": {}, "description": ""}]})
    response = 'Here you go:\n"The sea is calm."'
    assert IFEvalEnv(mode="strict").verify(p, response).reward == 0.0
    assert IFEvalEnv(mode="loose").verify(p, response).reward == 1.0


def test_checker_failure_becomes_failed_score(monkeypatch):
    monkeypatch.setattr(if_env, "check_constraints", lambda *a, **k: IFVerdict(0.0, status="error", reason="boom"))
    assert ENV.verify(ENV.generate(0, 0), "text") == Score.failed("error", "boom")


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="mode"):
        IFEvalEnv(mode="lenient")
