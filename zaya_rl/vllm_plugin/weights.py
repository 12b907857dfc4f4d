"""transformers ``ZayaForCausalLM`` checkpoint names -> the plugin's parameters (pure; no vLLM import).

The plugin keeps transformers' module names wherever the tensor is loaded as is (norms, residual scaling,
router, o_proj, conv weights, q/k-norm temperature, embeddings), so most names map to themselves and go
through the parameter's own (sharding) weight loader. These differ:

| checkpoint name | plugin target |
| --- | --- |
| ``...self_attn.qkv_proj.{q_proj,k_proj,v_proj_current,v_proj_delayed}.{weight,bias}`` | ``...self_attn.qkv_proj.proj.{weight,bias}``, shard ``q`` / ``k`` / ``v_current`` / ``v_delayed`` |
| ``...mlp.experts.gate_up_proj`` ``[E, 2I, H]``, ``...mlp.experts.down_proj`` ``[E, H, I]`` | the fused-MoE ``w13`` / ``w2`` of ``...mlp.experts``, one call per expert and half (``w1``, ``w3``, ``w2``) |
| ``...mlp.gate.balancing_biases`` (a buffer) | ``...mlp.gate.balancing.biases`` (``model.ZayaBalancingBiases`` says why) |
| ``lm_head.weight`` with tied embeddings | nothing (the head is the embedding) |

In-flight updates (``zaya_rl.weights`` transports, vLLM's ``reload_weights``) send the same checkpoint
names, so they go through the same mapping.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

#: transformers' CCA projection children -> shard id of ``ZayaQKVParallelLinear``.
QKV_SHARDS = {"q_proj": "q", "k_proj": "k", "v_proj_current": "v_current", "v_proj_delayed": "v_delayed"}

_QKV = re.compile(r"^(.*\.self_attn\.qkv_proj)\.(q_proj|k_proj|v_proj_current|v_proj_delayed)\.(weight|bias)$")
_EXPERTS = re.compile(r"^(.*\.mlp\.experts)\.(gate_up_proj|down_proj)$")


@dataclass(frozen=True)
class Target:
    """Where one checkpoint tensor goes.

    Attributes:
        kind: ``param`` (a parameter, optionally with a shard id), ``experts`` (stacked expert weights of
            the fused-MoE module ``name``), ``skip`` (tied head).
        name: parameter name (``param``) or fused-MoE module name (``experts``).
        shard: shard id for ``param``; ``gate_up_proj`` / ``down_proj`` for ``experts``.
    """

    kind: Literal["param", "experts", "skip"]
    name: str = ""
    shard: str | None = None


def target(name: str, tied_embeddings: bool) -> Target:
    """The plugin target of checkpoint tensor ``name``."""
    if name == "lm_head.weight" and tied_embeddings:
        return Target("skip")
    if m := _QKV.match(name):
        return Target("param", f"{m.group(1)}.proj.{m.group(3)}", QKV_SHARDS[m.group(2)])
    if name.endswith(".gate.balancing_biases"):
        return Target("param", name.removesuffix("_biases") + ".biases")
    if m := _EXPERTS.match(name):
        return Target("experts", m.group(1), m.group(2))
    return Target("param", name)
