"""Map raw reward-model scores to [0, 1], and mix them with rule-based IF rewards (behavioural stage).

A Bradley-Terry reward model outputs an unbounded logit whose scale and offset are arbitrary, while our
advantages expect rewards in [0, 1] (``environments.base.Score``). Three transforms, pure functions in
``TRANSFORMS`` (picked by ``TransformConfig.name``):

- ``sigmoid``: ``σ((s − shift) / temperature)``. Keeps absolute information across groups; ``shift`` and
  ``temperature`` should match the RM's score distribution (e.g. its median and spread).
- ``group_rank``: within each group (the samples of one prompt), the rank of the score scaled to
  [0, 1]: ``(rank − 1) / (n − 1)`` with ties sharing their average rank. Invariant to any monotone
  rescaling of the RM; a group of one scores 0.5.
- ``group_minmax``: ``(s − min) / (max − min)`` within each group; a constant group scores 0.5.

Group-relative transforms carry no cross-prompt information, which is what GRPO-style advantages use
anyway; the sigmoid is the one to use when groups are small. ``combine_behavioral`` mixes an RM reward
with an IFEval reward by configured weights. ``python -m pytest tests/rewards/test_rm_transforms.py -q``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

TransformName = Literal["sigmoid", "group_rank", "group_minmax"]
#: Score of a sample that cannot be ordered against others (a group of one, or all scores equal).
_UNRANKED = 0.5


@dataclass(frozen=True)
class TransformConfig:
    """How raw RM scores become rewards.

    Attributes:
        name: one of ``TRANSFORMS``.
        temperature: sigmoid temperature (> 0); larger flattens the reward.
        shift: raw score mapped to 0.5 by the sigmoid.
    """

    name: TransformName = "sigmoid"
    temperature: float = 1.0
    shift: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in TRANSFORMS:
            raise ValueError(f"TransformConfig.name: unknown {self.name!r}; choose from {sorted(TRANSFORMS)}")
        if not self.temperature > 0:
            raise ValueError(f"TransformConfig.temperature must be > 0, got {self.temperature}")


def sigmoid_transform(scores: np.ndarray, groups: np.ndarray, cfg: TransformConfig) -> np.ndarray:
    """σ((s − shift)/T) for scores [N]; computed as (1 + tanh(z/2))/2, which cannot overflow."""
    del groups  # absolute transform
    z = (scores - cfg.shift) / cfg.temperature
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def group_rank_transform(scores: np.ndarray, groups: np.ndarray, cfg: TransformConfig) -> np.ndarray:
    """Per-group average rank scaled to [0, 1]: (rank − 1)/(n − 1); scores [N], groups [N]."""
    del cfg
    out = np.full(scores.shape, _UNRANKED)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        if len(idx) < 2:
            continue
        s = scores[idx]
        # average rank (1-based) of each element: 1 + (#strictly smaller) + (#equal − 1)/2
        less = (s[None, :] < s[:, None]).sum(axis=1)
        equal = (s[None, :] == s[:, None]).sum(axis=1)
        out[idx] = (less + (equal - 1) / 2.0) / (len(idx) - 1)
    return out


def group_minmax_transform(scores: np.ndarray, groups: np.ndarray, cfg: TransformConfig) -> np.ndarray:
    """Per-group (s − min)/(max − min); scores [N], groups [N]; a constant group gets 0.5."""
    del cfg
    out = np.full(scores.shape, _UNRANKED)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        lo, hi = scores[idx].min(), scores[idx].max()
        if hi > lo:
            out[idx] = (scores[idx] - lo) / (hi - lo)
    return out


TRANSFORMS: dict[str, Callable[[np.ndarray, np.ndarray, TransformConfig], np.ndarray]] = {
    "sigmoid": sigmoid_transform,
    "group_rank": group_rank_transform,
    "group_minmax": group_minmax_transform,
}


def apply_transform(scores: Sequence[float], groups: Sequence[Hashable] | None, cfg: TransformConfig) -> np.ndarray:
    """Rewards in [0, 1] for raw ``scores`` [N]; ``groups`` [N] labels prompts (None: one group)."""
    s = np.asarray(scores, dtype=np.float64)
    if not np.all(np.isfinite(s)):
        raise ValueError(f"reward-model scores must be finite, got {s[~np.isfinite(s)][:4].tolist()}")
    if groups is None:
        g = np.zeros(len(s), dtype=np.int64)
    else:
        if len(groups) != len(s):
            raise ValueError(f"groups has {len(groups)} labels for {len(s)} scores")
        g = np.unique(np.asarray([hash(x) for x in groups]), return_inverse=True)[1]
    return TRANSFORMS[cfg.name](s, g, cfg)


def combine_behavioral(
    rm_reward: Sequence[float],
    if_reward: Sequence[float | None],
    *,
    rm_weight: float,
    if_weight: float,
) -> np.ndarray:
    """Weighted mean of the RM reward and the IF reward per sample, in [0, 1].

    ``(w_rm · r_rm + w_if · r_if) / (w_rm + w_if)``; where a sample has no IF constraints (``None``) its
    reward is ``r_rm`` alone (the weights are renormalised over the parts present).

    Args:
        rm_reward: transformed RM rewards [N], each in [0, 1].
        if_reward: IF rewards [N] in [0, 1], or None for samples without constraints.
        rm_weight: weight of the RM reward (>= 0).
        if_weight: weight of the IF reward (>= 0); the two must not both be 0.
    """
    if rm_weight < 0 or if_weight < 0 or rm_weight + if_weight == 0:
        raise ValueError(f"combine_behavioral: weights must be >= 0 and not both 0, got {rm_weight}, {if_weight}")
    if len(rm_reward) != len(if_reward):
        raise ValueError(f"combine_behavioral: {len(rm_reward)} RM rewards but {len(if_reward)} IF rewards")
    rm = np.asarray(rm_reward, dtype=np.float64)
    has_if = np.array([r is not None for r in if_reward])
    ifr = np.array([0.0 if r is None else r for r in if_reward], dtype=np.float64)
    w_if = np.where(has_if, if_weight, 0.0)
    if np.any((w_if == 0) & (rm_weight == 0)):
        raise ValueError("combine_behavioral: rm_weight is 0 and some samples have no IF constraints")
    return (rm_weight * rm + w_if * ifr) / (rm_weight + w_if)
