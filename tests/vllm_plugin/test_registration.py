"""The plugin's registration in real vLLM: entry point, model registry, ``check_vllm_supports`` (no engine).

python -m pytest tests/vllm_plugin/test_registration.py -q        (skipped when vLLM is not installed)
"""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

pytest.importorskip("vllm")
pytestmark = pytest.mark.vllm


def test_entry_point_registers_zaya_and_check_vllm_supports_passes():
    from vllm import ModelRegistry
    from vllm.config import CompilationConfig
    from vllm.v1.attention.backends.registry import MambaAttentionBackendEnum

    from zaya_rl.config import config_from_dict
    from zaya_rl.rollout.vllm_build import check_vllm_supports
    from zaya_rl.vllm_plugin import CCA_OP

    assert "zaya_rl.vllm_plugin:register" in [e.value for e in entry_points(group="vllm.general_plugins")]
    check_vllm_supports(config_from_dict({"model": {"preset": "tiny-zaya"}, "rollout": {"engine": "vllm"}}))
    assert "ZayaForCausalLM" in ModelRegistry.get_supported_archs()
    assert MambaAttentionBackendEnum.CUSTOM.get_path() == "zaya_rl.vllm_plugin.cca_layer.ZayaCCABackend"
    assert CCA_OP in CompilationConfig._attention_ops


def test_hybrid_contract_matches_the_layer():
    """The state shapes vLLM sizes the cache with (model class, from the config) equal the layer's own."""
    from zaya_rl.vllm_plugin.model import ZayaForCausalLM, _local_heads
    from zaya_rl.vllm_plugin.reference import REFERENCE_CONFIGS

    class _Cfg:  # what get_mamba_state_shape_from_config reads
        def __init__(self, tp: int) -> None:
            from transformers import ZayaConfig

            self.model_config = type("M", (), {"hf_config": ZayaConfig(**REFERENCE_CONFIGS["deep"])})()
            self.parallel_config = type("P", (), {"tensor_parallel_size": tp})()

    for tp, (q, kv) in [(1, (8, 2)), (2, (4, 1)), (4, (2, 1))]:  # kv heads replicated beyond tp = 2
        cfg = _Cfg(tp)
        assert _local_heads(cfg.model_config.hf_config, tp) == (q, kv)
        conv, v = ZayaForCausalLM.get_mamba_state_shape_from_config(cfg)
        assert conv == (2, (q + kv) * 32) and v == (kv * 32,)
