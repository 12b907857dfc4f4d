"""TTC (aggregation) prompts in RL: the tail cache, and the real orchestrator with in-process actors.

The orchestrator runs unchanged on its asyncio loop with in-process actors (``inproc.py``: a scripted
rollout engine through the real ``RolloutWorker`` and ``WorkerSet``, the arithmetic environment as scorer, a
trainer that records batches), so no Ray and no model are needed.
Run ``python -m pytest tests/pipeline/test_ttc.py -q``.
"""

from __future__ import annotations

import asyncio
import itertools
import re

import pytest
from inproc import TOK, Scorer, run_orchestrator

from environments.base import Problem
from environments.registry import get_spec
from environments.sampler import Draw
from zaya_rl.config import config_from_dict
from zaya_rl.models.tokenizer import encode_chat
from zaya_rl.pipeline.records import Group, GroupSpec, Rollout
from zaya_rl.pipeline.setup import make_sampler
from zaya_rl.pipeline.ttc import TailCache, TTCMixer
from zaya_rl.rsa.prompts import build_aggregation_messages

C, TAU, G = 2, 6, 4


def _script():
    """Completions ``step NNN\\nAnswer: v``: right on even calls, off by one on odd ones (rewards vary in a group)."""
    calls = itertools.count()

    def script(prompt_ids):
        k = next(calls)
        a, b = map(int, re.search(r"(\d+)\+(\d+)=", TOK.decode(prompt_ids)).groups())
        text = f"step {k:03d}\nAnswer: {a + b + k % 2}"
        return [*TOK.encode(text, add_special_tokens=False), TOK.eos_token_id]

    return script


def make_cfg(fraction=0.5, **ttc):
    return config_from_dict({
        "run_dir": "/tmp/unused", "rollout": {"engine": "fake", "sampling": {"max_new_tokens": 32}},
        "algorithm": {"group_size": G}, "pipeline": {"groups_per_step": 4, "max_lag": 1},
        "data": {"environments": [{"name": "arithmetic", "difficulty": 0}]}, "canary": {"enabled": False},
        "ttc": {"fraction": fraction, "tails_per_prompt": C, "tail_tokens": TAU, **ttc},
    })


# ------------------------------------------------------------------ tests
def test_tail_cache_is_bounded_and_takes_the_freshest_usable_problem():
    cache = TailCache(max_problems=2, per_problem=3)
    for seed in (1, 2, 3):
        cache.add(Draw("e", seed, 0), {"seed": seed}, [[seed, 0]])
    assert len(cache) == 2  # problem 1 evicted (least recently updated)
    cache.add(Draw("e", 2, 0), {"seed": 2}, [[2, 1], [2, 2], [2, 3]])
    entry = cache.take(min_completions=2, max_uses=1)
    assert entry.problem == {"seed": 2} and list(entry.completions) == [[2, 1], [2, 2], [2, 3]]  # oldest fell out
    assert cache.take(min_completions=2, max_uses=1) is None  # used up; problem 3 has one completion only
    assert len(cache) == 1


