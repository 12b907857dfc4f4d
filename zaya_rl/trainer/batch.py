"""Pack trainable rollouts into right-padded micro-batches (pure: lists in, tensors out).

Layout of one rollout with P prompt and G generated tokens, ``full = prompt + generated``:

    input_ids  = full[:-1]                      # [P + G - 1]; the last token is never fed (it predicts nothing)
    targets    = full[1:]                       # position t predicts token t + 1
    loss_mask  = 1 on positions P-1 … P+G-2     # the positions that predict generated tokens
    behaviour  = logprobs of generated tokens at those positions

so ``routed_experts`` rows (one per input position of ``prompt + generated[:-1]``, research/algorithms.md
§6) align one-to-one with ``input_ids``. Replay is per sample: a sample without routes (None) gets
``replay_valid`` False on every row and routes natively, while the others in its micro-batch are replayed. Right padding keeps every real position's causal context unchanged
(pads come after), which matters for ZAYA's CCA convolution and recurrent state as well as attention.

Micro-batches are formed after sorting by length (less padding); the loss is micro-batch invariant because
the Dr-GRPO denominator is the global count of non-empty sequences of the whole step (``num_sequences``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from zaya_rl.rollout.base import NO_ROUTE


@dataclass
class TrainSample:
    """The trainer's view of one rollout (what ``Rollout`` carries, minus text and bookkeeping)."""

    prompt_ids: Sequence[int]
    token_ids: Sequence[int]
    logprobs: Sequence[float]
    advantage: float
    routed_experts: np.ndarray | None = None
    lag: int = 0


def _move(t: torch.Tensor | None, device: torch.device | str, non_blocking: bool) -> torch.Tensor | None:
    """``t`` on ``device``; with ``non_blocking`` a host tensor is pinned first (an asynchronous copy needs
    page-locked memory; from pageable memory the copy would still wait)."""
    if t is None:
        return None
    if non_blocking and t.device.type == "cpu" and torch.device(device).type == "cuda":
        t = t.pin_memory()
    return t.to(device, non_blocking=non_blocking)


@dataclass
class PackedInputs:
    """The packed forward of one micro-batch (built by ``trainer/packing.py``).

    Attributes:
        input_ids: ``[R, S]`` long, sequences end to end (``pad_id`` in separators and at row ends).
        position_ids: ``[R, S]`` long, restarting at 0 at every sequence.
        keep: ``[R, S]`` bool, real tokens (False in separators and at row ends).
        slot: ``[B * T]`` long, the flat packed slot ``r * S + j`` of every position of the micro-batch's
            ``[B, T]`` view, -1 where that view is padding.
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    keep: torch.Tensor
    slot: torch.Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> PackedInputs:
        return PackedInputs(*(_move(getattr(self, f.name), device, non_blocking) for f in dataclasses.fields(self)))


@dataclass
class Positions:
    """Index tensors of one micro-batch, found on the host (``packing.with_positions``): found from its masks
    on a GPU, each would make the host wait for the device in every micro-batch.

    Attributes:
        loss: ``[n]`` the loss positions as flat indices of ``loss_mask`` (row-major).
        rows: ``[n]`` the rows of the forward's flattened hidden states at those positions.
        replay_from: packed with routes: ``[m]`` flat per-sequence positions that hold a real token, else None.
        replay_to: their packed slots (``PackedInputs.slot`` there), else None.
    """

    loss: torch.Tensor
    rows: torch.Tensor
    replay_from: torch.Tensor | None = None
    replay_to: torch.Tensor | None = None

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Positions:
        return Positions(*(_move(getattr(self, f.name), device, non_blocking) for f in dataclasses.fields(self)))


@dataclass
class MicroBatch:
    """Tensors of one forward/backward.

    Attributes:
        input_ids: ``[B, T]`` long, right-padded with ``pad_id``.
        attention_mask: ``[B, T]`` long, 1 on real tokens.
        targets: ``[B, T]`` long, the next token of each position (pad where none).
        loss_mask: ``[B, T]`` bool, positions that predict generated tokens.
        behaviour_logp: ``[B, T]`` float32, behaviour log-probs at loss positions (0 elsewhere).
        advantages: ``[B]`` float32.
        replay_indices: ``[B, T, L, K]`` long (0 where invalid) or None.
        replay_valid: ``[B, T, L]`` bool or None.
        lags: ``[B]`` long, lag of each sample (for metrics).
        packed: the same sequences laid end to end (``trainer.packing``); when set, the forward runs on it
            and the fields above stay the per-sequence view the loss reads.
        positions: index tensors found on the host (``packing.with_positions``), or None.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    targets: torch.Tensor
    loss_mask: torch.Tensor
    behaviour_logp: torch.Tensor
    advantages: torch.Tensor
    replay_indices: torch.Tensor | None
    replay_valid: torch.Tensor | None
    lags: torch.Tensor
    packed: PackedInputs | None = None
    positions: Positions | None = None

    def to(self, device: torch.device | str, non_blocking: bool = False) -> MicroBatch:
        """A copy with every tensor (and the packed inputs, the positions) on ``device``. ``non_blocking``: host
        tensors are pinned first, so that copies to a GPU do not make the host wait for the device."""
        return MicroBatch(**{
            k: v.to(device, non_blocking) if isinstance(v, PackedInputs | Positions) else _move(v, device, non_blocking)
            for k, v in vars(self).items()
        })

    @property
    def num_sequences(self) -> int:
        """Sequences with at least one loss token."""
        return int(self.loss_mask.any(dim=1).sum())


