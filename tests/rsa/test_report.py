"""Per-round summary rows against hand-computed values. ``python -m pytest tests/rsa/test_report.py -q``."""

from __future__ import annotations

import json

from environments.base import Problem, Score
from zaya_rl.rsa.algorithm import Candidate, RoundResult, RSAResult
from zaya_rl.rsa.report import markdown_table, summarize, to_json
from zaya_rl.rsa.vote import Vote


def cand(i, acc, extracted, n_tokens, reason="stop", prompt=10, status="ok"):
    score = Score.failed("timeout", "slow") if status != "ok" else Score(acc, acc, extracted=extracted)
    return Candidate(index=i, token_ids=[1] * n_tokens, text="", finish_reason=reason, score=score,
                     prompt_tokens=prompt, sources=())


def result(seed, rounds):
    p = Problem(env="e", seed=seed, difficulty=1, messages=[{"role": "user", "content": "q"}], answer="1")
    return RSAResult(problem=p, rounds=[RoundResult(t, c, Vote(a, 1, 1, 0, 1), a, t, acc)
                                        for t, (c, a, acc) in enumerate(rounds)])


def test_summary_rows_hand_computed():
    a = result(0, [([cand(0, 1.0, "1", 4), cand(1, 0.0, "2", 8, "length")], "1", 1.0),
                   ([cand(0, 1.0, "1", 2, prompt=50), cand(1, 1.0, "1", 2, prompt=60)], "1", 1.0)])
    b = result(1, [([cand(0, 0.0, None, 6), cand(1, 0.0, "3", 6, status="timeout")], "3", 0.0),
                   ([cand(0, 0.0, "3", 10, "length", prompt=70), cand(1, 1.0, "1", 2, prompt=40)], "3", 0.0)])
    r0, r1 = summarize([a, b])
    # Round 0: mean acc = mean(0.5, 0.0); majority = mean(1, 0); answered: "1","2" in a; none in b (None, failed).
    assert r0 == {"round": 0, "label": "initial", "mean_accuracy": 0.25, "majority_accuracy": 0.5,
                  "answered": 0.5, "mean_new_tokens": 6.0, "truncated": 0.25, "max_prompt_tokens": 10,
                  "verifier_errors": 1}
    assert r1 == {"round": 1, "label": "after aggregation 1", "mean_accuracy": 0.75, "majority_accuracy": 0.5,
                  "answered": 1.0, "mean_new_tokens": 4.0, "truncated": 0.25, "max_prompt_tokens": 70,
                  "verifier_errors": 0}
    table = markdown_table([r0, r1]).splitlines()
    assert len(table) == 4 and table[2].startswith("| 0 | initial | 0.250 | 0.500 |")
    data = json.loads(to_json([r0, r1], {"k": 1}, [a, b]))
    assert data["settings"] == {"k": 1} and len(data["rounds"]) == 2
    assert [rd["accuracy"] for rd in data["problems"][1]["rounds"]] == [0.0, 0.0]
    assert summarize([]) == []
