"""The zaya_rl policy loss: DPPO Binary-TV trust region + truncated IS + loss aggregation.

Per token (research/algorithms.md §4 and §12):

    p = π_θ(y_t) = exp(logp),  q = μ(y_t) = exp(behaviour_logp)      # μ: the rollout engine's sampling prob.
    v = 1[A > 0]·1[p − q <= δ] + 1[A <= 0]·1[p − q >= −δ]             # DPPO Binary-TV mask, detached
    w = min(p/q, C)                                                    # truncated IS weight, detached
    ℓ = −A · w · v · logp
    L = aggregate(ℓ, m, mode)                                          # default: Dr-GRPO seq-mean-token-sum-norm

so ∇L = −(1/(B·L_max)) Σ_{i,t} m·A_i·w·v·∇logπ_θ with the default aggregation. No KL term, no reference
model: the mask bounds both staleness and training–inference mismatch (Qi et al., arXiv 2602.04879).

What it deliberately does not do: compute log-probs (``zaya_rl.algorithms.logprobs``) or advantages
(``zaya_rl.algorithms.advantages``).

Test: ``python -m pytest tests/algorithms/test_loss.py -q``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from zaya_rl.algorithms.aggregation import AGGREGATIONS, aggregate

__all__ = ["AGGREGATIONS", "aggregate", "dppo_binary_tv_mask", "policy_loss"]

#: The log-ratio log(p/q) is clamped to ±this before exp() so that a large trainer/rollout mismatch cannot
#: overflow to inf (fp32 overflows above ~88.7; 0·inf would then be NaN even on masked tokens). e^20 ≈ 4.9e8 is
#: far above any useful TIS cap, so the clamp never changes a capped weight.
MAX_LOG_RATIO = 20.0


def _per_token(advantages: Tensor, logp: Tensor) -> Tensor:
    """Broadcast per-sequence advantages ``[B]`` to ``[B, T]``; per-token ``[B, T]`` pass through."""
    if advantages.shape == logp.shape:
        return advantages
    if logp.ndim == 2 and advantages.shape == logp.shape[:1]:
        return advantages.unsqueeze(-1)
    raise ValueError(
        f"advantages must be per sequence [B] or per token [B, T] matching logp {tuple(logp.shape)}, "
        f"got {tuple(advantages.shape)}"
    )


def dppo_binary_tv_mask(
    logp: Tensor, behaviour_logp: Tensor, advantages: Tensor, delta: float = 0.1
) -> Tensor:
    """DPPO Binary-TV trust-region mask (Qi et al., arXiv 2602.04879, Binary-TV; algorithms.md §4).

    With the vocabulary collapsed to {sampled token, rest}, TV(π_θ, μ) = |p − q|. A token is dropped when
    the update would push it further out of the region: A > 0 and p − q > δ (already moved up too far), or
    A <= 0 and p − q < −δ (already moved down too far). Moving back toward q is always allowed. The bounds
    are inclusive: kept iff p − q <= δ (A > 0) / p − q >= −δ (A <= 0).

    Args:
        logp: ``[B, T]`` (or ``[N]``) log π_θ of the sampled tokens.
        behaviour_logp: same shape, log μ of the sampled tokens (rollout engine, sampling temperature).
        advantages: ``[B]`` per sequence or the shape of ``logp`` per token.
        delta: δ, the half-width of the region in probability space.

    Returns:
        bool tensor shaped like ``logp``; True = token kept. Carries no gradient.
    """
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if behaviour_logp.shape != logp.shape:
        raise ValueError(f"behaviour_logp {tuple(behaviour_logp.shape)} must match logp {tuple(logp.shape)}")
    with torch.no_grad():
        dtype = torch.promote_types(logp.dtype, torch.float32)  # Δ near δ must not be decided in bf16
        diff = logp.to(dtype).exp() - behaviour_logp.to(dtype).exp()
        positive = _per_token(advantages, logp) > 0
        return torch.where(positive, diff <= delta, diff >= -delta)


def _safe_mean(values: Tensor, weights: Tensor) -> Tensor:
    """Σ w·x / Σ w over w > 0, or 0 when Σ w = 0 (an empty selection logs 0, not NaN).

    where() rather than a product: NaN/inf values at padding (w = 0) must not leak into the mean.
    """
    picked = torch.where(
        weights > 0, values * weights, torch.zeros((), dtype=values.dtype, device=values.device)
    )
    return picked.sum() / weights.sum().clamp(min=1)


def _metrics(
    log_ratio: Tensor, keep: Tensor, positive: Tensor, mask: Tensor, tis_cap: float, sync: bool = True
) -> dict[str, float] | dict[str, Tensor]:
    """Diagnostics of one loss call, over loss tokens (mask = 1), as floats (one device sync for all) or,
    with ``sync=False``, as 0-d tensors on the loss's device. Computed without gradient."""
    m = mask.float()
    pos, neg = m * positive, m * ~positive
    dropped = (~keep).float()
    values = torch.stack(
        [
            _safe_mean(dropped, m),
            _safe_mean(dropped, pos),
            _safe_mean(dropped, neg),
            _safe_mean(log_ratio.abs(), m),
            _safe_mean((log_ratio.exp() > tis_cap).float(), m),
            _safe_mean(-log_ratio, m),
            m.sum(),
        ]
    )
    names = [
        "loss/dppo_masked_frac",
        "loss/dppo_masked_frac_pos_adv",
        "loss/dppo_masked_frac_nonpos_adv",
        "loss/abs_logp_diff",
        "loss/tis_capped_frac",
        "loss/ppo_kl",
        "loss/num_tokens",
    ]
    return dict(zip(names, values.tolist() if sync else values.unbind(), strict=True))


