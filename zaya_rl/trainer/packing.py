"""Sequence packing: a micro-batch's sequences laid end to end, so the forward spends no compute on padding.

Layout (``make_packed_micro_batches``). Each sample's input ids (``prompt + generated[:-1]``, trainer/batch.py)
go into rows of at most ``capacity`` slots, best-fit decreasing (a longer sequence gets a row of its own); the
rows, fullest first, are grouped into micro-batches of at most ``token_budget`` slots (rows × width). Position
ids restart at 0 for every sequence, and transformers turns that into a block-diagonal causal mask
(``masking_utils.find_packed_sequence_indices``: a position that is not its predecessor + 1 starts a new
sequence), so no token attends across sequences. The slots after a sequence (separators, the row's end)
continue its positions: they are a causal suffix of it, like right padding.

Which capacity (``choose_capacity``). The masked attention kernels compute a row's whole width × width matrix,
masked blocks included, so a long row of many short sequences trades padding for attention work. The planner
estimates both (``layout_cost``, from the model's FLOP constants, ``trainer/flops.py``) for capacities around
the longest sequence and, under ``packing: auto``, for the right-padded layout, and takes the cheapest.

ZAYA. Its CCA attention mixes neighbouring tokens outside attention: a causal conv1d over q/k (width
``(cca_time0 - 1) + (cca_time1 - 1)`` = 2 back) and a value half taken from the previous token
(``ZayaCCAProjection``). Packed back to back, a sequence would read the previous one's last tokens. So
``s = max(conv width, 1)`` separator slots go between sequences, and the model's own conv mask (the 2-D mask
it multiplies into the CCA input) zeroes them: the next sequence's conv then reads zeros, exactly the zero
left-padding a sequence that starts a forward gets, and its delayed value reads ``v_proj_delayed(0)``, exactly
the recurrent state a fresh forward starts from. This is exact only without q/k projection biases
(``attention_bias=False``, as in ZAYA1-8B): with them a zeroed input projects to the bias, not to the zero the
convolution pads with, and packing is refused.

Which models: ``PACKABLE`` model types, whose packed loss and gradients are tested equal to the padded ones
(``tests/trainer/test_packing.py``), with a mask-based attention (``sdpa``/``eager``: flash-attention would need
cu_seqlens, which these models do not pass down). Others are refused (``trainer.packing: always``) or trained
padded (``auto``), with the reason.

The loss side does not change: the micro-batch keeps its per-sequence ``[B, T]`` targets, loss mask, behaviour
log-probs and routes (``collate``); only the forward runs on the packed ``[R, S]`` tensors, and ``slot`` maps
every real position of the ``[B, T]`` view to its packed slot. Dr-GRPO's global denominators come from the
samples, so they are the same in both layouts.

Test: ``python -m pytest tests/trainer/test_packing.py -q``; layouts of RL length distributions:
``python benchmarks/padding_layouts.py``.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from zaya_rl.trainer.batch import (
    MicroBatch,
    PackedInputs,
    Positions,
    TrainSample,
    collate,
    make_micro_batches,
)
from zaya_rl.trainer.flops import flop_counts

#: ``model.config.model_type`` values whose packed forward is tested equal to the padded one.
PACKABLE = ("llama", "qwen3_moe", "zaya")
#: Attention implementations that take transformers' block-diagonal packed mask.
MASKED_ATTENTION = ("sdpa", "eager")


@dataclass
class ForwardView:
    """What the model's forward takes for one micro-batch, in either layout.

    Attributes:
        inputs: keyword arguments of the base model's forward.
        replay_indices: ``[R, S, L, K]`` (packed) or ``[B, T, L, K]`` routes for ``replay_routing``, or None.
        replay_valid: their validity, or None.
        loss_rows: ``[n]`` rows of ``hidden.reshape(-1, H)`` at the micro-batch's loss positions, in the
            row-major order of ``loss_mask`` (so they line up with ``targets[loss_mask]``).
    """

    inputs: dict[str, Any]
    replay_indices: Tensor | None
    replay_valid: Tensor | None
    loss_rows: Tensor


def packing_separators(model: torch.nn.Module) -> tuple[int | None, str]:
    """Separator slots between packed sequences for ``model`` (0 for pure attention), or None and why it
    cannot be packed."""
    cfg = model.config
    if cfg.model_type not in PACKABLE:
        return None, f"packing is verified for model types {list(PACKABLE)} only, not {cfg.model_type!r}"
    attn = getattr(cfg, "_attn_implementation", None) or "eager"
    if attn not in MASKED_ATTENTION:
        return None, f"packing needs a mask-based attention implementation {list(MASKED_ATTENTION)}, not {attn!r}"
    if cfg.model_type != "zaya":
        return 0, ""
    if cfg.attention_bias:
        return None, (
            "ZAYA with attention_bias=True: a zeroed separator projects to the q/k bias, not to the zeros its CCA "
            "convolution pads with, so packed sequences would not equal unpacked ones"
        )
    return max((cfg.cca_time0 - 1) + (cfg.cca_time1 - 1), 1), ""


def pack_rows(lengths: Sequence[int], capacity: int, separators: int) -> list[list[int]]:
    """Best-fit decreasing: indices of ``lengths`` per row, each row holding Σ n + separators·(k − 1) <= capacity
    (a longer sequence gets a row of its own). O(n log n): the rows' free space is kept sorted."""
    rows: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (slots left for one more sequence after its separators, row), ascending
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        k = bisect.bisect_left(free, (lengths[i], -1))  # the fullest row that still takes it
        if k < len(free):
            space, r = free.pop(k)
            rows[r].append(i)
            bisect.insort(free, (space - lengths[i] - separators, r))
        else:
            rows.append([i])
            bisect.insort(free, (capacity - lengths[i] - separators, len(rows) - 1))
    return rows


