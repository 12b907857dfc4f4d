"""Loss aggregation modes: how a ``[B, T]`` matrix of per-token losses becomes one scalar.

Formulas follow verl's ``agg_loss`` after PR #5417 (research/algorithms.md §2.2); the default,
``seq-mean-token-sum-norm``, is Dr-GRPO's (Liu et al., arXiv 2503.20783): every token weighs the same
whatever the length of its answer, and the constant L_max only rescales the learning rate.

**Micro-batch invariance.** Each mode is a sum over tokens divided by a count. When one optimizer step is
split into micro-batches (or ranks), pass the *global* count of the whole step — ``num_sequences`` (B, the
non-empty sequences) for the ``seq-mean-*`` modes, ``num_tokens`` for ``token-mean`` — and the micro-batch
losses then *sum* to the full-batch loss (and their gradients sum to its gradient). Left as None, each
count is taken from the batch given, which is right only when that batch is the whole step.

An all-masked batch gives loss 0 (still connected to the graph, so ``backward`` works and adds nothing).

Test: ``python -m pytest tests/algorithms/test_aggregation.py -q``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Normalizers:
    """Denominators of one aggregation call (global counts of the optimizer step, or None = this batch)."""

    max_len: int | None = None
    """L_max of ``seq-mean-token-sum-norm``: the generation budget, a constant."""
    num_sequences: int | None = None
    """B: non-empty sequences in the whole optimizer step."""
    num_tokens: int | None = None
    """Loss tokens (mask = 1) in the whole optimizer step."""


def _count(local: Tensor, given: int | None, name: str) -> Tensor:
    """The denominator: the global count if given (checked against this batch), else the local count.

    A zero count only happens with an all-masked batch, whose numerator is 0; clamping to 1 makes the loss
    0 instead of 0/0 = NaN. The check against the local count runs where it is free, on CPU tensors: on a GPU
    it would make the host wait for the device in every micro-batch (the trainer step counts on the host).
    """
    if given is None:
        return local.clamp(min=1)
    if local.device.type == "cpu" and given < int(local):
        raise ValueError(
            f"{name}={given} is smaller than this batch's own count {int(local)}: it must count the whole optimizer step"
        )
    return local.new_tensor(float(max(given, 1)))


def _nonempty(mask: Tensor) -> Tensor:
    return (mask.sum(dim=-1) > 0).sum().to(mask.dtype)


def token_mean(loss_mat: Tensor, mask: Tensor, norm: Normalizers) -> Tensor:
    """Σ_{i,t} m·ℓ / N_tokens (N_tokens = ``norm.num_tokens`` or this batch's loss tokens)."""
    return (loss_mat * mask).sum() / _count(mask.sum(), norm.num_tokens, "num_tokens")


def seq_mean_token_sum(loss_mat: Tensor, mask: Tensor, norm: Normalizers) -> Tensor:
    """(1/B) Σ_i Σ_t m·ℓ (B = ``norm.num_sequences`` or this batch's non-empty sequences)."""
    return (loss_mat * mask).sum() / _count(_nonempty(mask), norm.num_sequences, "num_sequences")


def seq_mean_token_mean(loss_mat: Tensor, mask: Tensor, norm: Normalizers) -> Tensor:
    """(1/B) Σ_i [Σ_t m·ℓ / Σ_t m]; an empty row contributes 0 (its length is clamped to 1)."""
    per_seq = (loss_mat * mask).sum(dim=-1) / mask.sum(dim=-1).clamp(min=1)
    return per_seq.sum() / _count(_nonempty(mask), norm.num_sequences, "num_sequences")


def seq_mean_token_sum_norm(loss_mat: Tensor, mask: Tensor, norm: Normalizers) -> Tensor:
    """Dr-GRPO: (1/B) Σ_i Σ_t m·ℓ / L_max, L_max = ``norm.max_len`` (required: the generation budget).

    L_max must be a constant of the run, not the padded width of a micro-batch, which varies with packing
    and would make the loss scale batch-dependent (algorithms.md §2.2).
    """
    if norm.max_len is None or norm.max_len < 1:
        raise ValueError(
            f"seq-mean-token-sum-norm needs max_len >= 1 (the generation budget L_max), got {norm.max_len}"
        )
    return seq_mean_token_sum(loss_mat, mask, norm) / norm.max_len


AggregationFn = Callable[[Tensor, Tensor, Normalizers], Tensor]

#: Modes by the name used in ``algorithm.aggregation`` (``zaya_rl.config.schema.AggregationMode``).
AGGREGATIONS: dict[str, AggregationFn] = {
    "token-mean": token_mean,
    "seq-mean-token-sum": seq_mean_token_sum,
    "seq-mean-token-mean": seq_mean_token_mean,
    "seq-mean-token-sum-norm": seq_mean_token_sum_norm,
}


def aggregate(
    loss_mat: Tensor,
    mask: Tensor,
    mode: str,
    max_len: int | None = None,
    num_sequences: int | None = None,
    num_tokens: int | None = None,
) -> Tensor:
    """Aggregate per-token losses into the scalar loss of ``mode``.

    Args:
        loss_mat: ``[B, T]`` per-token losses ℓ.
        mask: ``[B, T]`` loss mask m (bool or 0/1); masked-out entries never reach the result, even NaN.
        mode: one of ``AGGREGATIONS``.
        max_len: L_max, required by ``seq-mean-token-sum-norm``.
        num_sequences: global B of the optimizer step (``seq-mean-*`` modes), see the module docstring.
        num_tokens: global loss-token count of the optimizer step (``token-mean``).

    Returns:
        A scalar tensor.
    """
    try:
        fn = AGGREGATIONS[mode]
    except KeyError:
        raise ValueError(f"unknown aggregation mode {mode!r}; valid: {sorted(AGGREGATIONS)}") from None
    if loss_mat.ndim != 2 or mask.shape != loss_mat.shape:
        raise ValueError(
            f"loss_mat and mask must both be [B, T]; got {tuple(loss_mat.shape)} and {tuple(mask.shape)}"
        )
    keep = mask.bool()
    # where() rather than a product: a NaN/inf loss at a padded position must not leak into the sum
    loss_mat = torch.where(keep, loss_mat, torch.zeros((), dtype=loss_mat.dtype, device=loss_mat.device))
    norm = Normalizers(max_len=max_len, num_sequences=num_sequences, num_tokens=num_tokens)
    return fn(loss_mat, keep.to(loss_mat.dtype), norm)
