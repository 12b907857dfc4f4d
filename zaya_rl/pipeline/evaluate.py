"""Held-out evaluation through the same rollout workers and scorers as training.

For every environment of the mixture and every level ``eval_levels`` picks (``eval.difficulty``):
``eval.num_problems`` problems whose seeds are disjoint from the training stream
(``MixtureSampler.eval_draws``), one completion each at ``eval.temperature`` (greedy by default), scored by
the environment's verifier. Reported: accuracy per environment and level (``<env>/d<level>``), per
environment (over its problems) and their mean (``accuracy``, a macro average); ``errors`` counts verifier
failures, which count as incorrect. Evaluation touches neither the sample accounting nor the adaptive
difficulty.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from zaya_rl.config import RunConfig
from zaya_rl.rollout.base import SamplingParams


def eval_levels(cfg: RunConfig, sampler: Any) -> dict[str, list[int]]:
    """The levels evaluated per environment (``eval.difficulty``); a ValueError names a level out of range.

    None: the fixed training level, or an adaptive environment's lowest (so before and after see the same
    problems); an int or a list: those levels; ``train_levels``: what the stream draws from now
    (``MixtureSampler.train_levels``: after RL, an adaptive environment's window below the h it reached).
    """
    from environments.registry import get_spec

    wanted = cfg.eval.difficulty
    out = {}
    for e in cfg.data.environments:
        spec = get_spec(e.name)
        if wanted == "train_levels":
            levels = sampler.train_levels(e.name)
        elif wanted is None:
            levels = [e.difficulty if e.difficulty != "adaptive" else spec.min_difficulty]
        else:
            levels = [wanted] if isinstance(wanted, int) else list(wanted)
            lo, hi = spec.min_difficulty, spec.max_difficulty
            bad = [d for d in levels if d < lo or (hi is not None and d > hi)]
            if bad:
                raise ValueError(f"eval.difficulty: level {bad[0]} is outside {e.name}'s range {spec.difficulty_range}")
        out[e.name] = levels
    return out


async def evaluate(orch: Any, cfg: RunConfig, sampler: Any) -> dict[str, float]:
    """Accuracy per environment and level, per environment, and overall (key ``accuracy``)."""
    params = SamplingParams(max_new_tokens=cfg.rollout.sampling.max_new_tokens, temperature=cfg.eval.temperature,
                            seed=cfg.seed + 1)
    levels = eval_levels(cfg, sampler)
    draws = sampler.eval_draws(cfg.eval.num_problems, levels)
    groups = await asyncio.gather(*(orch.run_group(d, kind="eval", n=1, params=params) for d in draws))
    per_level: dict[tuple[str, int], list[float]] = defaultdict(list)
    errors = 0
    for g in groups:
        if g is None:  # the problem could not be generated (logged; counted by the error budget)
            continue
        for r in g.rollouts:
            per_level[g.spec.env, g.spec.difficulty].append(r.accuracy if r.status == "ok" else 0.0)
            errors += r.status != "ok"
    out: dict[str, float] = {}
    for env, env_levels in levels.items():
        answered = [a for d in env_levels for a in per_level[env, d]]
        out[env] = _mean(answered)
        out.update({f"{env}/d{d}": _mean(per_level[env, d]) for d in env_levels if per_level[env, d]})
    out["accuracy"] = sum(out[env] for env in levels) / max(len(levels), 1)
    out["errors"] = float(errors)
    return out


def level_summary(ev: dict[str, float], env: str) -> str:
    """``(d0)`` for one level, ``(d0 0.900, d1 0.600)`` for several: what the run prints after the env."""
    prefix = f"{env}/d"
    levels = [(k[len(prefix):], v) for k, v in ev.items() if k.startswith(prefix)]
    if len(levels) == 1:
        return f"(d{levels[0][0]})"
    return "(" + ", ".join(f"d{d} {v:.3f}" for d, v in levels) + ")"


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0
