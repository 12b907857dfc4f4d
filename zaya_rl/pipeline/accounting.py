"""Sample accounting: every generated rollout ends exactly once as trained or dropped (with a reason).

Invariant, checked after every optimizer step and at the end of a run:

    generated == trained + Σ dropped[reason] + pending

where *pending* rollouts have been generated but are still being scored or wait in the training buffer.
The counters are part of the checkpoint, so a resumed run continues the same books (AReaL #1388: staleness
counters lost on resume). Rollouts pending at a checkpoint cannot be recovered after a crash; ``resume``
books them as ``dropped["interrupted"]`` and regenerates their prompts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

#: Reasons a rollout can be dropped (each is a counter and a metric ``samples/dropped/<reason>``).
DROP_REASONS = (
    "stale",  # older than pipeline.max_lag when it reached the trainer (stale_policy: drop)
    "equal_rewards",  # its group had no learning signal (algorithm.filter_equal_groups)
    "verifier_error",  # the verifier raised, crashed or timed out: excluded, the run goes on
    "canary",  # flagged degenerate with canary.on_flag: drop
    "nonfinite_step",  # its optimizer step had a NaN/Inf loss or gradient and was skipped
    "interrupted",  # pending when the run stopped or crashed (regenerated on resume)
)


class AccountingError(RuntimeError):
    """The books do not balance: a rollout was lost or counted twice."""


@dataclass
class Accounting:
    """Counters of the run's rollouts and groups."""

    generated: int = 0
    trained: int = 0
    dropped: Counter = field(default_factory=Counter)
    groups_submitted: int = 0
    groups_resubmitted: int = 0
    worker_restarts: int = 0
    stale_trained: int = 0

    def add_generated(self, n: int) -> None:
        self.generated += n

    def add_trained(self, n: int) -> None:
        self.trained += n

    def add_dropped(self, reason: str, n: int) -> None:
        if reason not in DROP_REASONS:
            raise ValueError(f"unknown drop reason {reason!r}; expected one of {DROP_REASONS}")
        if n:
            self.dropped[reason] += n

    @property
    def total_dropped(self) -> int:
        return sum(self.dropped.values())

    def check(self, pending: int) -> None:
        """Raise ``AccountingError`` unless generated == trained + dropped + pending."""
        if self.generated != self.trained + self.total_dropped + pending:
            raise AccountingError(
                f"sample accounting does not balance: generated={self.generated} trained={self.trained} "
                f"dropped={dict(self.dropped)} pending={pending}"
            )

    def metrics(self) -> dict[str, float]:
        m = {
            "samples/generated": self.generated,
            "samples/trained": self.trained,
            "samples/dropped": self.total_dropped,
            "samples/stale_trained": self.stale_trained,
            "groups/submitted": self.groups_submitted,
            "groups/resubmitted": self.groups_resubmitted,
            "workers/restarts": self.worker_restarts,
        }
        m.update({f"samples/dropped/{k}": v for k, v in sorted(self.dropped.items())})
        return {k: float(v) for k, v in m.items()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "generated": self.generated,
            "trained": self.trained,
            "dropped": dict(self.dropped),
            "groups_submitted": self.groups_submitted,
            "groups_resubmitted": self.groups_resubmitted,
            "worker_restarts": self.worker_restarts,
            "stale_trained": self.stale_trained,
        }

    @classmethod
    def from_state_dict(cls, d: dict[str, Any]) -> Accounting:
        d = dict(d)
        d["dropped"] = Counter(d.get("dropped", {}))
        return cls(**d)
