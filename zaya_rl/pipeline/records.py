"""Typed records that travel between the actors of the pipeline.

A *group* is the G rollouts of one prompt. It is born as a ``GroupSpec`` (which problem, at which policy
version it was admitted), becomes a list of ``Rollout`` once a rollout worker returns, gets rewards from a
scorer, advantages from the orchestrator, and is then trained on or dropped with a reason.
All records are plain dataclasses (picklable by Ray, JSON-able through ``to_dict`` for checkpoints).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class GroupSpec:
    """One prompt to roll out G times.

    Attributes:
        group_id: unique, monotonically increasing id.
        env: environment name.
        seed: generation seed of the problem.
        difficulty: difficulty level of the problem.
        problem: the generated ``environments.Problem`` as a dict.
        admitted_version: published policy version when the group was admitted.
        kind: "train", "ttc" (a training group whose prompt aggregates earlier tails) or "eval".
    """

    group_id: int
    env: str
    seed: int
    difficulty: int
    problem: dict[str, Any]
    admitted_version: int = 0
    kind: str = "train"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Rollout:
    """One completion of a group's prompt, with what the trainer and the logs need.

    Attributes:
        group_id: the group it belongs to.
        index: position in the group (0..G-1).
        prompt_ids: ``[P]`` prompt tokens.
        token_ids: ``[G_t]`` generated tokens.
        logprobs: ``[G_t]`` behaviour log-probs of the generated tokens.
        versions: ``[G_t]`` policy version per generated token.
        finish_reason: the engine's finish reason.
        text: decoded completion.
        routed_experts: int16 ``[P + G_t - 1, L, K]`` (``NO_ROUTE`` = -1 where none) or None.
        canary_flagged: whether the compressibility canary flagged it.
        reward: scalar reward in [0, 1] once scored.
        accuracy: binary correctness once scored.
        status: "pending" until scored, then the verifier's status ("ok", "error", "timeout").
        reason: the verifier's reason.
        advantage: advantage once computed.
    """

    group_id: int
    index: int
    prompt_ids: list[int]
    token_ids: list[int]
    logprobs: list[float]
    versions: list[int]
    finish_reason: str
    text: str
    routed_experts: np.ndarray | None = None
    canary_flagged: bool = False
    reward: float = 0.0
    accuracy: float = 0.0
    status: str = "pending"
    reason: str = ""
    advantage: float = 0.0

    @property
    def min_version(self) -> int:
        """Oldest policy version among its tokens (its staleness anchor); 0 for an empty completion."""
        return min(self.versions) if self.versions else 0


@dataclass
class Group:
    """A group of rollouts of one spec.

    ``estimator`` and ``nonbinary`` are set with its advantages: the estimator used, and whether its rewards
    were not all 0 or 1 (``algorithm.nonbinary_advantage``).
    """

    spec: GroupSpec
    rollouts: list[Rollout] = field(default_factory=list)
    estimator: str = ""
    nonbinary: bool = False

    @property
    def min_version(self) -> int:
        return min((r.min_version for r in self.rollouts), default=self.spec.admitted_version)
