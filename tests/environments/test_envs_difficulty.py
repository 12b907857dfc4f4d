"""RLVE adaptive difficulty: the exact rule of RLVE's RLVEManager, on hand-made result sequences.

python -m pytest tests/environments/test_envs_difficulty.py -q
"""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from environments.difficulty import AdaptiveDifficulty
from zaya_rl.config.schema import AdaptiveDifficultyConfig

RLVE = AdaptiveDifficultyConfig()  # window 4, 8 prompts, 0.9


def make(group_size: int = 16, top: int | None = None, **cfg) -> AdaptiveDifficulty:
    config = AdaptiveDifficultyConfig(**cfg) if cfg else RLVE
    return AdaptiveDifficulty(config, group_size, {"e": top})


def group(correct: int, size: int) -> list[float]:
    return [1.0] * correct + [0.0] * (size - correct)


def test_defaults_are_rlve_paper_values():
    assert (RLVE.window, RLVE.min_prompts_before_check, RLVE.accuracy_to_advance) == (4, 8, 0.9)
    assert make(16).check_size == 128


def test_exactly_8g_samples_at_threshold_raise_h():
    ctl = make(group_size=10)
    for _ in range(7):
        assert ctl.observe("e", 0, group(9, 10)) is False
    assert ctl.ladders["e"].count == 70
    assert ctl.observe("e", 0, group(9, 10)) is True  # 72/80 = 0.9 exactly
    assert (ctl.ladders["e"].h, ctl.ladders["e"].count, ctl.ladders["e"].hits) == (1, 0, 0.0)
    assert ctl.ladders["e"].last_accuracy == pytest.approx(0.9)


def test_089_resets_counters_without_raising():
    ctl = make(group_size=100)
    for correct in (89, 89, 89, 89, 89, 89, 89, 89):  # 712/800 = 0.89
        raised = ctl.observe("e", 0, group(correct, 100))
    assert raised is False
    assert (ctl.ladders["e"].h, ctl.ladders["e"].count, ctl.ladders["e"].hits) == (0, 0, 0.0)
    assert ctl.ladders["e"].last_accuracy == pytest.approx(0.89)


def test_samples_below_h_are_not_counted():
    ctl = make(group_size=4, min_prompts_before_check=1)
    ctl.observe("e", 0, group(4, 4))
    ctl.observe("e", 1, group(4, 4))
    assert ctl.ladders["e"].h == 2
    for _ in range(10):
        assert ctl.observe("e", 0, group(4, 4)) is False
        assert ctl.observe("e", 1, group(0, 4)) is False
    assert (ctl.ladders["e"].h, ctl.ladders["e"].count) == (2, 0)


def test_result_above_h_is_an_error():
    with pytest.raises(ValueError, match="e result at difficulty 1 above h=0"):
        make().observe("e", 1, [1.0])


def test_h_never_decreases_and_stops_at_max_difficulty():
    ctl = make(group_size=2, top=2, min_prompts_before_check=1)
    hs = []
    for acc in (1, 1, 1, 1, 0, 0, 1):
        ctl.observe("e", ctl.ladders["e"].h, group(2 * acc, 2))
        hs.append(ctl.ladders["e"].h)
    assert hs == [1, 2, 2, 2, 2, 2, 2]


def test_window_is_last_four_levels_and_sampling_is_uniform():
    ctl = make()
    assert ctl.window("e") == (0, 0)
    ctl.ladders["e"].h = 2
    assert ctl.window("e") == (0, 2)
    ctl.ladders["e"].h = 7
    assert ctl.window("e") == (4, 7)
    rng = random.Random(0)
    counts = Counter(ctl.sample("e", rng) for _ in range(8000))
    assert set(counts) == {4, 5, 6, 7}
    assert all(1800 < c < 2200 for c in counts.values())  # 2000 expected each; 4.5 sigma band


def _rlve_reference(events, group_size, window=4, min_prompts=8, threshold=0.9):
    """Independent transcription of RLVEManager.update (research/environments.md §1.2), one env."""
    h, acc, num = 0, 0.0, 0
    trace = []
    for d, results in events:
        assert d <= h
        if d == h:
            num += len(results)
            acc += sum(results)
        if num >= min_prompts * group_size:
            if acc / num >= threshold:
                h += 1
            acc, num = 0.0, 0
        trace.append(h)
    return trace


def test_matches_independent_rlve_transcription_on_random_runs():
    rng = random.Random(1234)
    final_levels = []
    for trial in range(20):
        g = rng.choice([2, 4, 8])
        ctl, events, trace = make(group_size=g), [], []
        p_correct = rng.uniform(0.85, 1.0)
        for _ in range(600):
            d = ctl.sample("e", rng)
            results = [float(rng.random() < p_correct) for _ in range(g)]
            events.append((d, results))
            ctl.observe("e", d, results)
            trace.append(ctl.ladders["e"].h)
        assert trace == _rlve_reference(events, g), f"trial {trial}"
        final_levels.append(trace[-1])
    assert max(final_levels) >= 10 and min(final_levels) <= 5  # the runs climb, at different speeds


def test_state_dict_is_json_and_resumes_identically():
    rng = random.Random(5)
    a = make(group_size=4, min_prompts_before_check=2)
    for _ in range(50):
        a.observe("e", a.sample("e", rng), group(rng.randint(3, 4), 4))
    b = make(group_size=4, min_prompts_before_check=2)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert b.ladders == a.ladders
    rng_a, rng_b = random.Random(9), random.Random(9)
    for _ in range(50):
        da, db = a.sample("e", rng_a), b.sample("e", rng_b)
        assert da == db
        res = group(rng_a.randint(3, 4), 4)
        rng_b.randint(3, 4)
        assert a.observe("e", da, res) == b.observe("e", db, res)


def test_metrics_are_namespaced_per_environment():
    ctl = AdaptiveDifficulty(RLVE, 2, {"a": None, "b": 3})
    assert ctl.metrics() == {"env/a/difficulty": 0.0, "env/b/difficulty": 0.0}
    ctl.observe("a", 0, [1.0, 0.0])
    assert ctl.metrics()["env/a/acc_at_h"] == 0.5


def test_unknown_environment_is_a_clear_error():
    with pytest.raises(KeyError, match="'x' is not adaptive"):
        make().window("x")


def test_a_retired_level_stops_the_ladder_below_it_and_survives_a_checkpoint():
    ctl = make(group_size=1, min_prompts_before_check=1)
    for level in range(4):
        assert ctl.observe("e", level, [1.0])  # h climbs to 4
    assert ctl.retire("e", 3) and (ctl.ladders["e"].h, ctl.top("e")) == (2, 2)  # h drops to the last fast level
    assert ctl.observe("e", 2, [1.0]) is False and ctl.ladders["e"].h == 2  # never climbs back
    assert {ctl.sample("e", random.Random(i)) for i in range(200)} == {0, 1, 2}
    assert ctl.retire("e", 5) and ctl.top("e") == 2  # a higher retired level changes nothing
    assert not ctl.retire("e", 0)  # nothing below level 0: the caller counts it as a failure
    assert ctl.metrics()["env/e/ceiling"] == 2.0
    again = make(group_size=1, min_prompts_before_check=1)
    again.load_state_dict(json.loads(json.dumps(ctl.state_dict())))
    assert again.top("e") == 2 and again.ladders["e"] == ctl.ladders["e"]
