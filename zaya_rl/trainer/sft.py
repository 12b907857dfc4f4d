"""Supervised warm start on reference solutions (token-mean cross-entropy on completion tokens).

ZAYA1's RL starts from an SFT checkpoint; the CPU demo starts from a random tiny model, so a short SFT
phase on environment reference answers plays that role (issue: "a short labelled SFT warm start on
generated solutions may precede RL"). It reuses the RL batch layout and the chunked log-probs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from zaya_rl.trainer.batch import TrainSample, make_micro_batches
from zaya_rl.trainer.step import LossSettings, sequence_logprobs


def sft_samples(prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]]) -> list[TrainSample]:
    """Build SFT samples (prompt ids, target completion ids); behaviour log-probs are unused."""
    return [
        TrainSample(prompt_ids=list(p), token_ids=list(c), logprobs=[0.0] * len(c), advantage=0.0)
        for p, c in zip(prompts, completions, strict=True)
    ]


def sft_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    samples: Sequence[TrainSample],
    *,
    settings: LossSettings,
    pad_id: int,
) -> float:
    """One step of mean negative log-likelihood over all completion tokens; returns the loss."""
    device = next(model.parameters()).device
    micro = make_micro_batches(samples, settings.micro_batch_size, pad_id)
    total_tokens = sum(int(mb.loss_mask.sum()) for mb in micro)
    model.train()
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for mb in micro:
        mb = mb.to(device)
        logp = sequence_logprobs(model, mb, settings=settings, replay=False)
        loss = -(logp * mb.loss_mask).sum() / max(total_tokens, 1)
        loss.backward()
        total += float(loss.detach())
    torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total
