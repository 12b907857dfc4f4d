"""The code environments (procedural stdin/stdout tasks, HumanEval): python -m pytest tests/environments/test_code_env.py -q

Expected outputs come from the in-process solvers; each family's reference program is an independent
implementation run in the sandbox, so a passing reference checks both.
"""

from __future__ import annotations

import json
from importlib.metadata import entry_points

import pytest

from environments.base import Problem, Score
from environments.builtin import code as code_env
from environments.builtin.code import FAMILIES, CodeEnv, HumanEvalEnv, _humaneval
from rewards.code import CodeVerdict


def test_registered_by_entry_point():
    eps = {ep.name: ep for ep in entry_points(group="zaya_rl.environments")}  # load only ours
    assert eps["code"].load() is CodeEnv and eps["humaneval"].load() is HumanEvalEnv


def test_at_least_eight_families_unlocking_with_difficulty():
    assert len(FAMILIES) >= 8
    env = CodeEnv(num_tests=1)
    assert {env.generate(s, 0).metadata["family"] for s in range(80)} == {
        f for f, fam in FAMILIES.items() if fam.min_difficulty == 0}
    assert {env.generate(s, 9).metadata["family"] for s in range(300)} == set(FAMILIES)


def test_deterministic_serialisable_and_sized_by_difficulty():
    env = CodeEnv(families=["sum_list"])
    a = env.generate(5, 3)
    assert a == env.generate(5, 3) and a != env.generate(6, 3)
    assert Problem.from_dict(json.loads(json.dumps(a.to_dict()))) == a
    size = lambda d: sum(len(t["stdin"]) for s in range(10) for t in env.generate(s, d).metadata["tests"])  # noqa: E731
    assert size(0) < size(4) < size(8)
    assert "Example input:" in a.prompt_text and a.metadata["tests"][0]["stdin"].strip() in a.prompt_text


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_reference_passes_and_wrong_fails(family):
    env = CodeEnv(num_tests=2, families=[family])
    for d in sorted({FAMILIES[family].min_difficulty, 9}):
        p = env.generate(3, d)
        ok = env.verify(p, env.reference_response(p))
        assert (ok.reward, ok.accuracy, ok.status) == (1.0, 1.0, "ok"), ok.reason
        assert env.verify(p, env.wrong_response(p)).accuracy == 0.0


def test_partial_credit_and_early_exit():
    tests = [{"stdin": "1\n5\n", "expected": "5\n"}, {"stdin": "2\n1 2\n", "expected": "3\n"},
             {"stdin": "3\n1 1 1\n", "expected": "3\n"}]
    p = Problem("code", 0, 0, [{"role": "user", "content": "sum"}], None, {"family": "sum_list", "tests": tests})
    cheat = "```python\nn = int(input())\nprint(3 if n > 1 else 4)\n```"  # passes tests 2 and 3 only
    frac = CodeEnv(reward="fraction").verify(p, cheat)
    assert frac.reward == pytest.approx(2 / 3) and frac.accuracy == 0.0
    binary = CodeEnv(reward="all").verify(p, cheat)
    assert binary.reward == 0.0 and "1/3" not in binary.reason and "wrong_answer" in binary.reason


def test_no_code_and_crashing_code():
    env = CodeEnv(num_tests=1)
    p = env.generate(0, 0)
    assert env.verify(p, "   ").format_ok is False
    assert env.verify(p, None).reward == 0.0
    crash = env.verify(p, "```python\nraise SystemExit(1)\n```")
    assert (crash.reward, crash.status, crash.format_ok) == (0.0, "ok", True) and "error" in crash.reason


def test_sandbox_failure_becomes_failed_score(monkeypatch):
    monkeypatch.setattr(code_env, "score_stdio", lambda *a, **k: CodeVerdict(0.0, 0, 1, [], "sandbox: no fork"))
    env = CodeEnv(num_tests=1)
    p = env.generate(0, 0)
    assert env.verify(p, env.reference_response(p)) == Score.failed("error", "sandbox: no fork")


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="reward"):
        CodeEnv(reward="most")
    with pytest.raises(ValueError, match="unknown families"):
        CodeEnv(families=["sudoku"])


def test_humaneval_sample():
    env = HumanEvalEnv()
    assert len(_humaneval()) == 164
    for seed in (0, 32, 100, 163):
        p = env.generate(seed, 0)
        assert p.metadata["task_id"] == f"HumanEval/{seed}" and env.generate(seed + 164, 0).metadata == p.metadata
        assert env.verify(p, env.reference_response(p)).accuracy == 1.0
        assert env.verify(p, env.wrong_response(p)).accuracy == 0.0


def test_humaneval_accepts_a_bare_body():
    env = HumanEvalEnv()
    p = env.generate(0, 0)
    body = next(x for x in _humaneval() if x["task_id"] == "HumanEval/0")["canonical_solution"]
    assert env.verify(p, f"```python\n{body}```").accuracy == 1.0


@pytest.mark.slow
def test_humaneval_all_164_canonical_solutions_pass():
    env = HumanEvalEnv()
    failures = [s for s in range(164) if env.verify(p := env.generate(s, 0), env.reference_response(p)).accuracy != 1.0]
    assert failures == []
