"""Advantage estimators against the hand-computed vectors of research/algorithms.md §3 and §2.1.

Run: python -m pytest tests/algorithms/test_advantages.py -q
"""

from typing import get_args

import pytest
import torch

from zaya_rl.algorithms.advantages import (
    ADVANTAGE_ESTIMATORS,
    MAXRL_MIN_MEAN,
    NonBinaryRewardError,
    compute_advantages,
    dr_grpo,
    group_estimator,
    grpo,
    maxrl,
)
from zaya_rl.config.schema import AdvantageName


def t(x):
    return torch.tensor(x, dtype=torch.float64)


@pytest.mark.parametrize(
    ("rewards", "expected"),
    [
        ([1, 0, 0, 0], [3, -1, -1, -1]),
        ([1, 1, 0, 0], [1, 1, -1, -1]),
        ([1, 1, 1, 0], [1 / 3, 1 / 3, 1 / 3, -1]),
        ([0, 0, 0, 0], [0, 0, 0, 0]),
        ([1, 1, 1, 1], [0, 0, 0, 0]),
        ([1] + [0] * 15, [15] + [-1] * 15),
        ([0.5, 0, 0, 0.5], [1, -1, -1, 1]),  # fractional: μ = 0.25
    ],
)
def test_maxrl_vectors(rewards, expected):
    torch.testing.assert_close(maxrl(t(rewards)), t(expected))


def test_maxrl_equals_binary_closed_form():
    # A_j = N r_j / K − 1 for binary rewards with K >= 1 successes (algorithms.md §3 equivalence check)
    r = torch.tensor([[1, 0, 1, 0, 0, 1, 0, 0]], dtype=torch.float64)
    n, k = r.shape[-1], r.sum()
    torch.testing.assert_close(maxrl(r), n * r / k - 1)
    assert abs(maxrl(r).sum().item()) < 1e-12


def test_maxrl_threshold_is_inclusive():
    at = t([4 * MAXRL_MIN_MEAN, 0, 0, 0])  # mean == MAXRL_MIN_MEAN → no success
    above = t([8 * MAXRL_MIN_MEAN, 0, 0, 0])
    assert torch.equal(maxrl(at), torch.zeros(4, dtype=torch.float64))
    torch.testing.assert_close(maxrl(above), t([3, -1, -1, -1]))


def test_maxrl_singleton_and_batched():
    assert torch.equal(maxrl(t([[1.0], [0.0]])), torch.zeros(2, 1, dtype=torch.float64))
    groups = [[1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]]
    batched = maxrl(t(groups))
    assert batched.shape == (4, 4)
    for row, g in zip(batched, groups, strict=True):
        torch.testing.assert_close(row, maxrl(t(g)))
    # [P, S, G]: any leading shape, groups on the last dim
    assert maxrl(t(groups).reshape(2, 2, 4)).shape == (2, 2, 4)


def test_maxrl_rejects_out_of_range_naming_the_index():
    r = torch.zeros(3, 4)
    r[2, 3] = 1.5
    with pytest.raises(ValueError, match=r"rewards\[2, 3\] = 1.5 is outside \[0, 1\]"):
        maxrl(r)
    with pytest.raises(ValueError, match=r"rewards\[1\] = -0.5 is outside"):
        maxrl(torch.tensor([0.0, -0.5]))


@pytest.mark.parametrize("estimator", sorted(ADVANTAGE_ESTIMATORS))
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_rewards_raise_for_every_estimator(estimator, bad):
    r = torch.tensor([[0.0, 1.0], [bad, 0.0]])
    with pytest.raises(ValueError, match=r"rewards\[1, 0\] = .* is not finite"):
        compute_advantages(estimator, r)


@pytest.mark.parametrize("estimator", sorted(ADVANTAGE_ESTIMATORS))
def test_bad_shapes_raise(estimator):
    with pytest.raises(ValueError, match="G >= 1"):
        compute_advantages(estimator, torch.zeros(3, 0))
    with pytest.raises(ValueError, match=r"\[\.\.\., G\]"):
        compute_advantages(estimator, torch.tensor(1.0))


def test_dr_grpo():
    torch.testing.assert_close(dr_grpo(t([1, 0, 0, 0])), t([0.75, -0.25, -0.25, -0.25]))
    assert torch.equal(dr_grpo(t([[1.0]])), t([[0.0]]))
    torch.testing.assert_close(dr_grpo(t([[0, 0], [1, 1]])), torch.zeros(2, 2, dtype=torch.float64))
    torch.testing.assert_close(dr_grpo(t([3.0, -1.0])), t([2.0, -2.0]))  # any real reward