def _row_fill(row: Sequence[int], lengths: Sequence[int], separators: int) -> int:
    return sum(lengths[i] for i in row) + separators * (len(row) - 1)


def _packed_inputs(mb: MicroBatch, rows: list[list[int]], lengths: list[int], separators: int, pad_id: int) -> PackedInputs:
    """The ``[R, S]`` packed tensors of ``mb`` whose samples ``b`` sit in ``rows`` (indices into ``mb``)."""
    width = max(_row_fill(row, lengths, separators) for row in rows)
    t = mb.input_ids.shape[1]
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    keep = torch.zeros((len(rows), width), dtype=torch.bool)
    slot = torch.full((mb.input_ids.numel(),), -1, dtype=torch.long)
    for r, row in enumerate(rows):
        start = 0
        for j, b in enumerate(row):
            n = lengths[b]
            # this sequence owns its slots up to the next one's start: its separators / the row end follow it
            end = start + n + separators if j + 1 < len(row) else width
            input_ids[r, start : start + n] = mb.input_ids[b, :n]
            position_ids[r, start:end] = torch.arange(end - start)
            keep[r, start : start + n] = True
            slot[b * t : b * t + n] = r * width + start + torch.arange(n)
            start = end
    return PackedInputs(input_ids, position_ids, keep, slot)


def _grouped_rows(lengths: Sequence[int], capacity: int, separators: int, budget: int) -> list[list[list[int]]]:
    """``pack_rows``, fullest rows first, grouped into micro-batches of at most ``budget`` slots (rows × the
    group's width, which is its first row's fill; a wider row is a group of its own)."""
    rows = sorted(pack_rows(lengths, capacity, separators), key=lambda row: -_row_fill(row, lengths, separators))
    groups: list[list[list[int]]] = []
    for row in rows:
        width = _row_fill(groups[-1][0], lengths, separators) if groups else 0
        if groups and (len(groups[-1]) + 1) * width <= budget:
            groups[-1].append(row)
        else:
            groups.append([row])
    return groups


def layout_cost(shapes: Sequence[tuple[int, int]], attention_weight: float) -> float:
    """Relative compute of micro-batches of ``(rows, width)``: Σ rows·width·(1 + α·width).

    Per token slot the layers cost 6·N_body FLOPs; per row, attention under a materialised mask (padding or
    packing: sdpa's masked kernels compute the whole width × width matrix, masked or not) costs
    12·n_layers·d_attn·width². Divided by 6·N_body: α = 2·n_layers·d_attn / N_body (``attention_weight``).
    """
    return sum(r * w * (1.0 + attention_weight * w) for r, w in shapes)


def attention_weight(model: torch.nn.Module) -> float:
    """α of ``layout_cost`` for ``model`` (``trainer/flops.py``)."""
    counts = flop_counts(model)
    return 2.0 * counts.n_layers * counts.d_attn / max(counts.n_body, 1.0)


