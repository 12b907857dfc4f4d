"""``chaos``: a fault-injection wrapper for robustness drills and the pipeline's reliability tests.

It behaves exactly like the environment it wraps (default ``arithmetic``), except that ``verify``
deterministically misbehaves on a chosen fraction of calls, keyed by a hash of (problem seed, response) so
a given sample always does the same thing:

- ``raise_frac``: raises ``RuntimeError`` (the pool turns it into ``Score.failed("error", ...)``);
- ``hang_frac``: sleeps far past any verification deadline (the pool kills the worker: ``timeout``);
- ``crash_frac``: ``os._exit(3)`` in the worker process (the pool respawns it: ``error``);
- ``slow_from``: ``generate`` at this level and above sleeps far past any generation deadline (the pool
  kills the worker: ``timeout``; an adaptive ladder then stops below the level).

Put it in a mixture to check that a run survives bad verifiers and books the samples as
``dropped/verifier_error``: ``{name: chaos, kwargs: {raise_frac: 0.1, hang_frac: 0.02}}``.
"""

from __future__ import annotations

import hashlib
import os
import time

from environments.base import Environment, Problem, Score

#: Long enough to outlast any configured verification deadline.
_HANG_S = 3600.0


class Chaos(Environment):
    """Wraps ``inner`` (a registered environment name) and injects verifier faults."""

    name = "chaos"
    category = "test"

    def __init__(self, inner: str = "arithmetic", raise_frac: float = 0.0, hang_frac: float = 0.0,
                 crash_frac: float = 0.0, slow_from: int | None = None) -> None:
        from environments.registry import get_environment

        if not 0.0 <= raise_frac + hang_frac + crash_frac <= 1.0 or min(raise_frac, hang_frac, crash_frac) < 0:
            raise ValueError("chaos: raise_frac, hang_frac, crash_frac must be >= 0 and sum to at most 1")
        self.inner = get_environment(inner)
        self.min_difficulty, self.max_difficulty = self.inner.min_difficulty, self.inner.max_difficulty
        self.fracs = (raise_frac, hang_frac, crash_frac)
        self.slow_from = slow_from

    def generate(self, seed: int, difficulty: int) -> Problem:
        if self.slow_from is not None and difficulty >= self.slow_from:
            time.sleep(_HANG_S)
        p = self.inner.generate(seed, difficulty)
        return Problem(env=self.name, seed=p.seed, difficulty=p.difficulty, messages=p.messages, answer=p.answer,
                       metadata=p.metadata)

    def verify(self, problem: Problem, response: str) -> Score:
        digest = hashlib.sha256(f"{problem.seed}:{response}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        raise_frac, hang_frac, crash_frac = self.fracs
        if u < raise_frac:
            raise RuntimeError("chaos: injected verifier exception")
        if u < raise_frac + hang_frac:
            time.sleep(_HANG_S)
        if u < raise_frac + hang_frac + crash_frac:
            os._exit(3)
        return self.inner.verify(problem, response)

    def reference_response(self, problem: Problem) -> str:
        return self.inner.reference_response(problem)
