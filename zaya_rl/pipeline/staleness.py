"""Admission control, lag and the order in which groups reach the trainer (pure functions).

Versions count optimizer steps: the weights after k steps are version k. A rollout's *lag* when it is
trained by the step that starts from version k is ``k - min(token versions)`` (its oldest token decides;
with in-flight updates later tokens are fresher). PipelineRL's ``max_lag`` bounds it.

We bound it by **admission**, not by discarding: a new group may only be admitted while

    active_groups < (published_version + max_lag + 1) · groups_per_step

where ``active_groups`` counts admitted groups that were not dropped (trained, waiting, scoring or being
generated) and ``published_version`` is the newest version every rollout worker has acknowledged.

With ``pipeline.stale_policy: wait`` (the default) the trainer takes groups **in admission order**: the
step that starts from version k trains the next ``groups_per_step`` groups not dropped, in the order they
were admitted, and waits for the slowest of them. Then no sample is ever older than ``max_lag``:

    the m-th kept group (0-based, admission order) is trained by step k = ⌊m / groups_per_step⌋;
    at its admission, active_groups ≥ m (every kept group admitted before it was still counted),
    so m < (v + max_lag + 1) · groups_per_step with v the published version then, i.e. k ≤ v + max_lag;
    its oldest token was sampled with weights ≥ v, so its lag k − min(versions) ≤ k − v ≤ max_lag.

No group is discarded, so long rollouts are trained as often as short ones (discarding late groups biases
training toward short answers: the long ones are the ones that arrive late; tinker-cookbook PR #822). The
price is that a step waits for its slowest group; generation of the next ``max_lag`` batches goes on
meanwhile, so with ``max_lag ≥ 1`` the rollout workers stay busy.

``train`` and ``drop`` take groups in **completion order** instead (the trainer never waits for a slow
group); a group that then arrives older than ``max_lag`` is trained anyway (its truncated importance weights
min(p/q, C) correct for the older behaviour policy; counted in ``samples/stale_trained``) or dropped
(counted as ``stale``; biased toward short answers, opt-in only).

``max_lag = 0`` is the synchronous schedule (``pipeline.mode: sync``): a batch is generated, trained, the
weights are published, then the next batch is admitted; it always takes groups in admission order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable


def admission_open(*, active_groups: int, published_version: int, groups_per_step: int, max_lag: int) -> bool:
    """Whether one more group may be admitted for generation now."""
    return active_groups < (published_version + max_lag + 1) * groups_per_step


def admissible_count(*, active_groups: int, published_version: int, groups_per_step: int, max_lag: int) -> int:
    """How many more groups may be admitted now."""
    return max(0, (published_version + max_lag + 1) * groups_per_step - active_groups)


def lag(trainer_version: int, min_token_version: int) -> int:
    """Optimizer steps between the oldest token of a sample and the weights it is trained against."""
    return trainer_version - min_token_version


def is_stale(trainer_version: int, min_token_version: int, max_lag: int) -> bool:
    return lag(trainer_version, min_token_version) > max_lag


def in_admission_order(*, mode: str, stale_policy: str) -> bool:
    """Whether finished groups are handed to the trainer in admission order (module docstring)."""
    return mode == "sync" or stale_policy == "wait"


class AdmissionOrder:
    """Hand finished groups on in the order they were admitted (a reorder buffer), or as they finish.

    ``admit(key)`` when a group is admitted, ``finish(key)`` when it finishes (successfully or not):
    returns the keys that may be handed on now, in order. With ``in_order`` False every key is handed on
    as it finishes. ``held`` are finished keys waiting for an earlier-admitted group.
    """

    def __init__(self, in_order: bool) -> None:
        self.in_order = in_order
        self._queue: deque[Hashable] = deque()
        self.held: set[Hashable] = set()

    def admit(self, key: Hashable) -> None:
        if self.in_order:
            self._queue.append(key)

    def finish(self, key: Hashable) -> list[Hashable]:
        if not self.in_order:
            return [key]
        self.held.add(key)
        out = []
        while self._queue and self._queue[0] in self.held:
            head = self._queue.popleft()
            self.held.discard(head)
            out.append(head)
        return out
