"""The CCA projection as a vLLM stateful layer: q/k/v projections, conv + delayed-value state, TP shards.

``ZayaCCAProjection`` is a ``MambaBase`` layer (vLLM's contract for layers with per-sequence recurrent
state, like ``ShortConv``): it declares two states per sequence, ``conv [K, C]`` and ``v [Dv]``
(``zaya_rl.vllm_plugin.cca``), which vLLM allocates in its hybrid KV cache next to the attention blocks,
and reads them through the metadata of a mamba attention backend (``ZayaCCABackend``, registered as
``MambaAttentionBackendEnum.CUSTOM`` by ``zaya_rl.vllm_plugin.register``; its metadata is
``ShortConv``'s: decode and prefill split, state slot per request, whether a request has history).

The state update runs inside the custom op ``torch.ops.vllm.zaya_cca_state`` (opaque to torch.compile,
and a piecewise-CUDA-graph splitting op, as vLLM's own mamba ops are). Its decode path has fixed shapes
and no host synchronisation, so full CUDA graphs can capture decode batches.

Tensor parallelism (layout of transformers' ``ZayaCCAProjection``): q heads and kv heads are sharded as in
``QKVParallelLinear`` (kv heads replicated when TP > their number); the conv channels are [q channels, k
channels], one grouped-conv group per head, so each rank keeps the channels of its own heads. The value
vector of the checkpoint is ``[v_proj_current (Dkv/2), v_proj_delayed (Dkv/2)]`` read as kv heads; a rank
loads the rows of its kv heads from whichever half holds them (``ZayaQKVParallelLinear``), and the rows at
global index >= Dkv/2 of its shard take the previous token's value.
"""

from __future__ import annotations

import torch
from torch import nn
from vllm.config import get_current_vllm_config
from vllm.distributed import get_tensor_model_parallel_rank
from vllm.forward_context import get_forward_context
from vllm.model_executor.layers.linear import QKVParallelLinear
from vllm.model_executor.layers.mamba.abstract import MambaBase
from vllm.model_executor.layers.mamba.mamba_utils import MambaStateDtypeCalculator
from vllm.model_executor.utils import set_weight_attrs
from vllm.utils.torch_utils import direct_register_custom_op
from vllm.v1.attention.backends.registry import MambaAttentionBackendEnum
from vllm.v1.attention.backends.short_conv_attn import ShortConvAttentionBackend

from zaya_rl.vllm_plugin import CCA_OP
from zaya_rl.vllm_plugin.cca import ConvWeights, cca_decode, cca_qkv, cca_varlen

#: Shard ids of the two checkpoint halves of the value projection (``ZayaQKVParallelLinear``).
V_HALVES = ("v_current", "v_delayed")


class ZayaCCABackend(ShortConvAttentionBackend):
    """Mamba-style metadata for the CCA state (ShortConv's builder: per-request state slots)."""

    @staticmethod
    def get_name() -> str:
        return "ZAYA_CCA"


