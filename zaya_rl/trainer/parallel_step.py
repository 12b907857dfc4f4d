"""One data-parallel optimizer step under DeepSpeed ZeRO (the multi-rank twin of ``trainer.step.train_step``).

The maths is ``trainer.step``'s: the same micro-batch loss (``_micro_batch_loss``, run as the forward of
``parallel.LossHost``: router replay, chunked log-probs at the sampling temperature, DPPO + Dr-GRPO
aggregation). What differs is the plumbing:

- The leader shards the step's samples over ranks (``shard_samples``) and passes every rank the **global**
  denominators (non-empty sequences B and loss tokens of the whole step), so each rank's loss is its share
  of the full-batch loss and the sum over ranks is the full-batch loss (micro-batch and rank invariance).
- DeepSpeed averages gradients over ranks; the loss is multiplied by ``world_size`` so that the averaged
  gradient is the gradient of that sum. (Muon does not care; AdamW does.)
- ``managed_gradient_accumulation: false``: ``engine.backward`` only accumulates locally and
  ``engine.step`` reduces, steps and zeroes, so ranks may hold different numbers of micro-batches —
  except under ZeRO-3, whose forwards gather parameters collectively: every rank then runs ``num_micro``
  forwards, padding with zero-weighted repeats of its first micro-batch.
- A non-finite gradient (including one from a non-finite loss) makes DeepSpeed skip the step on all ranks
  (``check_grad_overflow``); the step is then reported as skipped, like ``train_step``'s guard.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from zaya_rl.models.router_replay import ReplayStats
from zaya_rl.trainer.batch import TrainSample, count_nonempty, make_micro_batches
from zaya_rl.trainer.step import LossSettings, StepResult


def shard_samples(samples: Sequence[TrainSample], world_size: int) -> list[list[TrainSample]]:
    """Split samples over ranks, longest first round-robin (balanced tokens); no shard is left empty
    when there are at least ``world_size`` samples."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    order = sorted(range(len(samples)), key=lambda i: -(len(samples[i].prompt_ids) + len(samples[i].token_ids)))
    shards: list[list[TrainSample]] = [[] for _ in range(world_size)]
    for k, i in enumerate(order):
        shards[k % world_size].append(samples[i])
    return shards


def global_counts(samples: Sequence[TrainSample], micro_batch_size: int, world_size: int) -> dict[str, int]:
    """Denominators of the whole step and the micro-batches per rank (the largest shard's)."""
    shards = shard_samples(samples, world_size)
    return {
        "num_sequences": count_nonempty(samples),
        "num_tokens": sum(len(s.token_ids) for s in samples),
        "num_micro": max(math.ceil(len(s) / micro_batch_size) for s in shards) if samples else 0,
    }


def distributed_train_step(setup: Any, shard: Sequence[TrainSample], *, settings: LossSettings, pad_id: int,
                           num_sequences: int, num_tokens: int, num_micro: int) -> StepResult:
    """This rank's part of one optimizer step (module docstring); every rank calls it with its shard."""
    engine = setup.engine
    real = list(shard)
    micro = [mb.to(engine.device) for mb in make_micro_batches(real, settings.micro_batch_size, pad_id)]
    if not micro:
        raise ValueError(f"rank {setup.rank}: no samples in this shard (batch smaller than the world size?)")
    engine.train()
    total, sums, weights = 0.0, {}, {}
    replay = ReplayStats()  # this rank's share (metrics other than the loss are rank 0's)
    for k in range(max(num_micro, len(micro))):
        mb = micro[k] if k < len(micro) else micro[0]
        # engine(...) runs parallel.LossHost.forward: the micro-batch loss of trainer.step
        loss, m = engine(mb, num_sequences=num_sequences, num_tokens=num_tokens, settings=settings,
                         replay_stats=replay if k < len(micro) else None)
        if k >= len(micro):  # ZeRO-3 padding forward: same collectives, no gradient
            loss = loss * 0.0
        else:
            total += float(loss.detach())
            w = float(mb.loss_mask.sum())
            for key, v in m.items():
                sums[key] = sums.get(key, 0.0) + v * w
                weights[key] = weights.get(key, 0.0) + w
        engine.backward(loss * setup.world_size, scale_wrt_gas=False)
    engine.step()
    norm = engine.get_global_grad_norm()
    grad_norm = float(norm) if norm is not None else float("nan")
    if not engine.was_step_applied():
        return StepResult({"train/nonfinite": 1.0}, skipped=True,
                          reason=f"non-finite gradient (DeepSpeed overflow check, norm {grad_norm})")
    metrics = {k: sums[k] / weights[k] for k in sums if weights[k] > 0}
    if settings.router_replay:
        metrics.update(replay.metrics())
    metrics.update({"train/loss_rank": total, "train/grad_norm": grad_norm, "train/nonfinite": 0.0,
                    "train/num_sequences": float(num_sequences), "train/num_tokens": float(num_tokens)})
    return StepResult(metrics, skipped=False)