def choose_capacity(
    lengths: Sequence[int], *, micro_batch_size: int, budget: int, separators: int, attention_weight: float,
    allow_padded: bool,
) -> int | None:
    """The row capacity whose packed layout costs least (``layout_cost``), or None when the right-padded layout
    of ``micro_batch_size`` sequences costs less still (only if ``allow_padded``).

    Why not always the longest sequence: a row holding several sequences pays attention over its whole width
    (the cross-sequence blocks are masked, not skipped), so packing many short sequences into long rows can cost
    more than the padding it removes; candidates are the longest sequence × 2^k, k = -3 … 4, up to ``budget``.
    """
    longest = max(max(lengths), 1)
    candidates = sorted({min(max(1, int(longest * 2.0**k)), budget) for k in range(-3, 5)})
    best, best_cost = None, float("inf")
    if allow_padded:
        ordered = sorted(lengths)
        chunks = [ordered[i : i + micro_batch_size] for i in range(0, len(ordered), micro_batch_size)]
        best_cost = layout_cost([(len(c), max(c[-1], 1)) for c in chunks], attention_weight)
    for capacity in candidates:
        groups = _grouped_rows(lengths, capacity, separators, budget)
        shapes = [(len(g), max(_row_fill(g[0], lengths, separators), 1)) for g in groups]
        cost = layout_cost(shapes, attention_weight)
        if cost < best_cost:
            best, best_cost = capacity, cost
    return best


def make_packed_micro_batches(
    samples: Sequence[TrainSample],
    *,
    token_budget: int | None,
    micro_batch_size: int,
    separators: int,
    pad_id: int,
    capacity: int | None = None,
) -> list[MicroBatch]:
    """Pack ``samples`` into rows (module docstring) and group the rows into micro-batches.

    Args:
        samples: the step's samples.
        token_budget: most slots (rows × width) per micro-batch; None: ``micro_batch_size`` × the longest
            sequence, the right-padded layout's largest micro-batch (same peak memory, fewer forwards).
        micro_batch_size: see ``token_budget``.
        separators: slots between two sequences of a row (``packing_separators``).
        pad_id: the id in separator and row-end slots.
        capacity: slots per row (``choose_capacity``); None: the longest sequence.
    """
    if not samples:
        return []
    lengths = [len(s.prompt_ids) + len(s.token_ids) - 1 for s in samples]
    longest = max(max(lengths), 1)
    budget = token_budget if token_budget is not None else micro_batch_size * longest
    out = []
    for group in _grouped_rows(lengths, capacity or longest, separators, budget):
        order = [i for row in group for i in row]
        local = {i: b for b, i in enumerate(order)}
        mb = collate([samples[i] for i in order], pad_id)
        rows = [[local[i] for i in row] for row in group]
        packed = _packed_inputs(mb, rows, [lengths[i] for i in order], separators, pad_id)
        out.append(dataclasses.replace(mb, packed=packed))
    return out


def plan_micro_batches(
    model: torch.nn.Module,
    samples: Sequence[TrainSample],
    *,
    packing: str,
    micro_batch_size: int,
    micro_batch_tokens: int | None,
    pad_id: int,
) -> list[MicroBatch]:
    """The step's micro-batches: packed with the cheapest row capacity (``choose_capacity``), or right-padded
    (``packing="never"``; or ``"auto"`` when the model cannot be packed or padding costs less).

    Raises:
        ValueError: ``packing="always"`` for a model that cannot be packed (the reason is in the message).
    """
    if packing not in ("auto", "always", "never"):
        raise ValueError(f"trainer.packing: expected auto, always or never, got {packing!r}")
    if packing != "never" and samples:
        separators, why = packing_separators(model)
        if separators is None and packing == "always":
            raise ValueError(f"trainer.packing=always: {why}")
        if separators is not None:
            lengths = [len(s.prompt_ids) + len(s.token_ids) - 1 for s in samples]
            budget = micro_batch_tokens or micro_batch_size * max(max(lengths), 1)
            capacity = choose_capacity(
                lengths, micro_batch_size=micro_batch_size, budget=budget, separators=separators,
                attention_weight=attention_weight(model), allow_padded=packing == "auto",
            )
            if capacity is not None:
                return make_packed_micro_batches(
                    samples, token_budget=budget, micro_batch_size=micro_batch_size, separators=separators,
                    pad_id=pad_id, capacity=capacity,
                )
    return make_micro_batches(samples, micro_batch_size, pad_id)


