"""MixtureSampler (deterministic, resumable, disjoint eval seeds) and the all-equal group filter.

python -m pytest tests/environments/test_envs_sampler.py -q
"""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from environments.sampler import (
    EVAL_SEED_BASE,
    TRAIN_SEED_LIMIT,
    MixtureSampler,
    filter_groups,
    is_informative,
)
from zaya_rl.config.schema import AdaptiveDifficultyConfig, EnvEntry

RANGES = {"a": (0, 7), "b": (0, None), "c": (1, 4)}


def sampler(seed: int = 0, entries=None, group_size: int = 4) -> MixtureSampler:
    entries = entries or [
        EnvEntry(name="a", weight=3.0, difficulty=2),
        EnvEntry(name="b", weight=1.0, difficulty="adaptive", kwargs={"reward": "shifted"}),
    ]
    return MixtureSampler(
        entries, seed, adaptive=AdaptiveDifficultyConfig(min_prompts_before_check=1), group_size=group_size,
        ranges=RANGES,
    )  # fmt: skip


def test_stream_is_a_function_of_the_seed():
    a, b, c = sampler(1), sampler(1), sampler(2)
    da, db, dc = (
        [a.draw() for _ in range(200)],
        [b.draw() for _ in range(200)],
        [c.draw() for _ in range(200)],
    )
    assert da == db and da != dc
    assert [d.index for d in da] == list(range(200))


def test_weights_fixed_levels_and_kwargs():
    draws = [d for d, _ in zip(sampler(3), range(8000), strict=False)]
    counts = Counter(d.env for d in draws)
    assert 5700 < counts["a"] < 6300  # 6000 expected (weight 3/4)
    assert {d.difficulty for d in draws if d.env == "a"} == {2}
    assert {d.difficulty for d in draws if d.env == "b"} == {0}  # adaptive, h = 0
    assert all(d.kwargs == {"reward": "shifted"} for d in draws if d.env == "b")
    assert all(0 <= d.seed < TRAIN_SEED_LIMIT for d in draws)
    assert len({d.seed for d in draws}) > 7990  # 8000 draws from 2^31 seeds: collisions are rare


def test_adaptive_level_follows_feedback():
    s = sampler(4)
    s.observe("b", 0, [1.0, 1.0, 1.0, 1.0])  # check size 1 x 4: h -> 1
    s.observe("a", 2, [0.0, 1.0, 1.0, 1.0])  # fixed env: ignored
    assert s.metrics()["env/b/difficulty"] == 1.0 and "env/a/difficulty" not in s.metrics()
    levels = {d.difficulty for d, _ in zip(s, range(500), strict=False) if d.env == "b"}
    assert levels == {0, 1}


def test_resume_continues_the_same_stream():
    rng = random.Random(0)
    straight = sampler(7)
    history = []
    for step in range(300):
        d = straight.draw()
        acc = [float(rng.random() < 0.95) for _ in range(4)]
        straight.observe(d.env, d.difficulty, acc)
        history.append((d, acc))
        if step == 149:
            state = json.loads(json.dumps(straight.state_dict()))
    resumed = sampler(7)  # a fresh process: only the checkpointed state carries over
    resumed.load_state_dict(state)
    for d, acc in history[150:]:
        assert resumed.draw() == d
        resumed.observe(d.env, d.difficulty, acc)
    assert resumed.state_dict() == straight.state_dict()
    assert straight.metrics()["env/b/difficulty"] >= 3  # the adaptive ladder did move during the run


def test_resume_with_other_seed_is_refused():
    state = sampler(1).state_dict()
    with pytest.raises(ValueError, match="seed: checkpointed sampler stream has seed 1, this run has 2"):
        sampler(2).load_state_dict(state)


def test_eval_seeds_are_disjoint_from_training_and_fixed_across_runs():
    s = sampler(11)
    train = {d.seed for d, _ in zip(s, range(5000), strict=False)}
    evals = s.eval_draws(50)
    assert {d.seed for d in evals} == {EVAL_SEED_BASE + j for j in range(50)}
    assert not train & {d.seed for d in evals}
    assert evals == sampler(99).eval_draws(50)
    assert {(d.env, d.difficulty) for d in evals} == {("a", 2), ("b", 0)}
    levels = s.eval_draws(2, {"a": [5, 6], "b": [1]})  # eval.difficulty: the same seeds at every level
    assert [(d.env, d.difficulty, d.seed - EVAL_SEED_BASE) for d in levels] == [
        ("a", 5, 0), ("a", 5, 1), ("a", 6, 0), ("a", 6, 1), ("b", 1, 0), ("b", 1, 1)]


def test_fixed_level_out_of_range_names_the_field():
    bad = [EnvEntry(name="a"), EnvEntry(name="c", difficulty=0)]
    with pytest.raises(ValueError, match=r"data.environments\[1\].difficulty: 0 outside c's \[1, 4\]"):
        sampler(entries=bad)


def test_ranges_default_to_the_registry():
    s = MixtureSampler(
        [EnvEntry(name="reverse", difficulty="adaptive")],
        0,
        adaptive=AdaptiveDifficultyConfig(),
        group_size=2,
    )
    assert s.controller.max_difficulty == {"reverse": 8}


@pytest.mark.parametrize(
    "rewards, keep",
    [
        ([1.0, 1.0, 1.0], False),
        ([0.0, 0.0], False),
        ([0.0, 1.0], True),
        ([0.5, 0.5, 0.25], True),
        ([], False),
        ([1.0], False),
    ],
)
def test_is_informative(rewards, keep):
    assert is_informative(rewards) is keep


def test_filter_groups_keeps_order():
    assert filter_groups([[1, 1], [0, 1], [0, 0], [0.2, 0.1]]) == [1, 3]
