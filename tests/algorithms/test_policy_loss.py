"""Policy loss: the DPPO table of research/algorithms.md §4, gradients against a naive float64 formula,
the §12 sanity properties, micro-batch invariance, metrics and numerical guards.

Run: python -m pytest tests/algorithms/test_policy_loss.py -q
"""

import math

import pytest
import torch

from zaya_rl.algorithms.advantages import maxrl
from zaya_rl.algorithms.aggregation import AGGREGATIONS
from zaya_rl.algorithms.loss import dppo_binary_tv_mask, policy_loss

DPPO_TABLE = [  # p, q, sign of A, DPPO valid (δ = 0.1)
    (0.65, 0.50, +1, False),
    (0.55, 0.50, +1, True),
    (0.35, 0.50, +1, True),
    (0.35, 0.50, -1, False),
    (0.05, 0.01, +1, True),
    (0.95, 0.80, +1, False),
    (0.001, 0.05, -1, True),
]


def test_dppo_table():
    p, q, a, valid = (torch.tensor(col, dtype=torch.float64) for col in zip(*DPPO_TABLE, strict=True))
    keep = dppo_binary_tv_mask(p.log()[None], q.log()[None], a[None], delta=0.1)
    assert keep.dtype == torch.bool
    assert keep[0].tolist() == valid.bool().tolist()


def test_dppo_zero_advantage_counts_as_non_positive():
    logp, blogp = torch.tensor([[math.log(0.2)]]), torch.tensor([[math.log(0.5)]])
    assert not dppo_binary_tv_mask(logp, blogp, torch.tensor([0.0])).item()  # Δ = −0.3 < −δ
    assert dppo_binary_tv_mask(logp, blogp, torch.tensor([1.0])).item()  # moving back up is allowed


def test_dppo_boundary_is_inclusive():
    logp, blogp = torch.tensor([[-0.3]]), torch.tensor([[-0.6]])
    diff = (logp.exp() - blogp.exp()).item()  # the exact float32 Δ the mask will compute
    assert dppo_binary_tv_mask(logp, blogp, torch.tensor([1.0]), delta=diff).item()
    assert not dppo_binary_tv_mask(logp, blogp, torch.tensor([1.0]), delta=diff * 0.999).item()
    assert dppo_binary_tv_mask(blogp, logp, torch.tensor([-1.0]), delta=diff).item()


def test_dppo_per_sequence_and_per_token_advantages_agree():
    g = torch.Generator().manual_seed(1)
    logp = -torch.rand(4, 6, generator=g) * 3
    blogp = -torch.rand(4, 6, generator=g) * 3
    adv = torch.tensor([1.0, -1.0, 0.0, 2.0])
    assert torch.equal(
        dppo_binary_tv_mask(logp, blogp, adv), dppo_binary_tv_mask(logp, blogp, adv[:, None].expand(4, 6))
    )
    with pytest.raises(ValueError, match="advantages must be per sequence"):
        dppo_binary_tv_mask(logp, blogp, adv[:3])


def _batch(seed, b=6, t=8):
    g = torch.Generator().manual_seed(seed)
    logp = torch.log(torch.rand(b, t, generator=g, dtype=torch.float64) * 0.98 + 0.01)
    # a behaviour policy a bit off, with a few large mismatches so that both DPPO and the TIS cap fire
    blogp = (logp + 0.4 * torch.randn(b, t, generator=g, dtype=torch.float64)).clamp(max=-1e-3)
    blogp[0, 1] = logp[0, 1] - 4.0
    adv = torch.randn(b, generator=g, dtype=torch.float64)
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    lengths[3] = 0
    mask = torch.arange(t)[None, :] < lengths[:, None]
    return logp, blogp, adv, mask


def _naive_grad(logp, blogp, adv, mask, delta, cap, max_len):
    """−(1/(B·L_max))·A·min(p/q, C)·v·m, written out independently of the code under test."""
    p, q = logp.exp(), blogp.exp()
    a = adv[:, None].expand_as(p)
    valid = torch.where(a > 0, p - q <= delta, p - q >= -delta).double()
    w = torch.minimum(p / q, torch.tensor(cap, dtype=torch.float64))
    n_seq = (mask.sum(-1) > 0).sum()
    return -a * w * valid * mask.double() / (n_seq * max_len)


