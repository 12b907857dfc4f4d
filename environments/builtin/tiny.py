"""Tiny tasks for the CPU demo: short prompts and answers a byte-level tiny ZAYA model can learn.

The embedded default job trains a randomly initialised model with a ~260-token byte vocabulary, so each
prompt is at most 40 bytes and each answer at most 12 bytes. Difficulty is a genuine knob for such a
model: more digits to carry, longer strings to hold in context.

===========  ======  =================================  ===================================
name         levels  prompt (user message)              difficulty
===========  ======  =================================  ===================================
arithmetic   0..7    ``483+27=``                        d//2 + 1 digits; odd levels add ``-``
reverse      0..8    ``reverse kqzt``                   string of d + 2 lowercase letters
sort_digits  0..8    ``sort 5213``                      string of d + 2 digits
count_char   0..8    ``count a in abacbca``             4 + 3d letters from min(2 + d, 6)
===========  ======  =================================  ===================================

``verify`` extracts the answer with ``environments.extract.extract_answer(allow_bare=True)``: the last
``\\boxed{}``, else the last ``<answer>`` tags, else the last ``Answer:`` line, else the whole stripped
response; it then compares exactly, integers normalised (``+07`` equals ``7``). Reward = accuracy (binary).
The SFT target (``reference_response``) is the bare answer. Each generator seeds a local
``random.Random`` from (name, seed, difficulty), so problems never depend on global RNG state.
"""

from __future__ import annotations

import random
import string
from abc import abstractmethod

from environments.base import Environment, Problem, Score
from environments.extract import extract_answer, normalize_integer


class TinyTask(Environment):
    """Shared generate/verify of the tiny tasks; subclasses only make (prompt, answer) pairs."""

    category = "tiny"
    min_difficulty = 0
    #: Whether the answer is an integer (normalised before comparison) or a literal string.
    numeric: bool = False

    @abstractmethod
    def make(self, rng: random.Random, difficulty: int) -> tuple[str, str]:
        """Return ``(prompt, answer)`` for one problem at ``difficulty``."""

    def generate(self, seed: int, difficulty: int) -> Problem:
        d = self.check_difficulty(difficulty)
        prompt, answer = self.make(random.Random(f"{self.name}:{seed}:{d}"), d)
        return Problem(
            env=self.name,
            seed=seed,
            difficulty=d,
            messages=[{"role": "user", "content": prompt}],
            answer=answer,
        )

    def _canonical(self, answer: str) -> str:
        return normalize_integer(answer) if self.numeric else answer.strip()

    def verify(self, problem: Problem, response: str) -> Score:
        extracted, format_ok = extract_answer(response, allow_bare=True)
        if extracted is None:
            return Score(reward=0.0, accuracy=0.0, format_ok=False, reason="empty response")
        correct = self._canonical(extracted) == self._canonical(problem.answer or "")
        reason = "" if correct else f"expected {problem.answer!r}, got {extracted!r}"
        return Score(
            reward=float(correct),
            accuracy=float(correct),
            format_ok=format_ok,
            extracted=extracted,
            reason=reason,
        )

    def reference_response(self, problem: Problem) -> str:
        return problem.answer or ""

    def wrong_response(self, problem: Problem) -> str:
        answer = problem.answer or ""
        return str(int(answer) + 1) if self.numeric else answer + "x"


class Arithmetic(TinyTask):
    """``a+b=`` / ``a-b=`` with ``d//2 + 1``-digit operands; odd levels mix in subtraction."""

    name = "arithmetic"
    max_difficulty = 7
    numeric = True

    def make(self, rng: random.Random, difficulty: int) -> tuple[str, str]:
        top = 10 ** (difficulty // 2 + 1) - 1
        a, b = rng.randint(0, top), rng.randint(0, top)
        op = rng.choice("+-") if difficulty % 2 else "+"
        return f"{a}{op}{b}=", str(a + b if op == "+" else a - b)


class Reverse(TinyTask):
    """Reverse a string of ``d + 2`` lowercase letters."""

    name = "reverse"
    max_difficulty = 8

    def make(self, rng: random.Random, difficulty: int) -> tuple[str, str]:
        s = "".join(rng.choices(string.ascii_lowercase, k=difficulty + 2))
        return f"reverse {s}", s[::-1]


class SortDigits(TinyTask):
    """Sort a string of ``d + 2`` digits ascending."""

    name = "sort_digits"
    max_difficulty = 8

    def make(self, rng: random.Random, difficulty: int) -> tuple[str, str]:
        s = "".join(rng.choices(string.digits, k=difficulty + 2))
        return f"sort {s}", "".join(sorted(s))


class CountChar(TinyTask):
    """Count one letter in a string of ``4 + 3d`` letters drawn from the first ``min(2 + d, 6)``."""

    name = "count_char"
    max_difficulty = 8
    numeric = True

    def make(self, rng: random.Random, difficulty: int) -> tuple[str, str]:
        alphabet = string.ascii_lowercase[: min(2 + difficulty, 6)]
        s = "".join(rng.choices(alphabet, k=4 + 3 * difficulty))
        c = rng.choice(alphabet)
        return f"count {c} in {s}", str(s.count(c))