def count_nonempty(samples: Sequence[TrainSample]) -> int:
    """The global B of Dr-GRPO aggregation: samples with at least one generated token."""
    return sum(1 for s in samples if len(s.token_ids) > 0)


def _routes(samples: Sequence[TrainSample], lengths: Sequence[int], T: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Replay tensors of the micro-batch (module docstring); None when no sample has routes. Rows past a
    sample's input length (e.g. a route recorded for an empty completion's prompt end) route no position of
    it: they stay invalid, so padding is never replayed or counted in ``replay/disagreement``."""
    routes = [s.routed_experts for s in samples]
    first = next((r for r in routes if r is not None), None)
    if first is None:
        return None
    L, K = first.shape[1:]
    out = np.full((len(samples), T, L, K), NO_ROUTE, dtype=np.int64)
    for i, r in enumerate(routes):
        if r is None:  # routes natively: its rows stay NO_ROUTE, i.e. invalid
            continue
        if r.shape[1:] != (L, K):
            raise ValueError(f"sample {i}: routed_experts shape {r.shape} does not match [*, {L}, {K}]")
        n = min(len(r), lengths[i])
        out[i, :n] = r[:n]
    idx = torch.from_numpy(out)
    valid = (idx >= 0).all(dim=-1)
    return idx.clamp_min(0), valid


def collate(samples: Sequence[TrainSample], pad_id: int) -> MicroBatch:
    """Stack ``samples`` into one right-padded ``MicroBatch``."""
    lengths = [len(s.prompt_ids) + len(s.token_ids) - 1 for s in samples]
    B, T = len(samples), max(max(lengths), 1)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    targets = torch.full((B, T), pad_id, dtype=torch.long)
    attn = torch.zeros((B, T), dtype=torch.long)
    loss_mask = torch.zeros((B, T), dtype=torch.bool)
    behaviour = torch.zeros((B, T), dtype=torch.float32)
    for i, s in enumerate(samples):
        if len(s.logprobs) != len(s.token_ids):
            raise ValueError(f"sample {i}: {len(s.logprobs)} logprobs for {len(s.token_ids)} tokens")
        if not s.prompt_ids:
            raise ValueError(f"sample {i}: empty prompt")
        full = torch.tensor(list(s.prompt_ids) + list(s.token_ids), dtype=torch.long)
        n, P, G = lengths[i], len(s.prompt_ids), len(s.token_ids)
        input_ids[i, :n], targets[i, :n], attn[i, :n] = full[:-1], full[1:], 1
        if G:
            loss_mask[i, P - 1 : P - 1 + G] = True
            behaviour[i, P - 1 : P - 1 + G] = torch.tensor(list(s.logprobs), dtype=torch.float32)
    routes = _routes(samples, lengths, T)
    return MicroBatch(
        input_ids=input_ids,
        attention_mask=attn,
        targets=targets,
        loss_mask=loss_mask,
        behaviour_logp=behaviour,
        advantages=torch.tensor([s.advantage for s in samples], dtype=torch.float32),
        replay_indices=None if routes is None else routes[0],
        replay_valid=None if routes is None else routes[1],
        lags=torch.tensor([s.lag for s in samples], dtype=torch.long),
    )


def make_micro_batches(samples: Sequence[TrainSample], micro_batch_size: int, pad_id: int) -> list[MicroBatch]:
    """Sort by length (less padding) and split into micro-batches of at most ``micro_batch_size``."""
    order = sorted(range(len(samples)), key=lambda i: len(samples[i].prompt_ids) + len(samples[i].token_ids))
    chunks = [order[i : i + micro_batch_size] for i in range(0, len(order), micro_batch_size)]
    return [collate([samples[i] for i in c], pad_id) for c in chunks]