def test_gradient_matches_naive_formula():
    logp, blogp, adv, mask = _batch(0)
    x = logp.clone().requires_grad_(True)
    loss, metrics = policy_loss(x, blogp, adv, mask, delta=0.1, tis_cap=10.0, max_len=8)
    loss.backward()
    expected = _naive_grad(logp, blogp, adv, mask, 0.1, 10.0, 8)
    torch.testing.assert_close(x.grad, expected)
    torch.testing.assert_close(loss, (expected * logp).sum())
    assert 0 < metrics["loss/dppo_masked_frac"] < 1
    assert metrics["loss/tis_capped_frac"] > 0


def test_on_policy_gradient_is_advantage_weighted_score():
    # §12 (a): v ≡ 1, w ≡ 1 (logp = behaviour logp) → ∇ = −(1/(B·L_max)) A ∇logπ
    logp, _, adv, mask = _batch(1)
    x = logp.clone().requires_grad_(True)
    policy_loss(x, logp, adv, mask, max_len=10)[0].backward()
    n_seq = int((mask.sum(-1) > 0).sum())
    torch.testing.assert_close(x.grad, -adv[:, None] * mask / (n_seq * 10))


def test_equal_reward_group_gives_zero_gradient():
    # §12 (b)
    logp, blogp, _, _ = _batch(2, b=4)
    adv = maxrl(torch.tensor([[1.0, 1, 1, 1]]))[0]
    x = logp.clone().requires_grad_(True)
    policy_loss(x, blogp, adv, torch.ones(4, 8), max_len=8)[0].backward()
    assert torch.equal(x.grad, torch.zeros_like(x.grad))


def test_masking_a_token_changes_only_its_gradient_and_max_len_scales():
    # §12 (d) and (e)
    logp, blogp, adv, mask = _batch(3)
    x1, x2, x3 = (logp.clone().requires_grad_(True) for _ in range(3))
    policy_loss(x1, blogp, adv, mask, max_len=8)[0].backward()
    mask2 = mask.clone()
    mask2[0, 0] = False  # row 0 stays non-empty, so B is unchanged
    policy_loss(x2, blogp, adv, mask2, max_len=8)[0].backward()
    diff = (x1.grad - x2.grad).abs() > 0
    assert diff.sum() <= 1 and not diff[~(mask & ~mask2)].any()
    policy_loss(x3, blogp, adv, mask, max_len=16)[0].backward()
    torch.testing.assert_close(x3.grad, x1.grad / 2)


@pytest.mark.parametrize("mode", sorted(AGGREGATIONS))
def test_micro_batch_invariance(mode):
    logp, blogp, adv, mask = _batch(4)
    full_x = logp.clone().requires_grad_(True)
    full, _ = policy_loss(full_x, blogp, adv, mask, mode=mode, max_len=8)
    full.backward()
    n_seq, n_tok = int((mask.sum(-1) > 0).sum()), int(mask.sum())
    x = logp.clone().requires_grad_(True)
    total = 0.0
    for s, e in [(0, 1), (1, 4), (4, 6)]:
        part, _ = policy_loss(
            x[s:e],
            blogp[s:e],
            adv[s:e],
            mask[s:e],
            mode=mode,
            max_len=8,
            num_sequences=n_seq,
            num_tokens=n_tok,
        )
        total = total + part
    total.backward()
    torch.testing.assert_close(total, full)
    torch.testing.assert_close(x.grad, full_x.grad)


