"""ZAYA (transformers ``ZayaForCausalLM``) as an out-of-tree vLLM model: user documentation in
``docs/zaya_vllm_plugin.md``.

vLLM calls ``register`` in every process (front end, engine core, workers) through the entry point
``[project.entry-points."vllm.general_plugins"] zaya = "zaya_rl.vllm_plugin:register"``. It imports nothing
beyond the vLLM modules already loaded when plugins load; the model itself is imported lazily by vLLM.

Modules: ``cca`` (pure CCA state maths), ``routing`` (pure expert choice with the skip class),
``weights`` (checkpoint name mapping), ``cca_layer`` (the stateful vLLM layer and its custom op),
``model`` (the vLLM model). Tests: ``python -m pytest tests/vllm_plugin -q`` (skipped without vLLM).
"""

from __future__ import annotations

#: The architecture name in ``config.json`` that this plugin serves.
ARCHITECTURE = "ZayaForCausalLM"
#: Lazily imported model class (``<module>:<class>``, vLLM's format).
MODEL_CLASS = "zaya_rl.vllm_plugin.model:ZayaForCausalLM"
#: The mamba-style attention backend of the CCA state (``<module>.<class>``, vLLM's format).
BACKEND_CLASS = "zaya_rl.vllm_plugin.cca_layer.ZayaCCABackend"
#: The custom op that updates the CCA state (``zaya_rl.vllm_plugin.cca_layer``).
CCA_OP = "vllm::zaya_cca_state"


def register() -> None:
    """Register the ZAYA model, its CCA state backend, and the state op as a CUDA-graph splitting op.

    - ``ModelRegistry.register_model``: vLLM resolves ``ZayaForCausalLM`` to this plugin (without it, vLLM
      0.32 falls back to its generic Transformers backend, which is not exact for ZAYA).
    - ``register_backend(MambaAttentionBackendEnum.CUSTOM, ..., is_mamba=True)``: the slot vLLM keeps for
      out-of-tree stateful layers (vLLM 0.24 and 0.32 alike).
    - ``CompilationConfig._attention_ops``: vLLM's list of ops at which piecewise CUDA graphs are split
      (its own ``vllm::short_conv``, ``vllm::mamba_mixer2``, ... are there). The CCA op reads per-step
      metadata on the host, so, like those, it must run between graph pieces, not inside one.
    """
    from vllm import ModelRegistry
    from vllm.config import CompilationConfig
    from vllm.v1.attention.backends.registry import MambaAttentionBackendEnum, register_backend

    ModelRegistry.register_model(ARCHITECTURE, MODEL_CLASS)
    register_backend(MambaAttentionBackendEnum.CUSTOM, BACKEND_CLASS, is_mamba=True)
    if CCA_OP not in CompilationConfig._attention_ops:
        CompilationConfig._attention_ops.append(CCA_OP)
