"""Shared helpers of the GPU benchmark scripts (``benchmarks/gpu/*.py``): configs, prompts, the
trainer-vs-rollout log-prob gap, JSON output. Every script also runs on CPU with ``--dry-run`` (the torch
engine stands in for vLLM), so the only thing left unknown on the GPU machine is vLLM itself.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: Scratch folder of the benchmarks (models, run folders); results go to ``--out``.
WORK = Path(os.environ.get("ZAYA_GPU_WORK", "/tmp/zaya_gpu"))


def tiny_config(engine: str, frontend: str, *, device: str, max_batch: int = 256, tag: str = "bench",
                stream_interval: int | None = None) -> Any:
    """Tiny Qwen3-MoE (2 layers, 8 experts, top-2), bf16 on GPU, as a ``RunConfig`` (``stream_interval``:
    ``rollout.vllm.stream_interval``, None: the default)."""
    from zaya_rl.config import config_from_dict

    vllm = {"frontend": frontend, "gpu_memory_utilization": 0.3, "kv_cache_gb": 2.0 if device == "cuda" else None}
    if stream_interval is not None:
        vllm["stream_interval"] = stream_interval
    return config_from_dict({
        "run_dir": str(WORK / tag),
        "model": {"preset": "tiny-qwen3moe", "dtype": "bfloat16" if device == "cuda" else "float32"},
        "rollout": {"engine": engine, "max_batch_size": max_batch, "device": device, "vllm": vllm},
        "logging": {"wandb_mode": "disabled"},
    })


def chat_prompts(tokenizer: Any, n: int) -> list[list[int]]:
    """``n`` short arithmetic chat prompts of varying length."""
    from zaya_rl.models.tokenizer import encode_chat

    return [encode_chat(tokenizer, [{"role": "user", "content": f"{17 * i % 997}+{31 * i % 89}="}]) for i in range(n)]


def logprob_gaps(model: Any, results: list[Any], temperature: float, *, prefix: str) -> dict[str, float]:
    """Trainer log-probs of ``results`` (one forward, replay on and off) against their behaviour log-probs.

    Returns ``{prefix}/replay_on/*``, ``{prefix}/replay_off/*`` (``logprob_gap``: mean/max |Δ log p|) and
    ``{prefix}/native_disagreement``: fraction of valid (token, layer) pairs where the trainer's own
    routing differs from the engine's recorded one.
    """
    import torch

    from zaya_rl.models.router_replay import logprob_gap, record_routing
    from zaya_rl.trainer.batch import TrainSample, make_micro_batches
    from zaya_rl.trainer.step import LossSettings, sequence_logprobs

    samples = [TrainSample(r.prompt_ids, r.token_ids, r.logprobs, 0.0, r.routed_experts) for r in results if r.token_ids]
    settings = LossSettings(temperature=temperature, delta=0.1, tis_cap=10.0, aggregation="seq-mean-token-sum-norm",
                            max_len=1024, logprob_chunk_size=4096, router_replay=True, grad_clip=1.0,
                            micro_batch_size=len(samples))
    device = next(model.parameters()).device
    (mb,) = [m.to(device) for m in make_micro_batches(samples, len(samples), pad_id=0)]
    out: dict[str, float] = {}
    with torch.no_grad():
        on = sequence_logprobs(model, mb, settings=settings, replay=True)
        with record_routing(model) as rec:
            off = sequence_logprobs(model, mb, settings=settings, replay=False)
    out.update(logprob_gap(on, mb.behaviour_logp, mb.loss_mask, prefix=f"{prefix}/replay_on"))
    out.update(logprob_gap(off, mb.behaviour_logp, mb.loss_mask, prefix=f"{prefix}/replay_off"))
    if mb.replay_indices is not None:
        native = rec.indices.sort(dim=-1).values.to(device)
        recorded = mb.replay_indices.sort(dim=-1).values
        valid = mb.replay_valid & mb.attention_mask.bool()[:, :, None]
        differs = (native != recorded).any(dim=-1) & valid
        out[f"{prefix}/native_disagreement"] = float(differs.sum()) / max(float(valid.sum()), 1.0)
        out[f"{prefix}/routes_valid_frac"] = float(valid.sum()) / max(float(mb.attention_mask.sum()) * valid.shape[2], 1.0)
    return out


def uniform_logprob(vocab: int) -> float:
    """log(1/V): the log-prob of every token once the head's logits are all zero."""
    return -math.log(vocab)


class Timer:
    """``with Timer() as t: ...; t.s`` seconds."""

    def __enter__(self) -> Timer:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.s = time.perf_counter() - self.t0


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=str))
    print(json.dumps(data, default=str)[:4000], flush=True)


def record_failure(out: dict[str, Any], error: BaseException) -> None:
    """Put what failed into a result dict (the JSON says what failed; the exit code says that something did)."""
    import traceback

    out["error"] = f"{type(error).__name__}: {error}"
    out["traceback"] = traceback.format_exc()[-3000:]