def _zaya_masks(model: torch.nn.Module, packed: PackedInputs) -> dict[str, Tensor | None]:
    """ZAYA's mask mapping for a packed forward: block-diagonal causal masks from the position ids (no 2-D
    mask, so transformers detects the packing) and the separator-zeroing 2-D mask for the CCA input."""
    from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

    cfg = model.config
    dtype = model.get_input_embeddings().weight.dtype
    # only the shape [R, S], dtype and device of the embeddings are read
    embeds = torch.empty((*packed.input_ids.shape, 0), dtype=dtype, device=packed.input_ids.device)
    makers = {"hybrid": create_causal_mask, "hybrid_sliding": create_sliding_window_causal_mask}
    masks: dict[str, Tensor | None] = {
        kind: makers[kind](config=cfg, inputs_embeds=embeds, attention_mask=None, past_key_values=None,
                           position_ids=packed.position_ids)
        for kind in set(cfg.layer_types)
    }
    masks["conv"] = packed.keep
    return masks


def with_positions(mb: MicroBatch) -> MicroBatch:
    """``mb`` with its ``Positions`` found where ``mb`` is: call it on the host, before the micro-batch moves
    to the GPU (boolean indexing there waits for the device)."""
    loss = mb.loss_mask.reshape(-1).nonzero().squeeze(1)
    if mb.packed is None:
        return dataclasses.replace(mb, positions=Positions(loss, loss))
    slot = mb.packed.slot
    src = dst = None
    if mb.replay_indices is not None:  # real positions of the per-sequence view, and their packed slots
        src = (slot >= 0).nonzero().squeeze(1)
        dst = slot[src]
    return dataclasses.replace(mb, positions=Positions(loss, slot[loss], src, dst))


def forward_view(model: torch.nn.Module, mb: MicroBatch) -> ForwardView:
    """The forward inputs, replay routes and loss rows of ``mb`` (packed if ``mb.packed`` is set); its
    ``positions`` must be found first (``with_positions``; ``step.sequence_logprobs`` does it)."""
    pos = mb.positions
    if pos is None:
        raise ValueError("forward_view: mb.positions is not set (call packing.with_positions on the host first)")
    if mb.packed is None:
        return ForwardView(
            {"input_ids": mb.input_ids, "attention_mask": mb.attention_mask, "use_cache": False},
            mb.replay_indices,
            mb.replay_valid,
            pos.rows,
        )
    p = mb.packed
    # no cache: transformers detects packed position ids only without a 2-D mask and without a cache
    inputs: dict[str, Any] = {"input_ids": p.input_ids, "position_ids": p.position_ids, "use_cache": False}
    if model.config.model_type == "zaya":
        inputs["attention_mask"] = _zaya_masks(model, p)
    indices = valid = None
    if mb.replay_indices is not None:  # the per-sequence routes, moved to their packed slots
        rows, width = p.input_ids.shape
        flat_idx = mb.replay_indices.reshape(p.slot.shape[0], *mb.replay_indices.shape[2:])
        flat_valid = mb.replay_valid.reshape(p.slot.shape[0], -1)
        indices = flat_idx.new_zeros((rows * width, *flat_idx.shape[1:]))
        valid = flat_valid.new_zeros((rows * width, flat_valid.shape[1]))
        indices[pos.replay_to] = flat_idx[pos.replay_from]
        valid[pos.replay_to] = flat_valid[pos.replay_from]
        indices, valid = indices.view(rows, width, *flat_idx.shape[1:]), valid.view(rows, width, -1)
    return ForwardView(inputs, indices, valid, pos.rows)


def padding_fraction(micro_batches: Sequence[MicroBatch]) -> float:
    """Fraction of the forward's token slots that hold no real token (padding, separators), over the step."""
    total = real = 0
    for mb in micro_batches:
        if mb.packed is None:
            total, real = total + mb.attention_mask.numel(), real + int(mb.attention_mask.sum())
        else:
            total, real = total + mb.packed.keep.numel(), real + int(mb.packed.keep.sum())
    return 1.0 - real / total if total else 0.0


def padded_fraction(samples: Sequence[TrainSample], micro_batch_size: int) -> float:
    """``padding_fraction`` the right-padded layout (``make_micro_batches``) would have for ``samples``."""
    lengths = sorted(len(s.prompt_ids) + len(s.token_ids) - 1 for s in samples)
    chunks = [lengths[i : i + micro_batch_size] for i in range(0, len(lengths), micro_batch_size)]
    total = sum(len(c) * max(c[-1], 1) for c in chunks)
    return 1.0 - sum(lengths) / total if total else 0.0
