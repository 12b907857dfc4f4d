"""Deterministic, checkpointable stream of (environment, seed, difficulty) draws, and the group filter.

``MixtureSampler`` reads a stage's ``data.environments`` entries (name, weight, fixed level or
``"adaptive"``, constructor kwargs). Draw i uses its own ``random.Random`` keyed by (run seed, i), so the
stream is a pure function of the seed, the draw index and the adaptive ladders: a resumed run that
restores ``state_dict()`` (index + ladders) continues the same stream. Per draw: the environment by
normalised weight, then the level (the fixed one, or the RLVE controller's window), then the problem
seed.

Seed spaces: training problem seeds lie in [0, 2^31); held-out evaluation seeds are 2^31 + j, so they
never coincide with a training seed (both stay below 2^32, NumPy's seed limit, which RLVE needs). Small
problem spaces (``arithmetic`` at level 0 has 100 problems) can still repeat a problem across the two.

``is_informative``/``filter_groups``: DAPO's dynamic sampling (arXiv 2503.14476; slime's
``check_reward_nonzero_std``): a group whose rewards are all equal has zero advantage everywhere and is
dropped. Equality is exact: a group with any reward difference is kept.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from environments.difficulty import AdaptiveDifficulty

if TYPE_CHECKING:
    from zaya_rl.config.schema import AdaptiveDifficultyConfig, EnvEntry

#: Training problem seeds are drawn from [0, TRAIN_SEED_LIMIT).
TRAIN_SEED_LIMIT = 2**31
#: Held-out evaluation seeds are EVAL_SEED_BASE + j.
EVAL_SEED_BASE = 2**31


@dataclass(frozen=True)
class Draw:
    """One prompt to generate: ``VerifierPool.generate(env, kwargs, seed, difficulty)``.

    Attributes:
        env: environment name.
        seed: problem seed.
        difficulty: level.
        kwargs: environment constructor arguments (from the mixture entry).
        index: position in the stream (None for evaluation draws).
    """

    env: str
    seed: int
    difficulty: int
    kwargs: dict[str, Any] = field(default_factory=dict)
    index: int | None = None


def _registry_ranges(names: Sequence[str]) -> dict[str, tuple[int, int | None]]:
    from environments.registry import get_spec

    return {n: (get_spec(n).min_difficulty, get_spec(n).max_difficulty) for n in names}


class MixtureSampler:
    """Weighted mixture of environments with fixed or adaptive difficulty.

    Args:
        entries: the stage's environment entries (``EnvEntry``: name, weight, difficulty, kwargs).
        seed: run seed.
        adaptive: RLVE rule for the ``"adaptive"`` entries (``data.adaptive``).
        group_size: rollouts per prompt (the RLVE check size is ``min_prompts_before_check × group_size``).
        ranges: ``name -> (min_difficulty, max_difficulty)``; default: read from the registry.
    """

    def __init__(
        self,
        entries: Sequence[EnvEntry],
        seed: int,
        *,
        adaptive: AdaptiveDifficultyConfig,
        group_size: int,
        ranges: Mapping[str, tuple[int, int | None]] | None = None,
    ) -> None:
        if not entries:
            raise ValueError("data.environments: at least one environment is required")
        self.entries, self.seed, self.index = list(entries), seed, 0
        ranges = dict(ranges) if ranges is not None else _registry_ranges([e.name for e in self.entries])
        for i, e in enumerate(self.entries):
            lo, hi = ranges[e.name]
            if e.difficulty != "adaptive" and not (lo <= e.difficulty and (hi is None or e.difficulty <= hi)):
                raise ValueError(
                    f"data.environments[{i}].difficulty: {e.difficulty} outside {e.name}'s [{lo}, {hi}]"
                )
        total = sum(e.weight for e in self.entries)
        self._cumulative = list(itertools.accumulate(e.weight / total for e in self.entries))
        adaptive_max = {e.name: ranges[e.name][1] for e in self.entries if e.difficulty == "adaptive"}
        self.controller = AdaptiveDifficulty(adaptive, group_size, adaptive_max)

    def _rng(self, index: int) -> random.Random:
        return random.Random(((self.seed % 2**64) << 64) | index)

    def draw(self) -> Draw:
        """The next draw of the stream."""
        rng = self._rng(self.index)
        k = min(bisect.bisect_right(self._cumulative, rng.random()), len(self.entries) - 1)
        entry = self.entries[k]
        level = (
            self.controller.sample(entry.name, rng) if entry.difficulty == "adaptive" else entry.difficulty
        )
        draw = Draw(entry.name, rng.randrange(TRAIN_SEED_LIMIT), level, dict(entry.kwargs), self.index)
        self.index += 1
        return draw

    def __iter__(self) -> Iterator[Draw]:
        return iter(self.draw, None)

    def observe(self, env: str, difficulty: int, accuracies: Sequence[float]) -> bool:
        """Feed one scored group back; returns True when an adaptive environment's level rose."""
        if env not in self.controller.ladders:
            return False
        return self.controller.observe(env, difficulty, accuracies)

    def retire_level(self, env: str, level: int) -> bool:
        """A level of ``env`` was too slow to generate: True when the stream no longer draws it (an adaptive
        environment's ladder stops below it), False when it cannot avoid it (a fixed level, level 0)."""
        return env in self.controller.ladders and self.controller.retire(env, level)

    def train_levels(self, env: str) -> list[int]:
        """The levels the stream draws ``env`` from now: its fixed level, or the adaptive window."""
        entry = next(e for e in self.entries if e.name == env)
        if entry.difficulty != "adaptive":
            return [entry.difficulty]
        lo, hi = self.controller.window(env)
        return list(range(lo, hi + 1))

    def eval_draws(self, per_env: int, levels: Mapping[str, Sequence[int]] | None = None) -> list[Draw]:
        """Held-out problems: ``per_env`` seeds from EVAL_SEED_BASE per environment and level, the same in
        every run. ``levels[env]`` (default: the entry's fixed level, or the adaptive h) lists the levels.
        """
        draws = []
        for e in self.entries:
            env_levels = levels[e.name] if levels is not None else [self.train_levels(e.name)[-1]]
            draws += [Draw(e.name, EVAL_SEED_BASE + j, level, dict(e.kwargs))
                      for level in env_levels for j in range(per_env)]
        return draws

    def metrics(self) -> dict[str, float]:
        """Adaptive ladders' metrics (``env/<name>/difficulty``, ``env/<name>/acc_at_h``)."""
        return self.controller.metrics()

    def state_dict(self) -> dict[str, Any]:
        """JSON-able: the stream position, the seed it belongs to and the ladders."""
        return {"seed": self.seed, "index": self.index, "adaptive": self.controller.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue the stream saved by ``state_dict`` (same run seed required)."""
        if state["seed"] != self.seed:
            raise ValueError(
                f"seed: checkpointed sampler stream has seed {state['seed']}, this run has {self.seed}"
            )
        self.index = int(state["index"])
        self.controller.load_state_dict(state["adaptive"])


def is_informative(rewards: Sequence[float]) -> bool:
    """False when all rewards of a group are equal (zero advantage for every sample), or it is empty."""
    return len(rewards) > 0 and max(rewards) > min(rewards)


def filter_groups(groups: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the groups to keep (``is_informative``), in order."""
    return [i for i, rewards in enumerate(groups) if is_informative(rewards)]
