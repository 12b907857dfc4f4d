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
  pass of the two convolutions: each one is laid out behind its own K state rows, so no window crosses into the
  previous sequence (the receptive field of an output is exactly K + 1 rows).
- ``cca_decode``: one token per sequence, ``[N, C]`` with states ``[N, K, C]`` / ``[N, Dv]``; fixed shapes
  for a given N, no host synchronisation (safe inside a CUDA graph).

Both return the conv output, the previous-token value for every token, and the sequences' new states;
``cca_qkv`` then assembles the attention inputs (residual q/k paths, current/delayed value halves).
Tensors are time-major (``[tokens, channels]``); the conv weights keep transformers' ``conv1d`` layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


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
    """Both convolutions, valid padding, time-major: ``[B, L, C] -> [B, L - K, C]``.

    Written as shifted multiply-adds and one batched matmul per tap window instead of ``conv1d``: the
    kernels are 2 taps wide and the grouped conv is a per-head ``[hd, hd]`` mix, where ``conv1d``'s CPU
    path spent ~10 ms a call in set-up (measured on the 2-core CI box). Same sums, another order.
    """
    k0, k1 = w.depthwise_weight.shape[-1], w.grouped_weight.shape[-1]
    length, c = x.shape[1], x.shape[2]
    l1 = length - k0 + 1
    y = w.depthwise_bias + sum(x[:, a : a + l1] * w.depthwise_weight[:, 0, a] for a in range(k0))
    l2 = l1 - k1 + 1
    taps = torch.stack([y[:, b : b + l2] for b in range(k1)], dim=-1)  # [B, L2, C, k1]
    g = w.groups
    hd = c // g
    taps = taps.reshape(x.shape[0], l2, g, hd, k1)
    mix = w.grouped_weight.reshape(g, hd, hd, k1)  # [group, out, in, tap]
    out = torch.einsum("btgik,goik->btgo", taps, mix).reshape(x.shape[0], l2, c)
    return out + w.grouped_bias


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
    out = _conv(window, w).squeeze(1)
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
    y = _conv(ext.unsqueeze(0), w)[0]  # [T + N*K - K, C]; output row r sees ext rows r .. r + K
    out = y.index_select(0, token_rows - k)
    seg_end = qsl[1:] + k * torch.arange(1, n + 1, device=device)
    last_rows = (seg_end[:, None] - k + torch.arange(k, device=device)).reshape(-1)
    conv_final = ext.index_select(0, last_rows).view(n, k, c)
    # Previous-token values: the row above, except at each sequence's first token (its state).
    v_prev = torch.cat([v.new_zeros(1, v.shape[1]), v[:-1]], dim=0)
    v_prev.index_copy_(0, qsl[:-1], v_init.to(v.dtype))
    v_final = v.index_select(0, qsl[1:] - 1)
    return out, v_prev, conv_final, v_final


def cca_qkv(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    conv_out: torch.Tensor,
    v_prev: torch.Tensor,
    num_kv_heads: int,
    delayed_from: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Attention inputs of T tokens from the projections and the state outputs (one TP shard).

    transformers: ``q_res = (q + repeat_kv(k)) / 2`` per query head, ``k_res`` = mean of ``q_res`` over the
    heads of a kv group; query = conv output (q channels) + q_res, key = conv output (k channels) + k_res;
    value = the current token's projection in rows ``[:delayed_from]``, the previous token's after.

    Args:
        q: ``[T, Hq * hd]`` query projection of this shard.
        k: ``[T, Hkv * hd]`` key projection.
        v: ``[T, Hkv * hd]`` value projection (rows [current half | delayed half] of this shard).
        conv_out: ``[T, (Hq + Hkv) * hd]`` from ``cca_varlen`` / ``cca_decode``.
        v_prev: ``[T, Hkv * hd]`` previous-token values.
        num_kv_heads: Hkv of this shard.
        delayed_from: first value row taken from the previous token.

    Returns:
        ``(query [T, Hq * hd], key [T, Hkv * hd], value [T, Hkv * hd])``.
    """
    t, q_size = q.shape
    kv_size = k.shape[1]
    hd = kv_size // num_kv_heads
    q_res = (q.view(t, num_kv_heads, -1, hd) + k.view(t, num_kv_heads, 1, hd)) * 0.5
    query = conv_out[:, :q_size] + q_res.reshape(t, q_size)
    key = conv_out[:, q_size:] + q_res.mean(dim=2).reshape(t, kv_size)
    value = torch.cat([v[:, :delayed_from], v_prev[:, delayed_from:]], dim=-1)
    return query, key, value