class ZayaQKVParallelLinear(QKVParallelLinear):
    """``QKVParallelLinear`` that also loads the value rows from ZAYA's two checkpoint halves.

    Shard ids ``"q"``, ``"k"`` behave as upstream; ``"v_current"`` / ``"v_delayed"`` copy the rows of this
    rank's kv heads that fall in the first / second half of the global value vector.
    """

    def _load_v_half(self, param: torch.Tensor, loaded: torch.Tensor, half: str) -> None:
        kv_size = self.num_kv_heads * self.head_size
        total = self.total_num_kv_heads * self.head_size
        kv_rank = self.tp_rank // self.num_kv_head_replicas
        lo_g, hi_g = kv_rank * kv_size, (kv_rank + 1) * kv_size  # this rank's global value rows
        lo_h = 0 if half == "v_current" else total // 2  # global rows the checkpoint half holds
        lo, hi = max(lo_g, lo_h), min(hi_g, lo_h + total // 2)
        if lo < hi:
            base = self.num_heads * self.head_size + kv_size  # value rows start after q and k
            param.data.narrow(0, base + lo - lo_g, hi - lo).copy_(loaded.narrow(0, lo - lo_h, hi - lo))

    def weight_loader(self, param, loaded_weight, loaded_shard_id=None):  # noqa: D102
        if loaded_shard_id in V_HALVES:
            return self._load_v_half(param, loaded_weight, loaded_shard_id)
        return super().weight_loader(param, loaded_weight, loaded_shard_id)

    def weight_loader_v2(self, param, loaded_weight, loaded_shard_id=None):  # noqa: D102
        if loaded_shard_id in V_HALVES:
            return self._load_v_half(param, loaded_weight, loaded_shard_id)
        return super().weight_loader_v2(param, loaded_weight, loaded_shard_id)

    @property
    def delayed_from(self) -> int:
        """First local value row that takes the previous token's value (rows before it: current)."""
        kv_size = self.num_kv_heads * self.head_size
        start = (self.tp_rank // self.num_kv_head_replicas) * kv_size
        return min(max(self.total_num_kv_heads * self.head_size // 2 - start, 0), kv_size)


def _channel_loader(ranges: list[tuple[int, int]], dim: int = 0):
    """Weight loader copying the given global index ranges of ``dim``, concatenated, into the shard."""

    def load(param: torch.Tensor, loaded_weight: torch.Tensor) -> None:
        at = 0
        for lo, hi in ranges:
            param.data.narrow(dim, at, hi - lo).copy_(loaded_weight.narrow(dim, lo, hi - lo))
            at += hi - lo

    return load


def _param(shape: tuple[int, ...], loader) -> nn.Parameter:
    p = nn.Parameter(torch.empty(shape), requires_grad=False)
    set_weight_attrs(p, {"weight_loader": loader})
    return p


class _Conv(nn.Module):
    """One CCA convolution's shard: ``weight [C_local, C_in_group, k]`` and ``bias [C_local]``."""

    def __init__(self, channels: int, in_per_group: int, kernel: int, ranges: list[tuple[int, int]]):
        super().__init__()
        self.weight = _param((channels, in_per_group, kernel), _channel_loader(ranges))
        self.bias = _param((channels,), _channel_loader(ranges))


class ZayaCCAProjection(MambaBase, nn.Module):
    """transformers ``ZayaCCAProjection`` for vLLM: ``forward(hidden [T, H]) -> (q, k, v)`` of this rank."""

    def __init__(self, config, model_config, cache_config, quant_config, prefix: str) -> None:
        super().__init__()
        hd, n_q, n_kv = config.head_dim, config.num_attention_heads, config.num_key_value_heads
        self.proj = ZayaQKVParallelLinear(
            config.hidden_size, hd, n_q, n_kv, bias=config.attention_bias, quant_config=quant_config,
            prefix=f"{prefix}.proj",
        )
        p = self.proj
        self.q_size, self.kv_size = p.num_heads * hd, p.num_kv_heads * hd
        self.num_heads, self.num_kv_heads = p.num_heads, p.num_kv_heads
        kv_rank = get_tensor_model_parallel_rank() // p.num_kv_head_replicas
        q0, k0 = get_tensor_model_parallel_rank() * self.q_size, n_q * hd + kv_rank * self.kv_size
        ranges = [(q0, q0 + self.q_size), (k0, k0 + self.kv_size)]
        channels = self.q_size + self.kv_size
        self.conv_qk_depthwise = _Conv(channels, 1, config.cca_time0, ranges)
        self.conv_qk_grouped = _Conv(channels, hd, config.cca_time1, ranges)
        self.state_len = config.cca_time0 - 1 + config.cca_time1 - 1
        self.delayed_from = p.delayed_from
        self.model_config, self.cache_config, self.prefix = model_config, cache_config, prefix
        self.kv_cache = (torch.tensor([]), torch.tensor([]))
        compilation_config = get_current_vllm_config().compilation_config
        if prefix in compilation_config.static_forward_context:
            raise ValueError(f"Duplicate layer name: {prefix}")
        compilation_config.static_forward_context[prefix] = self

    # --------------------------------------------------------------------------- MambaBase contract

    def get_state_shape(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return (self.state_len, self.q_size + self.kv_size), (self.kv_size,)

    def get_state_dtype(self) -> tuple[torch.dtype, torch.dtype]:
        (dtype,) = MambaStateDtypeCalculator.short_conv_state_dtype(
            self.model_config.dtype, self.cache_config.mamba_cache_dtype
        )
        return dtype, dtype

    @property
    def mamba_type(self) -> MambaAttentionBackendEnum:
        return MambaAttentionBackendEnum.CUSTOM

    # ------------------------------------------------------------------------------------- forward

    def conv_weights(self) -> ConvWeights:
        return ConvWeights(
            self.conv_qk_depthwise.weight, self.conv_qk_depthwise.bias,
            self.conv_qk_grouped.weight, self.conv_qk_grouped.bias, self.num_heads + self.num_kv_heads,
        )

    def forward(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        qkv, _ = self.proj(hidden_states)
        q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        qk = torch.cat([q, k], dim=-1)
        conv_out = torch.zeros_like(qk)
        v_prev = torch.zeros_like(v)
        torch.ops.vllm.zaya_cca_state(qk, v, conv_out, v_prev, self.prefix)
        return cca_qkv(q, k, v, conv_out, v_prev, self.num_kv_heads, self.delayed_from)

    def _v_bias(self, like: torch.Tensor) -> torch.Tensor:
        """The delayed value of a sequence's first token: the value projection of a zero input."""
        bias = self.proj.bias
        if bias is None:
            return like.new_zeros(self.kv_size)
        return bias[self.q_size + self.kv_size :].to(like.dtype)

    def update_state(self, qk: torch.Tensor, v: torch.Tensor, conv_out: torch.Tensor, v_prev: torch.Tensor) -> None:
        """Body of the custom op: conv output and previous values for all tokens, states updated in place."""
        raw = get_forward_context().attn_metadata
        meta = raw.get(self.prefix) if isinstance(raw, dict) else None
        w = self.conv_weights()
        if meta is None:  # profile / dummy run: one history-less sequence, values unused
            qsl = torch.tensor([0, qk.shape[0]], device=qk.device)
            init_c = qk.new_zeros(1, self.state_len, qk.shape[1])
            out, vp, _, _ = cca_varlen(qk, v, qsl, init_c, self._v_bias(v)[None], w)
            conv_out.copy_(out)
            v_prev.copy_(vp)
            return
        conv_state, v_state = self.kv_cache[0], self.kv_cache[1]
        n_d = meta.num_decode_tokens
        if n_d > 0:
            idx = meta.state_indices_tensor_d
            idx = (idx if idx.dim() == 1 else idx[:, 0])[:n_d]
            out, vp, new_c, new_v = cca_decode(qk[:n_d], v[:n_d], conv_state[idx], v_state[idx], w)
            conv_state[idx] = new_c.to(conv_state.dtype)
            v_state[idx] = new_v.to(v_state.dtype)
            conv_out[:n_d] = out
            v_prev[:n_d] = vp
        t_p = meta.num_prefill_tokens
        if meta.num_prefills > 0:
            idx = meta.state_indices_tensor_p
            idx = idx if idx.dim() == 1 else idx[:, 0]
            has = meta.has_initial_states_p
            init_c = torch.where(has[:, None, None], conv_state[idx].to(qk.dtype), 0)
            init_v = torch.where(has[:, None], v_state[idx].to(v.dtype), self._v_bias(v))
            rows = slice(n_d, n_d + t_p)
            out, vp, fin_c, fin_v = cca_varlen(qk[rows], v[rows], meta.query_start_loc_p, init_c, init_v, w)
            conv_state[idx] = fin_c.to(conv_state.dtype)
            v_state[idx] = fin_v.to(v_state.dtype)
            conv_out[rows] = out
            v_prev[rows] = vp


def zaya_cca_state(
    qk: torch.Tensor, v: torch.Tensor, conv_out: torch.Tensor, v_prev: torch.Tensor, layer_name: str
) -> None:
    get_forward_context().no_compile_layers[layer_name].update_state(qk, v, conv_out, v_prev)


def _zaya_cca_state_fake(
    qk: torch.Tensor, v: torch.Tensor, conv_out: torch.Tensor, v_prev: torch.Tensor, layer_name: str
) -> None:
    return None


direct_register_custom_op(
    op_name=CCA_OP.split("::")[1],
    op_func=zaya_cca_state,
    mutates_args=["conv_out", "v_prev"],
    fake_impl=_zaya_cca_state_fake,
)

