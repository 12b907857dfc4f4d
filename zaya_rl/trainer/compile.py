"""Regional compilation of the policy for training (``trainer.compile``).

Each decoder layer is compiled on its own with ``nn.Module.compile``, as torchtitan compiles each transformer
block: one small graph that every layer of the same shape reuses, so compile time does not grow with depth,
while the embedding, the log-prob head (``token_logprobs``: its own chunked or fused kernels) and the
router-replay bookkeeping stay eager. Inductor fuses the element-wise work (RMSNorm, RoPE, SwiGLU, residual
adds), a larger share of a step the narrower the model (SmolLM2: hidden 576); ``benchmarks/trainer_mfu.py
--compile`` measures what that buys on a GPU.

``nn.Module.compile`` compiles in place: parameter names, ``state_dict`` keys, weight sync, checkpoints and
the optimizer partition see the same module tree as without it. A layer that dynamo cannot trace whole
(transformers' ``grouped_mm`` fallback of MoE experts on CPU) runs as several graphs with eager code between
them; ``tests/trainer/test_compile.py`` checks compiled steps against eager ones (Llama; Qwen3-MoE and ZAYA
with router replay).
"""

from __future__ import annotations

import logging

from torch import nn

log = logging.getLogger(__name__)

# attribute paths of the decoder-layer list in the causal LMs we train (Llama, Qwen3-MoE, ZAYA: model.layers)
LAYER_PATHS = ("model.layers", "model.language_model.layers", "transformer.h")


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The ``nn.ModuleList`` of decoder layers of ``model`` (ValueError naming the model type if none)."""
    for path in LAYER_PATHS:
        obj: object = model
        for name in path.split("."):
            obj = getattr(obj, name, None)
        if isinstance(obj, nn.ModuleList) and len(obj) > 0:
            return obj
    kind = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
    raise ValueError(f"trainer.compile: no decoder-layer list in model type {kind!r} (looked for {', '.join(LAYER_PATHS)})")


def compile_layers(model: nn.Module) -> int:
    """Compile every decoder layer of ``model`` in place; returns how many were compiled."""
    layers = decoder_layers(model)
    for layer in layers:
        layer.compile()
    log.info("trainer.compile: %d decoder layers compiled on first use (torch.compile, per layer)", len(layers))
    return len(layers)
