"""The environment contract: a problem generator with a difficulty knob, and a verifier.

An environment is one small class. ``generate(seed, difficulty)`` is pure: the same inputs give the same
``Problem`` on every machine, and the ``Problem`` carries everything needed to rebuild and verify it (so a
scorer process that only received the ``Problem`` can score it). ``verify(problem, response)`` returns a
``Score`` whose ``reward`` lies in [0, 1]. Neither method touches the network.

This module deliberately holds no registry, no process pool and no difficulty controller: those live in
``environments.registry``, ``environments.workers`` and ``environments.difficulty``.
DESIGN.md §6; research/environments.md §9.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

ScoreStatus = Literal["ok", "error", "timeout"]


@dataclass(frozen=True)
class Problem:
    """One generated problem.

    Attributes:
        env: name of the environment that generated it.
        seed: generation seed.
        difficulty: difficulty level it was generated at.
        messages: chat prompt, a list of ``{"role": ..., "content": ...}`` dicts.
        answer: reference answer (None when the verifier checks validity instead, e.g. code tests).
        metadata: JSON-serialisable data the verifier needs (test cases, constraint arguments, ...).
    """

    env: str
    seed: int
    difficulty: int
    messages: list[dict[str, str]]
    answer: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt_text(self) -> str:
        """The content of the last user message (what the model is asked)."""
        users = [m["content"] for m in self.messages if m.get("role") == "user"]
        return users[-1] if users else ""

    def to_dict(self) -> dict[str, Any]:
        """Field -> value, shallow (nested lists/dicts are shared): ``asdict``'s deep copy cost ~20 µs a call."""
        return dict(vars(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Problem:
        return cls(**d)


@dataclass(frozen=True)
class Score:
    """The verdict on one response.

    Attributes:
        reward: scalar reward in [0, 1] used for advantages.
        accuracy: binary correctness (1.0 or 0.0); the adaptive-difficulty controller counts this.
        format_ok: whether an answer could be extracted in the expected format.
        extracted: the extracted answer (None when there is none).
        status: "ok", or "error"/"timeout" when the verifier itself failed (the sample is then excluded).
        reason: human-readable reason (why it is wrong, or why the verifier failed).
    """

    reward: float
    accuracy: float
    format_ok: bool = True
    extracted: str | None = None
    status: ScoreStatus = "ok"
    reason: str = ""

    def __post_init__(self) -> None:
        if self.status == "ok" and not 0.0 <= self.reward <= 1.0:
            raise ValueError(f"Score.reward must lie in [0, 1], got {self.reward!r} ({self.reason})")

    @classmethod
    def failed(cls, status: ScoreStatus, reason: str) -> Score:
        """A verifier failure: excluded from training, counted with its reason."""
        return cls(reward=0.0, accuracy=0.0, format_ok=False, extracted=None, status=status, reason=reason)

    def to_dict(self) -> dict[str, Any]:
        """Field -> value, shallow (nested lists/dicts are shared): ``asdict``'s deep copy cost ~20 µs a call."""
        return dict(vars(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Score:
        return cls(**d)


class Environment(ABC):
    """Base class of every environment.

    Subclasses set the class attributes and implement ``generate`` and ``verify``. Register a subclass
    through the ``zaya_rl.environments`` entry-point group (see ``environments.registry``).

    Attributes:
        name: unique registry name.
        category: coarse family used in mixtures and logs ("math", "code", "puzzle", "rlve", "if", ...).
        min_difficulty: lowest difficulty level.
        max_difficulty: highest difficulty level, or None for an unbounded ladder.
        source: where the environment comes from (a package name, or "zaya_rl").
        note: shown beside it by ``zaya-rl envs list``, e.g. levels of a wrapped generator it does not offer
            and why ("levels 2..3 not offered: one problem takes more than 5 s to generate").
    """

    name: ClassVar[str]
    category: ClassVar[str] = "misc"
    min_difficulty: ClassVar[int] = 0
    max_difficulty: ClassVar[int | None] = None
    source: ClassVar[str] = "zaya_rl"
    note: ClassVar[str] = ""

    @abstractmethod
    def generate(self, seed: int, difficulty: int) -> Problem:
        """Generate the problem for ``seed`` at ``difficulty`` (pure and deterministic)."""

    @abstractmethod
    def verify(self, problem: Problem, response: str) -> Score:
        """Score ``response`` (the model's text completion) against ``problem``."""

    def clamp_difficulty(self, difficulty: int) -> int:
        """Clamp a requested level into this environment's range."""
        d = max(self.min_difficulty, int(difficulty))
        return d if self.max_difficulty is None else min(d, self.max_difficulty)

    def check_difficulty(self, difficulty: int) -> int:
        """Return ``difficulty`` as an int, or raise a ValueError naming the environment and its range."""
        d = int(difficulty)
        top = "unbounded" if self.max_difficulty is None else self.max_difficulty
        if d < self.min_difficulty or (self.max_difficulty is not None and d > self.max_difficulty):
            raise ValueError(f"{self.name}: difficulty {difficulty} outside [{self.min_difficulty}, {top}]")
        return d

    def wrong_response(self, problem: Problem) -> str:
        """A response that must verify as incorrect; used by ``zaya-rl envs check``.

        The default answers with a string that no reference answer equals; environments whose answers
        could collide with it override this.
        """
        return "I cannot solve this. \\boxed{zaya_rl_wrong_answer_sentinel}"

    def reference_response(self, problem: Problem) -> str:
        """A response that must verify as correct; used by ``zaya-rl envs check`` and SFT warm starts."""
        if problem.answer is None:
            raise NotImplementedError(f"{self.name}: no reference answer; override reference_response")
        return f"\\boxed{{{problem.answer}}}"
