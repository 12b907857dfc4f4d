"""Admission control and lag: how far generation may run ahead of training (pure functions).

Versions count optimizer steps: the weights after k steps are version k. A rollout's *lag* when it is
trained by the step that starts from version k is ``k - min(token versions)`` (its oldest token decides;
with in-flight updates later tokens are fresher). PipelineRL's ``max_lag`` bounds it.

We bound it by **admission**, not by discarding: a new group may only be admitted while

    active_groups < (published_version + max_lag + 1) · groups_per_step

where ``active_groups`` counts admitted groups that were not dropped (trained, waiting, scoring or being
generated) and ``published_version`` is the newest version every rollout worker has acknowledged. Groups
are trained in completion order, so group n is trained at step ⌊n / groups_per_step⌋ at the latest
under normal completion and its first token is at least ``published_version`` at admission, which gives
lag ≤ max_lag. Discard-and-requeue would instead bias training toward short rollouts (the long ones are
the ones that go stale; tinker-cookbook PR #822). A group that still arrives too old (it finished much
later than groups admitted after it) is counted and dropped or trained per ``pipeline.stale_policy``.

``max_lag = 0`` is the synchronous schedule: a batch is generated, trained, the weights are published,
then the next batch is admitted.
"""

from __future__ import annotations


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