def test_grpo_unbiased_std():
    torch.testing.assert_close(grpo(t([1, 0, 0, 0]), eps=1e-12), t([1.5, -0.5, -0.5, -0.5]))
    # population std would give [1.732, -0.577 x3]: make sure that is NOT what we compute
    assert abs(grpo(t([1, 0, 0, 0]))[0].item() - 1.5) < 1e-5


def test_grpo_edge_cases_are_zero_not_nan():
    single = grpo(t([[1.0], [0.0]]))
    assert torch.equal(single, torch.zeros(2, 1, dtype=torch.float64))
    equal = grpo(t([[0, 0, 0], [1, 1, 1]]))
    assert torch.equal(equal, torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="eps"):
        grpo(t([1, 0]), eps=0.0)


def test_integer_rewards_are_accepted():
    torch.testing.assert_close(maxrl(torch.tensor([1, 0, 0, 0])), torch.tensor([3.0, -1.0, -1.0, -1.0]))


def test_registry_matches_config_literal_and_rejects_unknown():
    assert set(ADVANTAGE_ESTIMATORS) == set(get_args(AdvantageName))
    torch.testing.assert_close(compute_advantages("maxrl", t([1, 0])), t([1, -1]))
    with pytest.raises(ValueError, match=r"unknown advantage estimator 'ppo'.*dr_grpo.*grpo.*maxrl"):
        compute_advantages("ppo", t([1, 0]))


# ------------------------------------------------------------------ non-binary rewards (algorithm.nonbinary_advantage)
def test_group_estimator_detects_non_binary_rewards():
    assert group_estimator("maxrl", t([1, 0, 0, 1]), nonbinary="dr_grpo") == "maxrl"
    assert group_estimator("maxrl", t([0, 0, 0, 0]), nonbinary="error") == "maxrl"
    assert group_estimator("maxrl", t([1, 0.5, 0, 0]), nonbinary="dr_grpo") == "dr_grpo"
    assert group_estimator("maxrl", t([1, 0.5, 0, 0]), nonbinary="maxrl") == "maxrl"
    assert group_estimator("dr_grpo", t([1, 0.5]), nonbinary="error") == "dr_grpo"  # any reward is fine there
    with pytest.raises(NonBinaryRewardError, match=r"group 3 of 'code': rewards \[0\.25, 1\.0\] .*nonbinary_adv"):
        group_estimator("maxrl", t([0.25, 1]), nonbinary="error", where="group 3 of 'code'")


def test_finalize_group_uses_the_configured_estimator_for_fractional_rewards():
    from zaya_rl.pipeline.groups import finalize_group
    from zaya_rl.pipeline.records import Group, GroupSpec, Rollout

    def group(rewards):
        rollouts = [Rollout(7, i, [1], [2], [-0.1], [0], "stop", "x", reward=r, status="ok")
                    for i, r in enumerate(rewards)]
        return Group(GroupSpec(7, "code", 0, 0, {}), rollouts)

    fractional = group([0.5, 0.0, 1.0, 0.25])  # e.g. code tests passed / total
    kept, _ = finalize_group(fractional, advantage="maxrl", canary_on_flag="none", filter_equal=False,
                             nonbinary="dr_grpo")
    # Dr-GRPO by hand: mean 0.4375, A = r − mean
    assert [r.advantage for r in kept] == pytest.approx([0.0625, -0.4375, 0.5625, -0.1875])
    assert fractional.estimator == "dr_grpo" and fractional.nonbinary
    binary = group([1.0, 0.0, 0.0, 0.0])
    kept, _ = finalize_group(binary, advantage="maxrl", canary_on_flag="none", filter_equal=False,
                             nonbinary="dr_grpo")
    assert [r.advantage for r in kept] == pytest.approx([3.0, -1.0, -1.0, -1.0])  # MaxRL, algorithms.md §3
    assert binary.estimator == "maxrl" and not binary.nonbinary
    with pytest.raises(NonBinaryRewardError, match="group 7 of environment 'code'"):
        finalize_group(group([0.5, 1.0]), advantage="maxrl", canary_on_flag="none", filter_equal=False,
                       nonbinary="error")