def test_metrics_by_hand():
    # tokens (p, q, A): kept/dropped by DPPO as in the table; last token is padding
    p = torch.tensor([[0.65, 0.55, 0.35, 0.9]])
    q = torch.tensor([[0.50, 0.50, 0.50, 0.1]])
    logp, blogp = p.log(), q.log()
    adv = torch.tensor([[1.0, 1.0, -1.0, 1.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    _, m = policy_loss(logp, blogp, adv, mask, tis_cap=1.2, max_len=4)
    assert m["loss/num_tokens"] == 3
    assert m["loss/dppo_masked_frac"] == pytest.approx(2 / 3)  # tokens 0 and 2
    assert m["loss/dppo_masked_frac_pos_adv"] == pytest.approx(1 / 2)
    assert m["loss/dppo_masked_frac_nonpos_adv"] == pytest.approx(1.0)
    log_ratio = (logp - blogp)[0, :3]
    assert m["loss/abs_logp_diff"] == pytest.approx(log_ratio.abs().mean().item(), rel=1e-5)
    assert m["loss/ppo_kl"] == pytest.approx((-log_ratio).mean().item(), rel=1e-5)
    assert m["loss/tis_capped_frac"] == pytest.approx(1 / 3)  # only 0.65/0.5 = 1.3 > 1.2
    assert all(isinstance(v, float) for v in m.values())


def test_empty_mask_gives_zero_loss_and_finite_metrics():
    logp = torch.full((2, 3), -1.0, requires_grad=True)
    loss, m = policy_loss(logp, torch.full((2, 3), -1.2), torch.ones(2), torch.zeros(2, 3), max_len=3)
    loss.backward()
    assert loss.item() == 0.0 and all(math.isfinite(v) for v in m.values())
    assert m["loss/num_tokens"] == 0


def test_large_mismatch_and_padding_garbage_stay_finite():
    logp = torch.tensor([[-0.01, -1.0, float("-inf"), float("nan")]], requires_grad=True)
    blogp = torch.tensor([[-300.0, -0.5, -1.0, float("nan")]])  # log-ratio 300 would overflow exp() in fp32
    mask = torch.tensor([[1, 1, 0, 0]])
    for cap in (10.0, float("inf")):
        loss, m = policy_loss(logp, blogp, torch.tensor([1.0]), mask, tis_cap=cap, max_len=4)
        (grad,) = torch.autograd.grad(loss, logp)
        assert math.isfinite(loss.item()) and torch.isfinite(grad).all()
        assert all(math.isfinite(v) for v in m.values())
        assert grad[0, 2:].abs().sum() == 0
    # with the cap, the big-ratio token has weight exactly C (p − q ≈ 0.99 > δ would drop it, so A < 0 here)
    x = logp.detach().clone().requires_grad_(True)
    policy_loss(x, blogp, torch.tensor([-1.0]), mask, tis_cap=10.0, max_len=4)[0].backward()
    assert x.grad[0, 0].item() == pytest.approx(10.0 / 4)


def test_argument_errors():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="tis_cap"):
        policy_loss(x, x, torch.ones(2), torch.ones(2, 3), tis_cap=0.0, max_len=3)
    with pytest.raises(ValueError, match="delta"):
        policy_loss(x, x, torch.ones(2), torch.ones(2, 3), delta=1.5, max_len=3)
    with pytest.raises(ValueError, match="mask"):
        policy_loss(x, x, torch.ones(2), torch.ones(2, 4), max_len=3)
    with pytest.raises(ValueError, match="max_len"):
        policy_loss(x, x, torch.ones(2), torch.ones(2, 3))


def test_bf16_log_probs():
    """bf16 trainer log-probs: fp32 loss, bf16 gradient, the DPPO decision taken in fp32."""
    logp, blogp, adv, mask = _batch(5)
    x = logp.to(torch.bfloat16).requires_grad_(True)
    loss, _ = policy_loss(x, blogp.float(), adv.float(), mask, max_len=8)
    loss.backward()
    assert loss.dtype == torch.float32 and x.grad.dtype == torch.bfloat16
    expected = _naive_grad(
        x.detach().double(), blogp.float().double(), adv.float().double(), mask, 0.1, 10.0, 8
    )
    torch.testing.assert_close(x.grad.double(), expected, rtol=1e-2, atol=1e-4)
