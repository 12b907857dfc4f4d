"""Group-relative advantage estimators: MaxRL (default), Dr-GRPO and GRPO (ablations).

Each estimator maps rewards ``[..., G]`` (the last dimension is one group: the G rollouts of one prompt) to
advantages of the same shape, one scalar per rollout; the loss broadcasts it over the rollout's tokens.
Definitions and hand-computed vectors: research/algorithms.md §3 (MaxRL) and §2.1 (Dr-GRPO, GRPO).

Pure tensor functions: no config, no I/O. The config's ``algorithm.advantage`` picks one through
``ADVANTAGE_ESTIMATORS`` / ``compute_advantages``; ``group_estimator`` picks the estimator of one group when
MaxRL meets rewards that are not pass/fail (``algorithm.nonbinary_advantage``).

Test: ``python -m pytest tests/algorithms/test_advantages.py -q``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

#: MaxRL treats a group mean at or below this as "no success": A = 0 for the whole group instead of dividing
#: by a vanishing mean (the authors' code has the exact ``mean == 0`` branch, algorithms.md §3). A tolerance
#: rather than ``== 0`` keeps float round-off of an all-zero sum out of the division, and guarding the
#: branch (instead of adding eps to the denominator) keeps every μ̂ > 1e-6 exact.
MAXRL_MIN_MEAN = 1e-6


def _index(flat_idx: int, shape: torch.Size) -> str:
    """Format a flat index of a tensor of ``shape`` as ``[i, j, ...]``."""
    parts = []
    for size in reversed(shape):
        parts.append(flat_idx % size)
        flat_idx //= size
    return "[" + ", ".join(str(p) for p in reversed(parts)) + "]"


def _validated(rewards: Tensor) -> Tensor:
    """Common checks of every estimator; returns rewards as a floating tensor."""
    if not isinstance(rewards, Tensor):
        raise TypeError(f"rewards must be a torch.Tensor of shape [..., G], got {type(rewards).__name__}")
    if rewards.ndim == 0 or rewards.shape[-1] == 0:
        raise ValueError(
            f"rewards must have shape [..., G] with G >= 1 (one group per last dim), got {tuple(rewards.shape)}"
        )
    if not rewards.is_floating_point():
        rewards = rewards.to(torch.get_default_dtype())
    bad = ~torch.isfinite(rewards)
    if bad.any():
        i = int(bad.flatten().nonzero()[0])
        raise ValueError(f"rewards{_index(i, rewards.shape)} = {rewards.flatten()[i].item()} is not finite")
    return rewards


def maxrl(rewards: Tensor) -> Tensor:
    """MaxRL advantage (Tajwar et al., arXiv 2602.02710, Algorithm 1; algorithms.md §3).

    A_j = (r_j − μ̂)/μ̂ with μ̂ the group mean; A ≡ 0 when μ̂ <= ``MAXRL_MIN_MEAN`` (no success: no gradient).
    For binary rewards A_j = N·r_j/K − 1, whose group mean over the score functions is the paper's
    control-variate estimator g̃_N of ∇ log pass-rate. An all-success group gets A ≡ 0 automatically; a
    singleton group gets A = 0 (r − r).

    Args:
        rewards: ``[..., G]`` rewards in [0, 1] (the estimator is derived for pass/fail rewards).

    Returns:
        ``[..., G]`` advantages.

    Raises:
        ValueError: a reward outside [0, 1] or non-finite (the message names its index).
    """
    rewards = _validated(rewards)
    outside = (rewards < 0) | (rewards > 1)
    if outside.any():
        i = int(outside.flatten().nonzero()[0])
        raise ValueError(
            f"rewards{_index(i, rewards.shape)} = {rewards.flatten()[i].item()} is outside [0, 1]; MaxRL is "
            "defined for rewards in [0, 1] (map scores to [0, 1] per group, or use the dr_grpo estimator)"
        )
    mean = rewards.mean(dim=-1, keepdim=True)
    has_success = mean > MAXRL_MIN_MEAN
    # clamp only keeps the discarded branch of torch.where finite (0/0 would be NaN there)
    advantages = (rewards - mean) / mean.clamp(min=MAXRL_MIN_MEAN)
    return torch.where(has_success, advantages, torch.zeros_like(advantages))


def dr_grpo(rewards: Tensor) -> Tensor:
    """Dr-GRPO advantage (Liu et al., arXiv 2503.20783, §3.2; algorithms.md §2.1): A_i = r_i − mean_j r_j.

    No division by the group std (that would weight prompts by difficulty). Any real reward is accepted.

    Args:
        rewards: ``[..., G]`` finite rewards.

    Returns:
        ``[..., G]`` advantages (zero for a singleton group).
    """
    rewards = _validated(rewards)
    return rewards - rewards.mean(dim=-1, keepdim=True)


def grpo(rewards: Tensor, eps: float = 1e-6) -> Tensor:
    """GRPO advantage (Shao et al., arXiv 2402.03300; algorithms.md §2.1): A_i = (r_i − μ)/(σ + eps).

    σ is the unbiased (Bessel-corrected) group std, as ``torch.Tensor.std`` and the reference code use. A
    singleton group has no defined σ (torch returns NaN); it is taken as 0 there, so A = 0/(0 + eps) = 0:
    one rollout carries no relative signal. Equal-reward groups also get A = 0.

    Args:
        rewards: ``[..., G]`` finite rewards.
        eps: added to σ so equal-reward groups divide 0 by eps instead of 0 by 0.

    Returns:
        ``[..., G]`` advantages.
    """
    if not eps > 0:
        raise ValueError(f"grpo eps must be > 0, got {eps}")
    rewards = _validated(rewards)
    centered = rewards - rewards.mean(dim=-1, keepdim=True)
    if rewards.shape[-1] == 1:
        return centered
    return centered / (rewards.std(dim=-1, keepdim=True, correction=1) + eps)


#: Estimators by the name used in ``algorithm.advantage`` (``zaya_rl.config.schema.AdvantageName``).
ADVANTAGE_ESTIMATORS: dict[str, Callable[[Tensor], Tensor]] = {
    "maxrl": maxrl,
    "dr_grpo": dr_grpo,
    "grpo": grpo,
}


class NonBinaryRewardError(ValueError):
    """MaxRL met a group whose rewards are not all 0 or 1 and ``algorithm.nonbinary_advantage`` is ``error``."""


def is_binary(rewards: Tensor) -> bool:
    """Whether every reward of ``rewards`` is exactly 0 or 1 (pass/fail)."""
    return bool(((rewards == 0) | (rewards == 1)).all())


def group_estimator(name: str, rewards: Tensor, *, nonbinary: str, where: str = "a group") -> str:
    """The estimator to apply to one group's rewards ``[G]``.

    MaxRL is derived for binary rewards: its A = N·r/K − 1 estimates ∇ log pass-rate only when r is a pass/fail
    indicator (Tajwar et al., arXiv 2602.02710, "Scope limits" in algorithms.md §3). A group with any other
    reward value gets ``nonbinary`` instead (``dr_grpo``: A = r − mean r, defined for any reward; ``maxrl``:
    (r − μ)/μ anyway); ``error`` raises ``NonBinaryRewardError`` naming ``where``. Other estimators accept
    any reward and are returned unchanged.
    """
    if name != "maxrl" or is_binary(rewards):
        return name
    if nonbinary == "error":
        raise NonBinaryRewardError(
            f"{where}: rewards {[round(float(r), 4) for r in rewards.flatten()]} are not all 0 or 1, and MaxRL is "
            "derived for pass/fail rewards; set algorithm.nonbinary_advantage to dr_grpo (or maxrl)"
        )
    return nonbinary


def compute_advantages(name: str, rewards: Tensor) -> Tensor:
    """Advantages of ``rewards`` ``[..., G]`` with the estimator registered as ``name``."""
    try:
        estimator = ADVANTAGE_ESTIMATORS[name]
    except KeyError:
        raise ValueError(
            f"unknown advantage estimator {name!r}; valid: {sorted(ADVANTAGE_ESTIMATORS)}"
        ) from None
    return estimator(rewards)
