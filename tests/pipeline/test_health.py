"""Run health on the real ``Orchestrator`` with in-process actors (``inproc``) and a real
``Scorer`` (verifiers in ``VerifierPool`` worker processes): the error budget, a stop request (SIGINT),
collapse warnings; and the pure counters behind them.

The subprocess versions (``zaya-rl train`` exits, Ctrl-C leaves a checkpoint) are ``test_stopping.py``.
Run ``python -m pytest tests/pipeline/test_health.py -q``.
"""

from __future__ import annotations

import asyncio

import pytest
from inproc import Trainer, arithmetic_answer, inproc_orchestrator, run_bounded

from zaya_rl.config import config_from_dict
from zaya_rl.pipeline.health import CollapseMonitor, ErrorBudget
from zaya_rl.pipeline.orchestrator import Orchestrator, Window
from zaya_rl.pipeline.records import Group, GroupSpec, Rollout
from zaya_rl.pipeline.stopping import RunStopped

G, GPS = 4, 2


def _cfg(env: dict, **pipeline):
    return config_from_dict({
        "run_dir": "/tmp/unused", "rollout": {"engine": "fake", "sampling": {"max_new_tokens": 32}},
        "algorithm": {"group_size": G}, "pipeline": {"groups_per_step": GPS, "max_lag": 1, **pipeline},
        "data": {"environments": [env]}, "canary": {"enabled": False},
        "logging": {"collapse_window": 3},
    })


def _run(orch, steps):
    run_bounded(orch.run(steps))


def _group(env: str, statuses: list[str], texts: list[str] | None = None) -> Group:
    texts = texts or ["x"] * len(statuses)
    spec = GroupSpec(0, env, 0, 0, {})
    return Group(spec, [Rollout(0, i, [1], [2], [-0.1], [0], "stop", t, status=s, reason=f"{s} {i}")
                        for i, (s, t) in enumerate(zip(statuses, texts, strict=True))])


def test_the_error_budget_counts_whole_failed_groups_in_a_row_per_environment():
    budget = ErrorBudget(3)
    budget.group_scored(_group("a", ["error"] * 4))
    budget.group_scored(_group("b", ["error"] * 4))
    budget.problem_failed("a", "TimeoutError: slow")
    budget.group_scored(_group("a", ["error", "error", "ok", "timeout"]))  # one verified rollout: reset
    assert budget.streak["a"] == 0 and budget.streak["b"] == 1
    budget.group_scored(_group("a", ["error"] * 4), budgeted=False)  # evaluation: counted, not budgeted
    assert budget.errors == 4 + 4 + 1 + 3 + 4 and budget.streak["a"] == 0
    budget.group_scored(_group("a", ["error"] * 4))
    budget.group_scored(_group("a", ["timeout"] * 4))
    with pytest.raises(RunStopped, match=r"environment 'a' failed 3 groups in a row \(verifier error: error 3\)"):
        budget.group_scored(_group("a", ["error"] * 4))


def test_a_verifier_that_always_raises_stops_the_real_orchestrator_with_its_exception():
    cfg = _cfg({"name": "chaos", "kwargs": {"raise_frac": 1.0}}, max_failed_groups=4)
    orch, scorer = inproc_orchestrator(cfg, lambda prompt: "Answer: 1")
    try:
        with pytest.raises(RunStopped) as e:
            _run(orch, steps=3)  # before the error budget: never a step, new groups forever
    finally:
        scorer.pool.close()
    assert "environment 'chaos' failed 4 groups in a row" in str(e.value)
    assert "RuntimeError: chaos: injected verifier exception" in str(e.value)
    assert orch.step == 0 and orch.budget.errors >= 4 * G


def test_a_stop_request_finishes_the_step_in_flight_and_starts_no_other():
    cfg = _cfg({"name": "arithmetic", "difficulty": 0})
    orch: Orchestrator | None = None

    class StopAfterTwo(Trainer):
        def train_step(self, samples):
            if len(self.batches) == 1:  # step 2 is in flight when SIGINT arrives
                orch.stop_requested.set()
            return super().train_step(samples)

    trainer = StopAfterTwo()
    orch, scorer = inproc_orchestrator(cfg, lambda prompt: "Answer: 1", trainer)
    try:
        _run(orch, steps=50)
    finally:
        scorer.pool.close()
    assert orch.step == 2 and len(trainer.batches) == 2
    asyncio.run(orch.stop())  # what the run does next: the books balance with the rest interrupted
    assert orch.acc.generated == orch.acc.trained + orch.acc.total_dropped


