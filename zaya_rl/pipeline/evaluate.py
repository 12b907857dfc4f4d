"""Held-out evaluation through the same rollout workers and scorers as training.

For every environment of the mixture: ``eval.num_problems`` problems whose seeds are disjoint from the
training stream (``MixtureSampler.eval_problems``), one completion each at ``eval.temperature`` (greedy by
default), scored by the environment's verifier. Accuracy per environment and their mean (macro average).
A verifier failure counts as incorrect and is reported in ``errors``. Evaluation touches neither the sample
accounting nor the adaptive difficulty.
"""

from __future__ import annotations

import asyncio
from typing import Any

from zaya_rl.config import RunConfig
from zaya_rl.rollout.base import SamplingParams


async def evaluate(orch: Any, cfg: RunConfig, sampler: Any) -> dict[str, float]:
    """Accuracy per environment and overall (key ``accuracy``) on the held-out problems."""
    params = SamplingParams(max_new_tokens=cfg.rollout.sampling.max_new_tokens, temperature=cfg.eval.temperature,
                            seed=cfg.seed + 1)
    jobs = [(e.name, seed, d) for e in cfg.data.environments
            for seed, d in sampler.eval_problems(e.name, cfg.eval.num_problems)]
    groups = await asyncio.gather(*(orch.run_group(env, seed, d, kind="eval", n=1, params=params)
                                     for env, seed, d in jobs))
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
