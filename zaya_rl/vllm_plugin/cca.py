"""ZAYA's CCA projection state as pure tensor functions (no vLLM import; tested against transformers on CPU).

CCA (Compressed Convolutional Attention, arXiv 2510.04476; transformers ``ZayaCCAProjection``) mixes the
query/key pre-activations of each token with the previous ones by two causal convolutions over time (a
depthwise one of kernel ``k0 = cca_time0``, then a per-head grouped one of kernel ``k1 = cca_time1``), and
takes half of the value channels from the *previous* token. A sequence therefore carries two states
between forwards:

- ``conv``: the last ``K = (k0 - 1) + (k1 - 1)`` rows of the conv *input* (``[K, C]``, C = q + k channels);
  zeros before the first token, exactly as transformers' left padding of K zero columns.
- ``v``: the value projection of the sequence's last token (``[Dv]``; only its delayed channels are read);
  before the first token it is the projection of a zero input, i.e. the value bias (zero without bias).

Two entry points, both batched over many sequences at once:

- ``cca_varlen``: prefill / chunked prefill. Tokens of N sequences are packed ``[T, C]`` with
  ``query_start_loc`` ``[N + 1]``; each sequence starts from its given state. All sequences go through one
  pair of ``conv1d`` calls: each one is laid out behind its own K state rows, so no window crosses into the
  previous sequence (the receptive field of an output is exactly K + 1 rows).
- ``cca_decode``: one token per sequence, ``[N, C]`` with states ``[N, K, C]`` / ``[N, Dv]``; fixed shapes
  for a given N, no host synchronisation (safe inside a CUDA graph).

Both return the conv output, the previous-token value for every token, and the sequences' new states.
The 2-D/3-D layouts follow ``torch.nn.functional.conv1d`` on ``[batch, channels, time]``, as transformers does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ConvWeights:
    """The two CCA convolutions of one layer (the shard a tensor-parallel rank holds).

    Attributes:
        depthwise: ``[C, 1, k0]`` weight and ``[C]`` bias (groups = C).
        grouped: ``[C, C / G, k1]`` weight and ``[C]`` bias (groups = G, one group per attention head).
        groups: G, the number of heads (q + k) in this shard.
    """

    depthwise_weight: torch.Tensor
    depthwise_bias: torch.Tensor
    grouped_weight: torch.Tensor
    grouped_bias: torch.Tensor
    groups: int

    @property
    def state_len(self) -> int:
        """K: input rows of history one output needs besides its own token."""
        return self.depthwise_weight.shape[-1] - 1 + self.grouped_weight.shape[-1] - 1


def _conv(x: torch.Tensor, w: ConvWeights) -> torch.Tensor:
    """Both convolutions, valid padding: ``[B, C, L] -> [B, C, L - K]`` (same ops as transformers)."""
    y = F.conv1d(x, w.depthwise_weight, w.depthwise_bias, groups=x.shape[1])
    return F.conv1d(y, w.grouped_weight, w.grouped_bias, groups=w.groups)


def cca_decode(
    qk: torch.Tensor, v: torch.Tensor, conv_state: torch.Tensor, v_state: torch.Tensor, w: ConvWeights
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One new token for each of N sequences.

    Args:
        qk: ``[N, C]`` conv input (q then k pre-activations) of the new tokens.
        v: ``[N, Dv]`` value projection of the new tokens.
        conv_state: ``[N, K, C]`` the sequences' conv states.
        v_state: ``[N, Dv]`` the value projection of each sequence's previous token.
        w: the layer's convolutions.

    Returns:
        ``(conv_out [N, C], v_prev [N, Dv], new conv_state [N, K, C], new v_state [N, Dv])``.
    """
    window = torch.cat([conv_state.to(qk.dtype), qk.unsqueeze(1)], dim=1)  # [N, K + 1, C]
    out = _conv(window.transpose(1, 2), w).squeeze(-1)
    return out, v_state.to(v.dtype), window[:, 1:], v


def cca_varlen(
    qk: torch.Tensor,
    v: torch.Tensor,
    query_start_loc: torch.Tensor,
    conv_init: torch.Tensor,
    v_init: torch.Tensor,
    w: ConvWeights,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """N sequences of any lengths >= 1, packed, each continuing from its state.

    Args:
        qk: ``[T, C]`` conv input of the packed tokens.
        v: ``[T, Dv]`` value projection of the packed tokens.
        query_start_loc: ``[N + 1]`` int, offsets of the sequences in the packed rows (``[0, ..., T]``).
        conv_init: ``[N, K, C]`` initial conv states (zeros for a sequence with no history).
        v_init: ``[N, Dv]`` initial value states (the value bias, or zeros, for no history).
        w: the layer's convolutions.

    Returns:
        ``(conv_out [T, C], v_prev [T, Dv], final conv_state [N, K, C], final v_state [N, Dv])``.
    """
    t, c = qk.shape
    n, k = conv_init.shape[0], w.state_len
    device = qk.device
    qsl = query_start_loc.to(device=device, dtype=torch.long)
    lengths = qsl[1:] - qsl[:-1]
    seq_of_token = torch.repeat_interleave(torch.arange(n, device=device), lengths, output_size=t)
    # Sequence i occupies rows [qsl[i] + K*i, qsl[i+1] + K*(i+1)) of `ext`: its K state rows, then its tokens.
    token_rows = torch.arange(t, device=device) + k * (seq_of_token + 1)
    seg_start = qsl[:-1] + k * torch.arange(n, device=device)
    state_rows = (seg_start[:, None] + torch.arange(k, device=device)).reshape(-1)
    ext = qk.new_empty(t + n * k, c)
    ext.index_copy_(0, state_rows, conv_init.to(qk.dtype).reshape(n * k, c))
    ext.index_copy_(0, token_rows, qk)
    y = _conv(ext.t().unsqueeze(0), w)[0]  # [C, T + N*K - K]; output row r sees ext rows r .. r + K
    out = y.index_select(1, token_rows - k).t()
    seg_end = qsl[1:] + k * torch.arange(1, n + 1, device=device)
    last_rows = (seg_end[:, None] - k + torch.arange(k, device=device)).reshape(-1)
    conv_final = ext.index_select(0, last_rows).view(n, k, c)
    # Previous-token values: the row above, except at each sequence's first token (its state).
    v_prev = torch.cat([v.new_zeros(1, v.shape[1]), v[:-1]], dim=0)
    v_prev.index_copy_(0, qsl[:-1], v_init.to(v.dtype))
    v_final = v.index_select(0, qsl[1:] - 1)
    return out, v_prev, conv_final, v_final
