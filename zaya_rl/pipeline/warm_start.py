"""Optional SFT warm start (``sft.enabled``) on reference solutions of training-stream problems.

Problems and their reference responses come from the scorer pool (environment code runs only there),
are tokenised by the trainer with the policy's chat template, and are cycled through in shuffled order.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict
from typing import Any

from zaya_rl.config import RunConfig

#: Distinct SFT problems generated (then cycled); enough variety for a short warm start without
#: spending minutes generating problems.
MAX_SFT_PROBLEMS = 4096


#: Seed offset of the SFT problem stream: independent of the RL stream (whose seed is the run seed).
SFT_STREAM_OFFSET = 7_919


async def run_sft(cfg: RunConfig, actors: Any, logger: Any) -> dict[str, Any]:
    """Run ``sft.steps`` supervised steps; returns the first and last loss and the time taken."""
    from zaya_rl.pipeline.setup import make_sampler

    t0 = time.perf_counter()
    n = min(cfg.sft.steps * cfg.sft.batch_size, MAX_SFT_PROBLEMS)
    sampler = make_sampler(cfg, seed_offset=SFT_STREAM_OFFSET)
    draws = [asdict(sampler.draw()) for _ in range(n)]
    scorer = actors.scorers[0]
    problems = await scorer.make_problems.remote(draws, with_reference=True)
    problems = [p for p in problems if p is not None and p.get("reference_response") is not None]
    if not problems:
        raise RuntimeError("sft.enabled but no environment produced reference responses")
    prompts, completions = await actors.trainer.encode_sft.remote(
        [p["messages"] for p in problems], [p["reference_response"] for p in problems]
    )
    rng = random.Random(cfg.seed)
    order: list[int] = []
    losses = []
    for step in range(cfg.sft.steps):
        if len(order) < cfg.sft.batch_size:
            order = list(range(len(prompts)))
            rng.shuffle(order)
        idx, order = order[: cfg.sft.batch_size], order[cfg.sft.batch_size :]
        loss = await actors.trainer.sft_step.remote([prompts[i] for i in idx], [completions[i] for i in idx])
        losses.append(loss)
        logger.log(step, {"sft/loss": loss}, advance=0)
    await actors.trainer.end_sft.remote()
    return {"steps": cfg.sft.steps, "problems": len(problems), "loss_first": losses[0] if losses else None,
            "loss_last": losses[-1] if losses else None, "seconds": round(time.perf_counter() - t0, 2)}
