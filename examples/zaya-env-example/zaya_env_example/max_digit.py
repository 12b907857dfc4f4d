"""``max_digit``: name the largest digit of a number; difficulty sets how many digits there are.

    prompt (user message)   ``max 40917``
    answer                  ``9``
    difficulty d            d + 2 digits (0..10); more digits to scan is harder for a small model

The contract (``environments.base.Environment``): ``generate(seed, difficulty)`` is pure and deterministic
(the same inputs give the same problem on every machine, so a scorer process that only receives the
``Problem`` can rebuild and verify it), ``verify(problem, response)`` returns a ``Score`` with a reward in
[0, 1] and never touches the network. Both run in zaya_rl's killable verifier processes, so a bug here
costs a sample (marked ``error`` and counted), not the run.

Check it: ``zaya-rl envs check max_digit``; sample it: ``zaya-rl envs sample max_digit --difficulty 3``.
"""

from __future__ import annotations

import random

from environments.base import Environment, Problem, Score
from environments.extract import extract_answer


class MaxDigit(Environment):
    """The largest digit of a ``d + 2``-digit number."""

    name = "max_digit"  # must equal the entry-point name in pyproject.toml
    category = "example"
    min_difficulty = 0
    max_difficulty = 10
    source = "zaya-env-example"

    def generate(self, seed: int, difficulty: int) -> Problem:
        d = self.check_difficulty(difficulty)
        # A local RNG keyed by (name, seed, level): never the global one, so problems do not depend on what
        # else ran in the process.
        rng = random.Random(f"{self.name}:{seed}:{d}")
        digits = "".join(rng.choice("0123456789") for _ in range(d + 2))
        return Problem(
            env=self.name,
            seed=seed,
            difficulty=d,
            messages=[{"role": "user", "content": f"max {digits}"}],
            answer=max(digits),
        )

    def verify(self, problem: Problem, response: str) -> Score:
        # \boxed{9}, <answer>9</answer>, "Answer: 9" or a bare "9" all count (allow_bare: tiny models).
        extracted, format_ok = extract_answer(response, allow_bare=True)
        correct = extracted is not None and extracted.strip() == problem.answer
        return Score(
            reward=float(correct),
            accuracy=float(correct),
            format_ok=format_ok,
            extracted=extracted,
            reason="" if correct else f"expected {problem.answer!r}, got {extracted!r}",
        )

    def reference_response(self, problem: Problem) -> str:
        """The SFT warm-start target and what ``zaya-rl envs check`` expects to verify as correct."""
        return problem.answer or ""

    def wrong_response(self, problem: Problem) -> str:
        """A response ``zaya-rl envs check`` expects to verify as incorrect."""
        return str((int(problem.answer or 0) + 1) % 10)