def policy_loss(
    logp: Tensor,
    behaviour_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    delta: float = 0.1,
    tis_cap: float = 10.0,
    mode: str = "seq-mean-token-sum-norm",
    max_len: int | None = None,
    num_sequences: int | None = None,
    num_tokens: int | None = None,
    sync_metrics: bool = True,
) -> tuple[Tensor, dict[str, float] | dict[str, Tensor]]:
    """ℓ = −A·sg(min(p/q, C))·v·logπ_θ aggregated by ``mode`` (algorithms.md §12; module docstring).

    Args:
        logp: ``[B, T]`` log π_θ of the sampled tokens at the sampling temperature (differentiable).
        behaviour_logp: ``[B, T]`` log μ of the same tokens, recorded by the rollout engine.
        advantages: ``[B]`` per sequence or ``[B, T]`` per token.
        mask: ``[B, T]`` loss mask (1 on generated tokens that are trained on).
        delta: DPPO Binary-TV half-width δ.
        tis_cap: C of the truncated IS weight min(p/q, C) (``inf``: no truncation).
        mode: aggregation mode (``zaya_rl.algorithms.aggregation.AGGREGATIONS``).
        max_len: L_max for ``seq-mean-token-sum-norm`` (the generation budget).
        num_sequences: non-empty sequences of the whole optimizer step (micro-batch invariance).
        num_tokens: loss tokens of the whole optimizer step (``token-mean`` micro-batch invariance).
        sync_metrics: False returns the metrics as 0-d tensors, leaving the host free to queue more work
            (the trainer step reads them all once, at its end).

    Returns:
        ``(loss, metrics)``: the scalar loss and float diagnostics namespaced ``loss/``: masked fraction of
        loss tokens overall and among A > 0 / A <= 0 tokens, mean |logp − behaviour_logp|, fraction with
        p/q > C, ``ppo_kl`` = mean(behaviour_logp − logp), and the number of loss tokens. Metric means are
        over this call's loss tokens; weight them by ``loss/num_tokens`` to combine micro-batches.
    """
    if not tis_cap > 0:
        raise ValueError(f"tis_cap must be > 0, got {tis_cap}")
    if mask.shape != logp.shape:
        raise ValueError(f"mask {tuple(mask.shape)} must match logp {tuple(logp.shape)}")
    keep = dppo_binary_tv_mask(logp, behaviour_logp, advantages, delta)
    dtype = torch.promote_types(logp.dtype, torch.float32)  # bf16 log-probs are upcast, float64 kept
    adv = _per_token(advantages, logp).to(dtype)
    with torch.no_grad():
        log_ratio = (logp.detach().to(dtype) - behaviour_logp.to(dtype)).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
        weight = log_ratio.exp().clamp(max=tis_cap)
        # zero the coefficient off the loss mask so that garbage log-probs at padding cannot give NaN grads
        coef = torch.where(
            mask.bool() & keep, -adv * weight, torch.zeros((), dtype=dtype, device=logp.device)
        )
        metrics = _metrics(log_ratio, keep, (adv > 0).expand_as(keep), mask.bool(), tis_cap, sync_metrics)
    loss_mat = coef * logp.to(dtype)
    loss = aggregate(
        loss_mat, mask, mode, max_len=max_len, num_sequences=num_sequences, num_tokens=num_tokens
    )
    return loss, metrics
