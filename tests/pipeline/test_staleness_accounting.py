"""Admission control, lag, the order groups reach the trainer, and the sample books.

The schedule tests run the real ``Orchestrator`` (in-process actors, ``inproc.py``) on a scripted engine
whose completion lengths are heavy-tailed (capped Pareto, α = 1.1) and whose generation time grows with
length (one event-loop sleep per token), so late groups are the long ones, as with a real model.
Run ``python -m pytest tests/pipeline/test_staleness_accounting.py -q``.
"""

import random
import re
import statistics

import pytest
from inproc import TOK, run_orchestrator

from zaya_rl.config import config_from_dict
from zaya_rl.pipeline.accounting import Accounting, AccountingError
from zaya_rl.pipeline.staleness import AdmissionOrder, admissible_count, admission_open, is_stale, lag

MAX_NEW, GPS, G, STEPS = 128, 4, 4, 10


def heavy_tailed(seed: int):
    """``.``×n then ``Answer: v``: n ~ Pareto(x_m = 6, α = 1.1) capped, the answer right half the time."""
    rng = random.Random(seed)

    def script(prompt_ids):
        a, b = map(int, re.search(r"(\d+)\+(\d+)=", TOK.decode(prompt_ids)).groups())
        n = min(MAX_NEW - 12, int(6 / (1.0 - rng.random()) ** (1 / 1.1)))
        text = "." * n + f"\nAnswer: {a + b + rng.randint(0, 1)}"
        return [*TOK.encode(text, add_special_tokens=False), TOK.eos_token_id]

    return script


def make_cfg(max_lag: int, **pipeline):
    return config_from_dict({
        "run_dir": "/tmp/unused", "rollout": {"engine": "fake", "sampling": {"max_new_tokens": MAX_NEW}},
        "algorithm": {"group_size": G}, "pipeline": {"groups_per_step": GPS, "max_lag": max_lag, **pipeline},
        "data": {"environments": [{"name": "arithmetic", "difficulty": 0}]}, "canary": {"enabled": False},
    })


def run(cfg):
    orch, groups, _, trainer, logger = run_orchestrator(cfg, STEPS, heavy_tailed(0), token_delay=0.002,
                                                        train_s=0.01)
    trained = [s for batch in trainer.batches for s in batch]
    generated = [r for g in groups for r in g.rollouts]
    mean_len = (statistics.mean(len(s.token_ids) for s in trained), statistics.mean(len(r.token_ids) for r in generated))
    steps = [r for r in logger.records if "train/loss" in r]
    return orch, groups, trainer, trained, mean_len, steps


@pytest.mark.parametrize("max_lag", [0, 1, 2])
def test_default_trains_every_group_in_admission_order_within_max_lag(max_lag):
    cfg = make_cfg(max_lag)
    assert cfg.pipeline.stale_policy == "wait"
    orch, groups, trainer, trained, (trained_len, generated_len), steps = run(cfg)
    assert len(trainer.batches) == STEPS and not orch.acc.dropped  # nothing discarded
    assert max(s.lag for s in trained) <= max_lag
    assert max(r["pipeline/lag_max"] for r in steps) <= max_lag
    # step k trains exactly the groups admitted k-th (group ids are given at admission), in that order
    assert [g.spec.group_id for g in groups] == list(range(STEPS * GPS))
    assert [s.prompt_ids for s in trained] == [r.prompt_ids for g in groups for r in g.rollouts]
    # no length bias: every generated rollout of the trained steps is trained (tolerance 2%, measured 0%)
    assert abs(trained_len - generated_len) <= 0.02 * generated_len, (trained_len, generated_len)
    assert generated_len > 20  # the heavy tail is there (mean of the capped Pareto ≈ 31 tokens)
    if max_lag >= 1:  # asynchrony is kept: later batches were generated while earlier ones trained
        assert sum(s.lag > 0 for s in trained) / len(trained) > 0.25


def test_drop_is_opt_in_and_shows_the_length_bias_it_causes():
    # The old default: groups finishing after later-admitted ones are trained in completion order and the
    # stale ones discarded; they are the long ones. (max_lag 2 also used to stall the loop: a stale drop
    # freed admission room only after admission had been computed.)
    for max_lag in (1, 2):
        orch, _, _, trained, (trained_len, generated_len), _ = run(make_cfg(max_lag, stale_policy="drop"))
        assert orch.acc.dropped["stale"] > 0 and max(s.lag for s in trained) <= max_lag
        assert trained_len < 0.95 * generated_len, (trained_len, generated_len)  # measured ≈ 0.85


def test_train_policy_keeps_every_group_and_counts_the_stale_ones():
    orch, _, _, trained, (trained_len, generated_len), _ = run(make_cfg(1, stale_policy="train"))
    assert not orch.acc.dropped and abs(trained_len - generated_len) <= 0.02 * generated_len
    # completion order: lag may exceed max_lag; a group counts as stale by its oldest rollout
    groups = [trained[i : i + G] for i in range(0, len(trained), G)]
    assert orch.acc.stale_trained == sum(G for g in groups if max(s.lag for s in g) > 1) > 0


def test_admission_order_releases_finished_groups_in_order():
    order = AdmissionOrder(in_order=True)
    for key in "abcd":
        order.admit(key)
    assert order.finish("b") == [] and order.held == {"b"}
    assert order.finish("a") == ["a", "b"]
    assert order.finish("d") == [] and order.finish("c") == ["c", "d"] and not order.held
    assert AdmissionOrder(in_order=False).finish("x") == ["x"]


def test_sync_schedule_admits_one_batch_per_published_version():
    # max_lag=0: version 0 admits exactly groups_per_step groups, none more until version 1 is published.
    assert admissible_count(active_groups=0, published_version=0, groups_per_step=4, max_lag=0) == 4
    assert not admission_open(active_groups=4, published_version=0, groups_per_step=4, max_lag=0)
    # step 1 trained (4 groups consumed) but not yet published: still closed.
    assert not admission_open(active_groups=4, published_version=0, groups_per_step=4, max_lag=0)
    assert admissible_count(active_groups=4, published_version=1, groups_per_step=4, max_lag=0) == 4


def test_lag_and_staleness():
    assert lag(5, 3) == 2
    assert is_stale(5, 3, max_lag=1) and not is_stale(5, 4, max_lag=1)


def test_accounting_balances_and_detects_loss():
    acc = Accounting()
    acc.add_generated(16)
    acc.add_trained(8)
    acc.add_dropped("stale", 4)
    acc.check(pending=4)
    with pytest.raises(AccountingError, match="does not balance"):
        acc.check(pending=3)
    with pytest.raises(ValueError, match="unknown drop reason"):
        acc.add_dropped("lost", 1)
    again = Accounting.from_state_dict(acc.state_dict())
    assert again == acc and again.metrics()["samples/dropped/stale"] == 4.0


def test_every_step_logs_the_trainer_call_time():
    """``perf/train_call_s``: the driver's round trip of each trainer call (here a trainer that takes 50 ms)."""
    orch, _, _, _, logger = run_orchestrator(make_cfg(1), 3, heavy_tailed(0), train_s=0.05)
    steps = [r for r in logger.records if "train/loss" in r]
    assert len(steps) == 3 and all(0.05 <= r["perf/train_call_s"] < 5.0 for r in steps)
    assert orch.trainer_busy_s == pytest.approx(sum(r["perf/train_call_s"] for r in steps))
