"""Row operations on a transformers ``DynamicCache`` for continuous batching (rows join and leave).

The torch engine keeps one cache for all running sequences, **left-padded**: row i's tokens occupy the
last columns of the attention-cache sequence axis and a 2-D ``[B, S]`` mask marks padding with 0. New
sequences are prefilled as their own left-padded batch and then merged:

- attention layers (``keys``/``values`` ``[B, H, S, D]``): the shorter side is left-padded with zeros to
  the common length, then rows are concatenated. Padded columns are masked, and position ids are passed
  per row, so a row never sees where its cache columns sit.
- ZAYA's CCA layers additionally hold per-row fixed-size states (``conv_states`` ``[B, C, k]``: the last
  q/k projections for the causal conv; ``recurrent_states`` ``[B, D]``: the delayed value projection of
  the last token). They have no sequence axis and are concatenated as they are.

Why this is exact for ZAYA: in a left-padded prefill the padded inputs are zeroed before the CCA
projections (``conv_mask``), which equals the zero left-padding an unbatched prefill applies before its
conv, and the delayed-value state of the first real token is ``v_proj_delayed(0)`` either way; the
attention masks the pad columns. ``tests/rollout/test_torch_engine.py`` checks batched-with-padding
against one-at-a-time generation.

Only the layer classes listed in ``_SUPPORTED`` are handled; sliding-window layers (which drop old columns
and count absolute positions) raise, naming the class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import DynamicCache

#: Layer classes whose state is fully described by keys/values (+ conv/recurrent state dicts).
_SUPPORTED = frozenset({"DynamicLayer", "LinearAttentionLayer", "LinearAttentionAndFullAttentionLayer"})
_SEQ_STATES = ("keys", "values")
_ROW_STATES = ("conv_states", "recurrent_states")


def _check(cache: DynamicCache) -> None:
    for layer in cache.layers:
        if type(layer).__name__ not in _SUPPORTED:
            raise NotImplementedError(
                f"continuous batching cannot merge cache layers of type {type(layer).__name__} "
                f"(supported: {sorted(_SUPPORTED)})"
            )


def _seq_len(cache: DynamicCache) -> int:
    lengths = {layer.keys.shape[-2] for layer in cache.layers if _has(layer, "keys")}
    if len(lengths) > 1:
        raise RuntimeError(f"cache layers disagree on the sequence length: {sorted(lengths)}")
    return lengths.pop() if lengths else 0


def _has(layer: object, name: str) -> bool:
    value = getattr(layer, name, None)
    return isinstance(value, torch.Tensor) and value.numel() > 0


def _row_tensors(layer: object) -> list[tuple[dict, int]]:
    """(state dict, index) pairs of the initialised per-row states of a linear-attention layer."""
    out = []
    for name in _ROW_STATES:
        states = getattr(layer, name, None) or {}
        out += [(states, i) for i, t in states.items() if isinstance(t, torch.Tensor)]
    return out


def merge(a: DynamicCache, b: DynamicCache) -> DynamicCache:
    """Append the rows of ``b`` to ``a`` (in place on ``a``), left-padding the attention axis to a common length.

    The caller pads its 2-D attention masks the same way: ``max(S_a, S_b) - S`` zero columns on the left.
    """
    _check(a)
    _check(b)
    target = max(_seq_len(a), _seq_len(b))
    for la, lb in zip(a.layers, b.layers, strict=True):
        for name in _SEQ_STATES:
            if _has(la, name) and _has(lb, name):
                ta, tb = getattr(la, name), getattr(lb, name)
                ta = F.pad(ta, (0, 0, target - ta.shape[-2], 0))
                tb = F.pad(tb, (0, 0, target - tb.shape[-2], 0))
                setattr(la, name, torch.cat([ta, tb], dim=0))
        for (sa, i), (sb, j) in zip(_row_tensors(la), _row_tensors(lb), strict=True):
            sa[i] = torch.cat([sa[i], sb[j]], dim=0)
    return a


def select_rows(cache: DynamicCache, rows: torch.Tensor) -> None:
    """Keep only ``rows`` (long indices), in that order."""
    _check(cache)
    for layer in cache.layers:
        for name in _SEQ_STATES:
            if _has(layer, name):
                setattr(
                    layer, name, getattr(layer, name).index_select(0, rows.to(getattr(layer, name).device))
                )
        for states, i in _row_tensors(layer):
            states[i] = states[i].index_select(0, rows.to(states[i].device))


def drop_left(cache: DynamicCache, columns: int) -> None:
    """Drop the first ``columns`` attention-cache columns (the caller checked they are padding in every row)."""
    if columns <= 0:
        return
    _check(cache)
    for layer in cache.layers:
        for name in _SEQ_STATES:
            if _has(layer, name):
                setattr(layer, name, getattr(layer, name)[..., columns:, :])
