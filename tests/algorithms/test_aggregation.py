"""Loss aggregation modes: the hand-computed vector of research/algorithms.md §2.2 and micro-batch invariance.

Run: python -m pytest tests/algorithms/test_aggregation.py -q
"""

from typing import get_args

import pytest
import torch

from zaya_rl.algorithms.aggregation import AGGREGATIONS
from zaya_rl.algorithms.loss import aggregate
from zaya_rl.config.schema import AggregationMode

LOSS = torch.tensor([[1.0, 2, 3, 0], [4, 0, 0, 0], [0, 0, 0, 0]])
MASK = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("token-mean", 2.5),
        ("seq-mean-token-sum", 5.0),
        ("seq-mean-token-mean", 3.0),
        ("seq-mean-token-sum-norm", 1.25),
    ],
)
def test_hand_computed_vector(mode, expected):
    assert aggregate(LOSS, MASK, mode, max_len=4).item() == pytest.approx(expected)
    assert aggregate(LOSS, MASK.bool(), mode, max_len=4).item() == pytest.approx(expected)


def test_registry_matches_config_literal():
    assert set(AGGREGATIONS) == set(get_args(AggregationMode))


def test_sum_norm_needs_max_len_and_unknown_mode_lists_modes():
    with pytest.raises(ValueError, match="max_len"):
        aggregate(LOSS, MASK, "seq-mean-token-sum-norm")
    with pytest.raises(ValueError, match="seq-mean-token-mean.*seq-mean-token-sum.*token-mean"):
        aggregate(LOSS, MASK, "token-sum")


def test_shape_errors_and_inconsistent_global_count():
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        aggregate(LOSS, MASK[:, :3], "token-mean")
    with pytest.raises(ValueError, match="num_sequences=1 is smaller than this batch's own count 2"):
        aggregate(LOSS, MASK, "seq-mean-token-sum", num_sequences=1)
    with pytest.raises(ValueError, match="num_tokens"):
        aggregate(LOSS, MASK, "token-mean", num_tokens=3)


def _random_batch(seed, b=7, t=9):
    g = torch.Generator().manual_seed(seed)
    loss = torch.randn(b, t, generator=g, dtype=torch.float64)
    lengths = torch.randint(0, t + 1, (b,), generator=g)
    lengths[2] = 0  # an empty sequence
    mask = torch.arange(t)[None, :] < lengths[:, None]
    return loss, mask


@pytest.mark.parametrize("mode", sorted(AGGREGATIONS))
def test_micro_batch_invariance(mode):
    loss, mask = _random_batch(0)
    full_in = loss.clone().requires_grad_(True)
    full = aggregate(full_in, mask, mode, max_len=12)
    full.backward()
    # global counts of the whole step, computed before the first micro-batch
    n_seq = int((mask.sum(-1) > 0).sum())
    n_tok = int(mask.sum())
    parts_in = loss.clone().requires_grad_(True)
    total = sum(
        aggregate(parts_in[s:e], mask[s:e], mode, max_len=12, num_sequences=n_seq, num_tokens=n_tok)
        for s, e in [(0, 2), (2, 3), (3, 7)]
    )
    total.backward()
    torch.testing.assert_close(total, full)
    torch.testing.assert_close(parts_in.grad, full_in.grad)


def test_masked_nan_does_not_leak():
    loss = LOSS.clone()
    loss[0, 3] = float("nan")
    loss[2, 0] = float("inf")
    loss.requires_grad_(True)
    out = aggregate(loss, MASK, "seq-mean-token-sum-norm", max_len=4)
    out.backward()
    assert out.item() == pytest.approx(1.25)
    assert torch.isfinite(loss.grad).all()


@pytest.mark.parametrize("mode", sorted(AGGREGATIONS))
def test_all_masked_gives_zero_and_backward_works(mode):
    loss = torch.randn(2, 3, requires_grad=True)
    out = aggregate(loss, torch.zeros(2, 3), mode, max_len=3)
    out.backward()
    assert out.item() == 0.0
    assert torch.equal(loss.grad, torch.zeros(2, 3))
