"""Config sections of the GPU production path: the vLLM engine, weight transport, actor placement.

Part of the one config tree (``zaya_rl.config.schema.RunConfig`` holds them as ``rollout.vllm``,
``weight_sync`` and ``placement``); split out only to keep files small.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from zaya_rl.config.base import Section


class VLLMConfig(Section):
    """The vLLM engine (``rollout.engine: vllm``; ``zaya_rl.rollout.vllm_engine``). Behaviour log-probs are
    always vLLM's ``processed_logprobs`` (temperature and top-p applied, matching the trainer)."""

    frontend: Literal["auto", "async_llm", "stepped"] = "auto"
    """``auto``: chosen from the installed vLLM at start-up and logged (``zaya_rl.rollout.vllm_frontend``):
    ``async_llm`` wherever per-token versions can be exact (vLLM >= 0.32 ``weight_versions`` labels; 0.24
    engine-core timestamps), else ``stepped``. ``async_llm``: vLLM's ``AsyncLLM`` (engine core in a child
    process, native pause/resume). ``stepped``: an in-process ``LLMEngine`` stepped from the worker's event
    loop (no child process; tensors pass to the worker without serialisation)."""
    gpu_memory_utilization: float = Field(0.5, gt=0.0, le=1.0)
    """Fraction of the GPU vLLM may take (weights + KV cache); leave room for a colocated trainer."""
    max_model_len: int | None = Field(None, ge=16)
    """Longest prompt + completion in tokens (None: the model's ``max_position_embeddings``)."""
    enforce_eager: bool | None = None
    """Skip torch.compile and CUDA-graph capture: a faster start, a slower decode. None: eager on a CPU-only
    vLLM (compiling takes minutes on a few cores), compiled with CUDA graphs on a GPU, as TRL's colocated vLLM
    ran in our TRL comparison (on an H100, SmolLM2's eager decode left the trainer idle 79% of an async run;
    ``benchmarks/results/gpu_h100_2026-12-07.md``). Weight updates copy into the captured parameters in
    place, so graphs stay valid across them."""
    enable_prefix_caching: bool = True
    """Prefix caching; vLLM requires it to return routed experts."""
    clear_cache_on_update: bool = False
    """Drop the KV/prefix cache at each in-flight weight update (kept sequences are recomputed with the
    new weights). False keeps old-policy KV (PipelineRL's choice): faster, slightly stale."""
    kv_cache_gb: float | None = Field(None, gt=0.0)
    """KV-cache size in GiB (vLLM's ``kv_cache_memory_bytes``). None: from ``gpu_memory_utilization`` on a
    GPU; 1 GiB on a CPU-only vLLM, which would otherwise claim most of the host memory."""
    stream_interval: int = Field(16, ge=1)
    """``stepped`` frontend: a request's stream (log-probs, canary) takes its new tokens this many at a time, or
    all at once when it finishes, instead of after every engine step (``vllm_stepped.SteppedLLM``); versions
    are still booked per step, and a degenerate rollout is aborted at most this many tokens later. 1: every
    step. ``async_llm`` needs none: vLLM merges the outputs a busy consumer has not taken."""
    engine_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Extra ``AsyncEngineArgs`` fields passed through unchanged (e.g. ``{"max_num_batched_tokens": 8192}``)."""

    @model_validator(mode="after")
    def _stream_interval_needs_stepped(self) -> VLLMConfig:
        if self.frontend == "async_llm" and "stream_interval" in self.model_fields_set and self.stream_interval != 1:
            raise ValueError(f"rollout.vllm.stream_interval: {self.stream_interval} acts on the stepped frontend, but "
                             "rollout.vllm.frontend is async_llm (its consumers take merged outputs already)")
        return self


class WeightSyncConfig(Section):
    """How new trainer weights reach the rollout engines (``zaya_rl.weights``). One trainer call per update
    (``push_weights``); tensors travel in buckets, never one RPC per tensor."""

    transport: Literal["state_dict", "file", "nccl", "ipc"] = "state_dict"
    """``state_dict``: a CPU state dict through the Ray object store (any engine). ``file``: safetensors
    buckets in ``shm_dir`` + vLLM ``reload_weights`` (works with the multiprocess AsyncLLM). ``nccl``: vLLM's
    native weight transfer over NCCL (trainer and rollout on different GPUs). ``ipc``: vLLM's native
    transfer by CUDA IPC handles (trainer and rollout share a GPU). ``nccl``/``ipc`` need ``rollout.engine:
    vllm`` and a GPU trainer."""
    bucket_mb: int = Field(256, ge=1)
    """Largest bucket of packed tensors per transfer step, in MiB (bounds the staging memory)."""
    shm_dir: str = "/dev/shm/zaya_rl"
    """Folder of the ``file`` transport (a tmpfs: /dev/shm)."""
    dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    """dtype the weights travel in. ``auto``: the rollout engine's (``rollout.vllm.engine_kwargs.dtype`` when
    vLLM is given one, else ``model.dtype``), so the trainer, not the engine, rounds them."""
    rounding: Literal["stochastic", "nearest"] = "stochastic"
    """How float32 weights become bfloat16 ones (``zaya_rl.weights.rounding``). ``stochastic``: unbiased, so
    steps smaller than half a bfloat16 ulp still reach the rollout policy; ``nearest``: the usual cast,
    which sends a model started from a bfloat16 checkpoint back its starting weights for tens of steps
    (SmolLM2: 62% of a measured accuracy gain lost). Other casts always round to nearest. It acts on what the
    trainer publishes: with ``model.dtype: float32`` its own weights; with ``bfloat16`` they are already
    rounded (to nearest) by the trainer's step, and nothing is left to round."""


class PlacementConfig(Section):
    """Where actors run (``zaya_rl.pipeline.actors``). GPU requests are checked against the cluster first."""

    mode: Literal["ray", "colocated", "disaggregated"] = "ray"
    """``ray``: each actor asks Ray for its ``resources`` (no placement group). ``colocated``: one placement
    group of ``num_gpus`` GPU bundles; rollout worker i and trainer rank i share bundle i, with fractional
    ``num_gpus`` that sum to <= 1. ``disaggregated``: one placement group; rollout workers get the first
    ``rollout.num_workers`` bundles, trainer ranks the next ones, one GPU each."""
    strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    """Ray placement-group strategy."""
    timeout_s: float = Field(120.0, gt=0.0)
    """Give up (with the cluster's resources in the error) if the placement group is not ready by then."""
