"""RLVE adaptive difficulty: a per-environment ladder that climbs when the model masters its top level.

Source: arXiv 2511.07317 (RLVE) and ``Zhiyuan-Zeng/RLVE:slime/ray/rollout_data_source.py``
(``RLVEManager``); research/environments.md §1.2. Per environment:

* an upper level h, starting at 0 (RLVE ``--initial-difficulty 0``);
* problems are drawn at d uniform in [max(0, h − window + 1), h] (``window`` = 4 in RLVE);
* only results of problems at exactly d = h are counted;
* once at least ``min_prompts_before_check × group_size`` results at h are counted (8 × 16 = 128 in
  RLVE), their accuracy (the binary ``Score.accuracy``, not the shaped reward) is checked: h += 1 if it is
  >= ``accuracy_to_advance`` (0.9); the counters are reset whether or not h moved;
* h never decreases, and stops at the environment's ``max_difficulty``.

Not in RLVE: a level whose problems take too long to generate (``pipeline.generate_timeout_s``) is
*retired* (``retire``): the ladder's ceiling drops below it, h with it if needed, and neither it nor
any level above is drawn again in this run (the ceiling is checkpointed).

The check runs at the end of each ``observe`` call, which passes one group's results: like RLVE's
slime loop (once per rollout batch), a check may see more than the minimum when a group straddles it.
This module is pure: no I/O, no global RNG (the caller passes a ``random.Random``); ``state_dict`` is
JSON-able so the run checkpoint can hold it.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # duck-typed at run time: only window, min_prompts_before_check, accuracy_to_advance
    from zaya_rl.config.schema import AdaptiveDifficultyConfig

#: Float guard for "accuracy >= threshold": 72/80 must count as reaching 0.9.
_ACC_EPS = 1e-12


@dataclass
class Ladder:
    """State of one environment's ladder.

    Attributes:
        h: current upper level.
        hits: summed accuracy of the counted results at h since the last check.
        count: number of counted results at h since the last check.
        last_accuracy: accuracy at the last check (None before the first).
        ceiling: highest level still drawn after slow levels were retired (None: none retired).
    """

    h: int = 0
    hits: float = 0.0
    count: int = 0
    last_accuracy: float | None = None
    ceiling: int | None = None


class AdaptiveDifficulty:
    """The RLVE controller over a set of environments.

    Args:
        config: window, check size and threshold (``data.adaptive``).
        group_size: rollouts per prompt (the check needs ``min_prompts_before_check × group_size``).
        max_difficulty: each controlled environment's top level (None: unbounded).
        initial: starting h per environment (default 0).
    """

    def __init__(
        self,
        config: AdaptiveDifficultyConfig,
        group_size: int,
        max_difficulty: Mapping[str, int | None],
        initial: Mapping[str, int] | None = None,
    ) -> None:
        if group_size < 1:
            raise ValueError(f"AdaptiveDifficulty: group_size must be >= 1, got {group_size}")
        self.config, self.group_size = config, group_size
        self.max_difficulty = dict(max_difficulty)
        self.ladders = {name: Ladder(h=(initial or {}).get(name, 0)) for name in self.max_difficulty}

    @property
    def check_size(self) -> int:
        """Counted results at h needed before a check."""
        return self.config.min_prompts_before_check * self.group_size

    def _ladder(self, env: str) -> Ladder:
        if env not in self.ladders:
            raise KeyError(
                f"AdaptiveDifficulty: environment {env!r} is not adaptive (have {sorted(self.ladders)})"
            )
        return self.ladders[env]

    def window(self, env: str) -> tuple[int, int]:
        """The inclusive level range problems of ``env`` are drawn from."""
        h = self._ladder(env).h
        return max(0, h - self.config.window + 1), h

    def sample(self, env: str, rng: random.Random) -> int:
        """A level drawn uniformly from ``window(env)``."""
        lo, hi = self.window(env)
        return rng.randint(lo, hi)

    def observe(self, env: str, difficulty: int, accuracies: Sequence[float]) -> bool:
        """Record one group's binary accuracies at ``difficulty``; returns True when h rose.

        Results below h are ignored (RLVE counts only the frontier); a difficulty above h is a caller bug.
        Exclude verifier failures (``Score.status != "ok"``) before calling.
        """
        ladder = self._ladder(env)
        if difficulty > ladder.h:
            raise ValueError(
                f"AdaptiveDifficulty: {env} result at difficulty {difficulty} above h={ladder.h}"
            )
        if difficulty == ladder.h:
            ladder.hits += float(sum(accuracies))
            ladder.count += len(accuracies)
        if ladder.count < self.check_size:
            return False
        accuracy = ladder.hits / ladder.count
        ladder.last_accuracy, ladder.hits, ladder.count = accuracy, 0.0, 0
        top = self.top(env)
        if accuracy >= self.config.accuracy_to_advance - _ACC_EPS and (top is None or ladder.h < top):
            ladder.h += 1
            return True
        return False

    def top(self, env: str) -> int | None:
        """The highest level the ladder may reach: ``max_difficulty``, lowered by retired levels."""
        ceiling, top = self._ladder(env).ceiling, self.max_difficulty[env]
        return top if ceiling is None else ceiling if top is None else min(top, ceiling)

    def retire(self, env: str, level: int) -> bool:
        """Stop drawing ``level`` and above (too slow to generate); False when nothing lower is left."""
        ladder = self._ladder(env)
        if level <= 0:
            return False
        ladder.ceiling = min(level - 1, ladder.ceiling if ladder.ceiling is not None else level - 1)
        if ladder.h > ladder.ceiling:
            ladder.h, ladder.hits, ladder.count = ladder.ceiling, 0.0, 0
        return True

    def metrics(self) -> dict[str, float]:
        """``env/<name>/difficulty`` (h) and ``env/<name>/acc_at_h`` (running accuracy at h, else last check)."""
        out: dict[str, float] = {}
        for name, ladder in self.ladders.items():
            out[f"env/{name}/difficulty"] = float(ladder.h)
            if ladder.ceiling is not None:
                out[f"env/{name}/ceiling"] = float(ladder.ceiling)
            acc = ladder.hits / ladder.count if ladder.count else ladder.last_accuracy
            if acc is not None:
                out[f"env/{name}/acc_at_h"] = acc
        return out

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state (ladders only; the config comes from the run config)."""
        return {"ladders": {name: asdict(ladder) for name, ladder in self.ladders.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore ladders saved by ``state_dict``; environments new to this run start at h = 0."""
        for name, saved in state["ladders"].items():
            if name in self.ladders:
                self.ladders[name] = Ladder(**saved)
