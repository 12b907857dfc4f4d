"""From scored rollouts to a trainable group: verifier errors, canary policy, filtering, advantages.

Order (each drop is booked with its reason, see ``accounting.DROP_REASONS``):
1. rollouts whose verifier failed (status ``error``/``timeout``) are excluded;
2. canary-flagged rollouts get reward 0 (``zero_reward``) or are excluded (``drop``);
3. optionally, a group whose remaining rewards are all equal is dropped (no learning signal);
4. advantages are computed over the remaining rollouts of the group (MaxRL by default; a MaxRL group whose
   rewards are not all 0 or 1 gets ``algorithm.nonbinary_advantage``, recorded in ``Group.estimator``). A
   group that lost rollouts to errors is a smaller group; the estimator's mean is over what remains.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch

from environments.sampler import is_informative
from zaya_rl.algorithms.advantages import compute_advantages, group_estimator, is_binary
from zaya_rl.pipeline.records import Group, Rollout


def apply_scores(group: Group, scores: list[dict[str, Any]]) -> None:
    """Copy verifier scores (``environments.Score.to_dict()``) onto the group's rollouts, in order."""
    if len(scores) != len(group.rollouts):
        raise ValueError(f"group {group.spec.group_id}: {len(scores)} scores for {len(group.rollouts)} rollouts")
    for r, s in zip(group.rollouts, scores, strict=True):
        r.reward, r.accuracy = float(s["reward"]), float(s["accuracy"])
        r.status, r.reason = s["status"], s.get("reason", "")


def finalize_group(
    group: Group, *, advantage: str, canary_on_flag: str, filter_equal: bool, nonbinary: str
) -> tuple[list[Rollout], Counter]:
    """Return the rollouts to train on (with advantages set) and the dropped counts by reason."""
    dropped: Counter = Counter()
    kept = []
    for r in group.rollouts:
        if r.status != "ok":
            dropped["verifier_error"] += 1
        elif r.canary_flagged and canary_on_flag == "drop":
            dropped["canary"] += 1
        else:
            if r.canary_flagged and canary_on_flag == "zero_reward":
                r.reward, r.accuracy = 0.0, 0.0
            kept.append(r)
    if kept and filter_equal and not is_informative([r.reward for r in kept]):
        dropped["equal_rewards"] += len(kept)
        kept = []
    if kept:
        rewards = torch.tensor([r.reward for r in kept], dtype=torch.float64)
        where = f"group {group.spec.group_id} of environment {group.spec.env!r}"
        group.estimator = group_estimator(advantage, rewards, nonbinary=nonbinary, where=where)
        group.nonbinary = not is_binary(rewards)
        for r, a in zip(kept, compute_advantages(group.estimator, rewards).tolist(), strict=True):
            r.advantage = float(a)
    return kept, dropped
