"""Run health: the error budget that stops a run whose environment always fails, and collapse warnings.

**Error budget.** A verifier that raises on every answer leaves no group with a trainable rollout, so no
optimizer step ever starts while admission keeps submitting new groups: the run sat at ``rl: 0%`` forever.
``ErrorBudget`` counts, per environment, the training groups in a row that failed entirely (every
rollout's verification raised or timed out, or the problem could not be generated). At
``pipeline.max_failed_groups`` the run stops with ``RunStopped``, one message naming the environment and
quoting the last failure. Any group with one verified rollout resets that environment's count, so a
flaky verifier (``chaos`` with ``raise_frac: 0.2``) never stops a run. ``errors`` counts every failed
environment call (the progress bar's ``err``).

**Collapse warnings.** From each optimizer step's rollout statistics (``Window.metrics``):

- reward collapse: ``rollout/reward`` (mean reward of the step's verified rollouts) is 0 for
  ``logging.collapse_window`` steps in a row; rewards lie in [0, 1], so every rollout scored 0 and MaxRL
  has no learning signal;
- output collapse: ``rollout/distinct_per_group`` (distinct response texts among the step's rollouts,
  divided by the number of groups, i.e. of distinct prompts) is at most ``logging.collapse_distinct_per_group``
  for ``logging.collapse_window`` steps in a row. A policy that answers each prompt with its own answer
  scores about 1 or more (up to the group size); one that gives the same string to different prompts
  (``0000000000`` for everything) scores 1 / groups.

A warning is logged once when its condition starts to hold (again after it cleared), shown in the
progress bar and listed under ``warnings`` in ``summary.json``. Nothing here stops a run.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from zaya_rl.pipeline.records import Group
from zaya_rl.pipeline.stopping import RunStopped

log = logging.getLogger(__name__)


class ErrorBudget:
    """Stops the run after ``max_failed_groups`` entirely failed groups in a row of one environment."""

    def __init__(self, max_failed_groups: int) -> None:
        self.limit = max_failed_groups
        self.streak: Counter = Counter()
        self.errors = 0

    def problem_failed(self, env: str, reason: str) -> None:
        """A problem of ``env`` could not be generated (counts as a failed group)."""
        self.errors += 1
        self._failed(env, f"problem generation failed: {reason}")

    def group_scored(self, group: Group, *, budgeted: bool = True) -> None:
        """Count ``group``'s failed verifications; ``budgeted=False`` (evaluation groups) only counts them."""
        failed = [r for r in group.rollouts if r.status != "ok"]
        self.errors += len(failed)
        if not budgeted:
            return
        if failed and len(failed) == len(group.rollouts):
            self._failed(group.spec.env, f"verifier {failed[-1].status}: {failed[-1].reason}")
        else:
            self.streak[group.spec.env] = 0

    def _failed(self, env: str, what: str) -> None:
        self.streak[env] += 1
        if self.streak[env] >= self.limit:
            raise RunStopped(
                f"environment {env!r} failed {self.limit} groups in a row ({what}); the run stopped "
                f"(pipeline.max_failed_groups={self.limit}). Check it with `zaya-rl envs check {env}`."
            )


class CollapseMonitor:
    """Collapse warnings from per-step rollout metrics (module docstring)."""

    def __init__(self, window: int, min_distinct_per_group: float) -> None:
        self.window, self.min_distinct = window, min_distinct_per_group
        self.runs: Counter = Counter()  # condition -> steps in a row it held
        self.warnings: list[dict[str, Any]] = []
        self.active: set[str] = set()

    def check(self, step: int, metrics: dict[str, Any]) -> list[dict[str, Any]]:
        """Update with optimizer step ``step``'s metrics; returns the warnings that start at this step."""
        reward, distinct = metrics.get("rollout/reward"), metrics.get("rollout/distinct_per_group")
        held = {
            "reward_collapse": reward is not None and reward <= 0.0,
            "output_collapse": distinct is not None and distinct <= self.min_distinct,
        }
        new = []
        for kind, now in held.items():
            self.runs[kind] = self.runs[kind] + 1 if now else 0
            if not now:
                self.active.discard(kind)
            elif self.runs[kind] >= self.window and kind not in self.active:
                self.active.add(kind)
                new.append({"step": step, "kind": kind, "message": self._message(kind, metrics)})
        for w in new:
            log.warning("step %d: %s", step, w["message"])
        self.warnings += new
        return new

    def _message(self, kind: str, m: dict[str, Any]) -> str:
        if kind == "reward_collapse":
            return (f"reward collapse: every verified rollout scored 0 for {self.window} steps in a row, so there "
                    "is no learning signal (the task may be too hard for this model: try a lower difficulty, "
                    "an SFT warm start or a bigger model; docs/environments.md)")
        return (f"output collapse: {m['rollout/distinct_per_group']:.2f} distinct responses per prompt "
                f"(<= {self.min_distinct:g}) for {self.window} steps in a row: different prompts get the same "
                "answer (inspect rollout/samples in metrics.jsonl)")
