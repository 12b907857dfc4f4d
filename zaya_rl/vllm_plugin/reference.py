"""Random transformers ZAYA checkpoints for checking the plugin: the exactness tests, the CPU and GPU benchmarks.

Two shapes (``REFERENCE_CONFIGS``):

- ``tiny``: the ``tiny-zaya`` preset's shapes (3 layers, hidden 64, 4 heads / 2 kv heads, 8 experts, router
  hidden 32) with head_dim 32, the smallest head size vLLM's CPU attention supports, and attention biases
  (the value bias is also the delayed value of a sequence's first token).
- ``deep``: ZAYA1-8B's layer (``ZayaConfig`` defaults: hidden 2048, 8 heads / 2 kv heads of 128, 16
  experts + skip of width 2048, router hidden 256, CCA kernels 2 and 2) scaled down 8x in width (head_dim
  to 32, the CPU floor) with 8 of its 40 layers.

``build_reference`` randomises every parameter transformers initialises to a constant (residual scales and
biases, linear and conv biases, norms, the q/k-norm temperature — zero at init, which would make attention
uniform — the EDA scale, and the balancing biases, with the skip class made reachable), so that a plugin
bug in any of them changes the logits; the router's output layer gets a gain so that tokens spread over
the experts and the skip class. Weights are saved with the byte tokenizer, as ``save_policy`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

REFERENCE_CONFIGS: dict[str, dict[str, Any]] = {
    "tiny": dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                 moe_intermediate_size=128, num_experts=8, router_hidden_size=32, attention_bias=True),
    "deep": dict(hidden_size=256, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=2, head_dim=32,
                 moe_intermediate_size=256, num_experts=16, router_hidden_size=32),
}

#: Std of the random weights: larger than transformers' 0.02 so that router top-1 margins are wide (a near
#: tie could flip under float rounding and look like a plugin bug) and logits are far from uniform.
_INIT_STD = 0.1
#: Extra gain on the router's output layer: router logits of std ~1, so that tokens spread over the experts
#: and the skip class with wide top-1 margins.
_ROUTER_GAIN = 2.0


def _randomise_constants(model: torch.nn.Module, gen: torch.Generator) -> None:
    def rand_like(p: torch.Tensor, scale: float) -> torch.Tensor:
        return torch.randn(p.shape, generator=gen).to(p.dtype) * scale

    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("_scale", "norm.weight", "layernorm.weight")):
                p.copy_(1.0 + rand_like(p, 0.2))
            elif name.endswith(("_bias", ".bias")):  # residual-scaling biases; linear and conv biases
                p.copy_(rand_like(p, 0.02))
            elif name.endswith("qk_norm.temp"):
                p.copy_(torch.rand(p.shape, generator=gen) * 1.5 + 0.5)
            elif name.endswith("router_mlp.out_proj.weight"):
                p.mul_(_ROUTER_GAIN)
        for name, b in model.named_buffers():
            if name.endswith("balancing_biases"):
                b.copy_(rand_like(b, 0.01))  # skip bias near 0 instead of -1: skip gets chosen


def build_reference(name: str, folder: str | Path, seed: int = 0, dtype: torch.dtype = torch.float32) -> Any:
    """Build reference model ``name``, save it (with the byte tokenizer) to ``folder``; return the model.

    Args:
        name: a key of ``REFERENCE_CONFIGS``.
        folder: output folder (created).
        seed: initialisation seed.
        dtype: dtype of the returned and saved model.
    """
    from transformers import AutoModelForCausalLM, ZayaConfig

    from zaya_rl.models.tokenizer import build_byte_tokenizer, save_tokenizer

    tok = build_byte_tokenizer()
    config = ZayaConfig(
        **REFERENCE_CONFIGS[name],
        num_experts_per_tok=1,
        max_position_embeddings=4096,
        initializer_range=_INIT_STD,
        vocab_size=len(tok),
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    _randomise_constants(model, gen)
    model = model.to(dtype).eval()
    model.save_pretrained(folder)
    save_tokenizer(tok, str(folder))
    return model
