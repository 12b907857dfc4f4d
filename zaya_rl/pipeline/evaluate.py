"""Held-out evaluation through the same rollout workers and scorers as training.

For every environment of the mixture: ``eval.num_problems`` problems whose seeds are disjoint from the
training stream (``MixtureSampler.eval_draws``), one completion each at ``eval.temperature`` (greedy by
default), scored by the environment's verifier. Accuracy per environment and their mean (macro average).
A verifier failure counts as incorrect and is reported in ``errors``. Evaluation touches neither the sample
accounting nor the adaptive difficulty.
"""

from __future__ import annotations

import asyncio
from typing import Any

from zaya_rl.config import RunConfig
from zaya_rl.rollout.base import SamplingParams


def fixed_eval_level(cfg: RunConfig) -> Any:
    """Evaluation level per environment: its fixed training level, or its lowest level when adaptive.

    Before and after must see the same problems, so an adaptive environment is not evaluated at its
    current (moving) level h.
    """
    from environments.registry import get_spec

    levels = {e.name: (e.difficulty if e.difficulty != "adaptive" else get_spec(e.name).min_difficulty)
              for e in cfg.data.environments}
    return levels.__getitem__


async def evaluate(orch: Any, cfg: RunConfig, sampler: Any) -> dict[str, float]:
    """Accuracy per environment and overall (key ``accuracy``) on the held-out problems."""
    params = SamplingParams(max_new_tokens=cfg.rollout.sampling.max_new_tokens, temperature=cfg.eval.temperature,
                            seed=cfg.seed + 1)
    draws = sampler.eval_draws(cfg.eval.num_problems, difficulty=fixed_eval_level(cfg))
    groups = await asyncio.gather(*(orch.run_group(d, kind="eval", n=1, params=params) for d in draws))
    per_env: dict[str, list[float]] = {e.name: [] for e in cfg.data.environments}
    errors = 0
    for g in groups:
        if g is None:
            continue
        for r in g.rollouts:
            per_env[g.spec.env].append(r.accuracy if r.status == "ok" else 0.0)
            errors += r.status != "ok"
    out = {env: (sum(v) / len(v) if v else 0.0) for env, v in per_env.items()}
    out["accuracy"] = sum(out[e] for e in per_env) / max(len(per_env), 1)
    out["errors"] = float(errors)
    return out