def test_ttc_groups_are_built_from_own_tails_bounded_scored_by_the_same_verifier_and_separate():
    cfg = make_cfg(fraction=0.5)
    orch, groups, scorer, trainer, logger = run_orchestrator(cfg, 6, _script())
    normal = [g for g in groups if g.spec.kind == "train"]
    ttc = [g for g in groups if g.spec.kind == "ttc"]
    assert ttc and normal and len(trainer.batches) == 6
    finished_before = {}
    for g in groups:  # completions of the same problem's normal groups, in finishing order
        key = (g.spec.env, g.spec.seed, g.spec.difficulty)
        if g.spec.kind == "ttc":
            # own tails: every excerpt is the last τ tokens of a completion of this problem finished earlier
            earlier = {TOK.decode(r.token_ids[:-1][-TAU:]) for r in finished_before[key]}
            text = g.spec.problem["messages"][-1]["content"]
            excerpts = re.findall(r"----- Excerpt \d of 2 -----\n(.*?)(?=\n\n-----)", text, flags=re.S)
            assert len(excerpts) == C and set(excerpts) <= earlier, (excerpts, earlier)
            # bounded: the template around the problem plus C·τ tokens
            original = asyncio.run(Scorer().make_problem({"env": g.spec.env, "seed": g.spec.seed, "difficulty": 0,
                                                          "kwargs": {}}))
            skeleton = encode_chat(TOK, build_aggregation_messages(original["messages"], [""] * C))
            assert all(len(r.prompt_ids) <= len(skeleton) + C * TAU for r in g.rollouts)
            # same verifier, same ground truth: rewards equal verifying against the original problem
            env = get_spec("arithmetic").create()
            assert [r.reward for r in g.rollouts] == [env.verify(Problem.from_dict(original), r.text).reward
                                                      for r in g.rollouts]
            assert g.spec.problem["answer"] == original["answer"]
        else:
            finished_before.setdefault(key, []).extend(g.rollouts)
    for g in groups:  # each group's advantages come from its own rewards only (MaxRL, algorithms.md §3)
        rewards = [r.reward for r in g.rollouts]
        mu = sum(rewards) / len(rewards)
        expected = [0.0 if mu <= 1e-6 else (x - mu) / mu for x in rewards]
        assert [r.advantage for r in g.rollouts] == pytest.approx(expected)
        assert len({tuple(r.prompt_ids) for r in g.rollouts}) == 1 and {r.group_id for r in g.rollouts} == {g.spec.group_id}
    assert any(len({r.reward for r in g.rollouts}) > 1 for g in ttc)  # the check above is not vacuous
    steps = [r for r in logger.records if "train/loss" in r]
    assert all("ttc/cache_problems" in r for r in steps) and any("ttc/group_frac" in r for r in steps)
    assert any(r.get("ttc/samples", 0) > 0 and "ttc/accuracy" in r and "ttc/base_accuracy" in r for r in steps)


def test_pending_ttc_groups_are_not_rebuilt_from_a_draw_and_stay_in_the_books():
    cfg = make_cfg(fraction=1.0)
    orch, groups, _, _, _ = run_orchestrator(cfg, 3, _script())
    # A TTC group waiting for the trainer: its draw is unknown, so a checkpoint re-admits nothing for it,
    # while its samples stay pending (a resume books them ``interrupted``).
    spec = GroupSpec(10_000, "arithmetic", 5, 0, {"messages": []}, kind="ttc")
    kept = [Rollout(10_000, 0, [1], [2], [-0.1], [3], "stop", "x", status="ok")]
    orch.ready.append((Group(spec, kept), kept))
    orch.group_tasks[object()] = None  # an in-flight TTC group (key: its task)
    assert all(isinstance(d, Draw) for d in orch.pending_draws())
    assert len(orch.pending_draws()) == 0
    assert sum(g.spec.kind == "ttc" for g in groups) > 0


def test_ttc_groups_do_not_move_the_difficulty_ladders():
    cfg = make_cfg(fraction=0.5)
    observed = []
    orig = make_sampler(cfg).__class__.observe

    def spy(self, env, difficulty, accs):
        observed.append(env)
        return orig(self, env, difficulty, accs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(make_sampler(cfg).__class__, "observe", spy)
        orch, groups, _, _, _ = run_orchestrator(cfg, 4, _script())
    assert len(observed) == sum(g.spec.kind == "train" for g in groups)


def test_decisions_are_seeded_and_realise_the_configured_fraction():
    assert TTCMixer.from_run_config(make_cfg(fraction=0.0)) is None

    def mixer(seed):
        m = TTCMixer(make_cfg(fraction=0.3, uses_per_problem=10_000).ttc, seed=seed, tokenizer=TOK)
        m.cache.add(Draw("arithmetic", 1, 0), {"messages": [{"role": "user", "content": "4+1="}]},
                    [TOK.encode(f"Answer: {i}", add_special_tokens=False) for i in range(G)])
        return m

    assert TTCMixer(make_cfg().ttc, seed=0, tokenizer=TOK).take(0) is None  # empty cache: a normal group
    a, b, other = mixer(0), mixer(0), mixer(1)
    prompts = [a.take(i) for i in range(2000)]
    assert [p and p.problem for p in prompts[:200]] == [p and p.problem for p in (b.take(i) for i in range(200))]
    assert [p is None for p in prompts[:200]] != [other.take(i) is None for i in range(200)]
    assert 0.27 < sum(p is not None for p in prompts) / len(prompts) < 0.33
    assert {p.sources for p in prompts if p} <= {(i, j) for i in range(G) for j in range(G) if i != j}