def test_window_distinct_responses_per_group():
    w = Window()
    w.add(_group("a", ["ok"] * 4, ["0000", "0000", "0000", "0000"]))
    w.add(_group("a", ["ok"] * 4, ["0000", "0000", "0000", "0000"]))
    assert w.metrics()["rollout/distinct_per_group"] == 0.5  # 1 distinct text, 2 prompts
    w.add(_group("a", ["ok"] * 4, ["1", "2", "3", "4"]))
    assert w.metrics()["rollout/distinct_per_group"] == 5 / 3


def test_collapse_warnings_start_after_the_window_and_rearm_after_recovery():
    mon = CollapseMonitor(window=3, min_distinct_per_group=0.5)
    healthy = {"rollout/reward": 0.4, "rollout/distinct_per_group": 2.0}
    dead = {"rollout/reward": 0.0, "rollout/distinct_per_group": 0.25}
    assert mon.check(1, healthy) == [] and mon.check(2, dead) == [] and mon.check(3, dead) == []
    new = mon.check(4, dead)
    assert [w["kind"] for w in new] == ["reward_collapse", "output_collapse"] and new[0]["step"] == 4
    assert "0.25 distinct responses per prompt" in new[1]["message"]
    assert mon.check(5, dead) == []  # once per episode
    mon.check(6, {**dead, "rollout/reward": 0.1})  # reward recovered, outputs still collapsed
    assert mon.active == {"output_collapse"}
    for step in (7, 8):
        assert mon.check(step, dead) == []
    assert [w["kind"] for w in mon.check(9, dead)] == ["reward_collapse"]
    assert len(mon.warnings) == 3


def test_the_real_orchestrator_warns_when_every_output_is_the_same_wrong_string():
    cfg = _cfg({"name": "arithmetic", "difficulty": 0}, max_lag=0)  # sync: each step's window is GPS groups
    orch, scorer = inproc_orchestrator(cfg, lambda prompt: "0000000000")
    try:
        _run(orch, steps=4)
    finally:
        scorer.pool.close()
    assert [(w["kind"], w["step"]) for w in orch.collapse.warnings] == [("reward_collapse", 3),
                                                                        ("output_collapse", 3)]
    steps = [r for r in orch.logger.records if "train/loss" in r]
    assert [r["rollout/distinct_per_group"] for r in steps] == [1 / GPS] * 4  # one string for two prompts
    assert steps[-1]["health/warnings"] == 2.0



@pytest.mark.parametrize("mode", ["async", "sync"])  # sync: the step's other groups must not wait for it
def test_a_level_too_slow_to_generate_is_retired_and_the_run_goes_on(mode):
    cfg = config_from_dict({
        "run_dir": "/tmp/unused", "rollout": {"engine": "fake", "sampling": {"max_new_tokens": 32}},
        "algorithm": {"group_size": G},
        "pipeline": {"mode": mode, "groups_per_step": GPS, "max_lag": 0, "generate_timeout_s": 0.5,
                     "scorer_processes": 2},
        "data": {"environments": [{"name": "chaos", "difficulty": "adaptive", "kwargs": {"slow_from": 1}}],
                 "adaptive": {"min_prompts_before_check": 1}},  # one right group at h = 0 climbs to 1
        "canary": {"enabled": False},
    })
    orch, scorer = inproc_orchestrator(cfg, arithmetic_answer)
    try:
        _run(orch, steps=6)  # before: every level-1 draw blocked a worker for the call deadline, then failed
    finally:
        scorer.pool.close()
    assert orch.step == 6 and orch.slow_levels == {"chaos": 1}
    ladder = orch.sampler.controller.ladders["chaos"]
    assert (ladder.h, ladder.ceiling) == (0, 0)  # the ladder climbed to 1, then stopped below it
    assert orch.budget.errors == 0  # a retired level is not an environment error
    steps = [r for r in orch.logger.records if "train/loss" in r]
    assert steps[-1]["env/chaos/ceiling"] == 0.0


def test_a_fixed_level_too_slow_to_generate_spends_the_error_budget_in_sync_mode():
    # Sync mode generates a step's groups together (pipeline.lockstep): a group whose problem never comes
    # must release the others, and the error budget must stop the run instead of a silent hang.
    cfg = _cfg({"name": "chaos", "difficulty": 1, "kwargs": {"slow_from": 1}}, mode="sync", max_failed_groups=3,
               generate_timeout_s=0.5, scorer_processes=2)
    orch, scorer = inproc_orchestrator(cfg, arithmetic_answer)

    async def run_then_stop():  # as the run does: stop() collects the other failed groups
        try:
            await orch.run(2)
        finally:
            await orch.stop()

    try:
        with pytest.raises(RunStopped, match=r"environment 'chaos' failed 3 groups in a row \(problem generation"):
            run_bounded(run_then_stop())
    finally:
        scorer.pool.close()
    assert orch.step == 0 and orch.slow_levels == {} and orch.acc.generated == 0
