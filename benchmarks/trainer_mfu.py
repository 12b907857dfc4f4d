"""Tokens/s and model-FLOPs utilisation (MFU) of one full trainer step on a GPU.

The step is the trainer's own ``zaya_rl.trainer.step.train_step``: micro-batched forward with router replay,
log-probs (``trainer.logprob_impl: auto``: the fused kernel where it runs), DPPO + Dr-GRPO loss, backward, the
NaN guard, clipping, and the Muon/AdamW step (``zaya_rl.optim.build_optimizer``, the run's partition). Samples
are synthetic: ``--sequences`` rollouts of exactly ``--seq-len`` input tokens (``--prompt-len`` of prompt, the
rest generated and trained on), random ids, random behaviour log-probs and advantages ±1; MoE samples carry
random routes over the real experts (never ZAYA's skip class), so every token runs exactly top-k experts.

Two models (each in its own subprocess, so an OOM of one cannot take the other down):
- ``real``: the checkpoint folder given by ``--model-path`` (e.g. SmolLM2-135M-Instruct from
  ``zaya-rl model import``), bf16, fp32 head.
- ``zaya``: ZAYA1-8B layer widths (transformers' ``ZayaConfig()`` defaults: hidden 2048, 8 query / 2 kv heads
  of 128, 16 experts of 2048 with top-1 + skip, router 256, vocab 262,272, tied head) with as many layers as
  fit: two probes (2 and 4 layers) measure the peak memory of a step, the difference gives the cost of a layer,
  and the run takes the most layers (<= 40) that fit in 90% of the device. bf16, fp32 head, router replay on.

Model FLOPs per step: ``zaya_rl.trainer.flops`` (the 6N rule with a causal attention term; N = N_active,
the parameters a token runs, MoE experts at top-k / E, input embedding excluded, the head counted on scored
tokens only):

    FLOPs = 6·N_body·T + 6·N_head·T_loss + 6·n_layers·d_attn·S·T

The optimizer's FLOPs are not counted (MFU's convention), its time is: ``mfu`` is over the whole step,
``mfu_fwd_bwd`` without the optimizer's time.

Peak: 989 TFLOP/s dense bf16 for H100 SXM and H200 (same tensor cores), 756 for H100 PCIe, 835 for H100 NVL,
read from ``torch.cuda.get_device_name()``; unknown devices report no MFU.

    python benchmarks/trainer_mfu.py --model-path /path/to/SmolLM2-135M-Instruct          # GPU, ~2-3 min
    python benchmarks/trainer_mfu.py --dry-run --model-path DIR                           # CPU, tiny sizes

``--profile N`` times one more step under ``torch.profiler``: the device's busy time against the step's wall time
(what is left is the host: launches, Python, synchronisations), the N kernels with the most device time, and on a
GPU ``idle``: the device's idle gaps, each attributed to the host op running at the time (``idle_attribution``).

Prints one JSON line (last line) with every figure; ``--out FILE`` also writes it.
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: Dense bf16 tensor-core peak (FLOP/s) by device-name fragment, most specific first.
PEAK_BF16 = [("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("H200", 989e12), ("GH200", 989e12)]
GOAL_MFU_REAL = 0.35


def peak_flops(device_name: str) -> float | None:
    for fragment, peak in PEAK_BF16:
        if fragment in device_name:
            return peak
    return None


def zaya_model(layers: int, dry_run: bool, device: str, dtype: Any) -> Any:
    import torch
    from transformers import AutoModelForCausalLM, ZayaConfig

    small = {"hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
             "moe_intermediate_size": 64, "num_experts": 4, "router_hidden_size": 32, "vocab_size": 512}
    cfg = ZayaConfig(num_hidden_layers=layers, **(small if dry_run else {}))
    with torch.device(device):
        return AutoModelForCausalLM.from_config(cfg, dtype=dtype)


def real_model(path: str | None, dry_run: bool, device: str, dtype_name: str) -> Any:
    import torch

    if path is None:  # dry run without a folder: a tiny Llama (SmolLM2's architecture) built here
        from transformers import LlamaConfig, LlamaForCausalLM

        cfg = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
        return LlamaForCausalLM(cfg).to(device=device, dtype=getattr(torch, dtype_name))
    from zaya_rl.models.policy import load_policy

    return load_policy(path, dtype_name, device)[0]


def samples_for(model: Any, args: argparse.Namespace) -> list[Any]:
    import numpy as np

    from zaya_rl.models.router_replay import moe_routers
    from zaya_rl.trainer.batch import TrainSample

    rng = np.random.default_rng(0)
    vocab = model.get_output_embeddings().weight.shape[0]
    gen = args.seq_len + 1 - args.prompt_len  # input = prompt + generated[:-1] = seq_len tokens
    routers = moe_routers(model)
    out = []
    for i in range(args.sequences):
        routes = None
        if routers:  # distinct real experts (never ZAYA's skip class) per (position, layer)
            experts, k = routers[0][0].num_experts, routers[0][0].top_k
            routes = np.argsort(rng.random((args.seq_len, len(routers), experts)), axis=-1)[..., :k].astype(np.int16)
        out.append(TrainSample(rng.integers(0, vocab, args.prompt_len).tolist(), rng.integers(0, vocab, gen).tolist(),
                               (-rng.random(gen) * 2).tolist(), 1.0 if i % 2 else -1.0, routes))
    return out


def _allocator_counts() -> dict[str, int]:
    """The CUDA caching allocator's counts of device allocations, frees and out-of-memory retries so far."""
    import torch

    stats = torch.cuda.memory_stats()
    return {k: int(stats.get(k, 0)) for k in ("num_device_alloc", "num_device_free", "num_alloc_retries")}


def run_one(args: argparse.Namespace) -> dict[str, Any]:
    """Build one model, take ``--warmup`` + ``--steps`` trainer steps, return the figures."""
    import torch

    from zaya_rl.config.schema import OptimConfig
    from zaya_rl.optim.build import build_optimizer
    from zaya_rl.trainer.flops import flop_counts
    from zaya_rl.trainer.step import LossSettings, describe_kernels, train_step

    device = "cpu" if args.dry_run else "cuda"
    dtype_name = "float32" if args.dry_run else "bfloat16"
    if args.worker == "zaya":
        model = zaya_model(args.layers, args.dry_run, device, getattr(torch, dtype_name))
    else:
        model = real_model(args.model_path, args.dry_run, device, dtype_name)
    if args.compile:  # trainer.compile: each decoder layer compiled in place (zaya_rl.trainer.compile)
        from zaya_rl.trainer.compile import compile_layers

        compile_layers(model)
    optimizer, _ = build_optimizer(model, OptimConfig(lr=1e-6))
    settings = LossSettings(temperature=1.0, delta=0.2, tis_cap=5.0, aggregation="seq-mean-token-sum-norm",
                            max_len=args.seq_len, logprob_chunk_size=1024, router_replay=True, grad_clip=1.0,
                            micro_batch_size=args.micro_batch, fp32_lm_head=True, logprob_impl=args.logprob_impl,
                            logprob_grad_filter=args.grad_filter, packing="auto")
    samples = samples_for(model, args)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    opt_time = [0.0]
    inner_step = optimizer.step

    def timed_step(*a: Any, **k: Any) -> Any:  # the optimizer's share of the step
        sync()
        t0 = time.perf_counter()
        out = inner_step(*a, **k)
        sync()
        opt_time[0] += time.perf_counter() - t0
        return out

    optimizer.step = timed_step
    pad_id = model.config.pad_token_id or 0
    times, opt_times = [], []
    alloc_before: dict[str, int] = {}
    for i in range(args.warmup + args.steps):
        opt_time[0] = 0.0
        if i == args.warmup and device == "cuda":
            alloc_before = _allocator_counts()
        sync()
        t0 = time.perf_counter()
        res = train_step(model, optimizer, samples, settings=settings, pad_id=pad_id)
        sync()
        if res.skipped:
            raise RuntimeError(f"step skipped: {res.reason}")
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
            opt_times.append(opt_time[0])
    profile = None
    if args.profile:  # after the timed steps: a failure here costs the profile, not the figures
        try:
            profile = kernel_profile(lambda: train_step(model, optimizer, samples, settings=settings, pad_id=pad_id),
                                     sync, device, args.profile)
        except Exception as e:  # noqa: BLE001 - recorded in the JSON
            profile = {"error": f"{type(e).__name__}: {e}"}
    counts = flop_counts(model)
    tokens = args.seq_len * args.sequences
    loss_tokens = sum(len(s.token_ids) for s in samples)
    flops = counts.step_flops(args.seq_len, tokens, loss_tokens)
    step_s, opt_s = statistics.median(times), statistics.median(opt_times)
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    peak = peak_flops(name)
    out = {
        "model": type(model).__name__, "layers": model.config.num_hidden_layers, "device": name,
        "parameters": sum(p.numel() for p in model.parameters()), **dataclasses.asdict(counts),
        "tokens_per_step": tokens, "loss_tokens_per_step": loss_tokens,
        "step_s": step_s, "optimizer_s": opt_s, "tokens_per_s": tokens / step_s,
        "model_tflop_per_step": flops / 1e12,
        "attention_flop_share": 6 * counts.n_layers * counts.d_attn * args.seq_len * tokens / flops,
        "peak_tflops": None if peak is None else peak / 1e12,
        "mfu": None if peak is None else flops / step_s / peak,
        "mfu_fwd_bwd": None if peak is None else flops / (step_s - opt_s) / peak,
        "attn_implementation": model.config._attn_implementation, "compile": args.compile,
        "experts_implementation": getattr(model.config, "_experts_implementation", None),
        **describe_kernels(model, settings),
    }
    if profile is not None:
        out["profile"] = profile
    if device == "cuda":
        # cudaMalloc/cudaFree during the timed steps (each cudaFree waits for the device; a retry frees the
        # whole cache): 0 unless the caching allocator ran out (try PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True)
        after = _allocator_counts()
        out["allocator_during_timed_steps"] = {k: after[k] - alloc_before.get(k, 0) for k in after}
        out["pytorch_cuda_alloc_conf"] = os.environ.get("PYTORCH_CUDA_ALLOC_CONF")
        out["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 1e9
        out["device_memory_gb"] = torch.cuda.get_device_properties(0).total_memory / 1e9
    return out


def kernel_profile(step: Callable[[], Any], sync: Callable[[], None], device: str, top: int) -> dict[str, Any]:
    """One more step under ``torch.profiler``: the device's busy time (the sum of its kernels) against the step's
    wall time (a gap means the step waits on the host: launches, Python, syncs) and the ``top`` kernels by time.
    On a CPU (dry run) the ops' self CPU time stands in for kernels."""
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    sync()
    with profile(activities=acts) as prof:
        t0 = time.perf_counter()
        step()
        sync()
        wall = time.perf_counter() - t0
    if device == "cuda":  # the kernels themselves: an op's own row would count its kernels a second time
        # and not the annotated ranges on the device timeline (e.g. "Optimizer.step#MuonAdamW.step", 14 ms of an
        # H100 step on 2026-12-07): they span kernels that are counted on their own
        events = [e for e in prof.key_averages()
                  if e.device_type == DeviceType.CUDA and not getattr(e, "is_user_annotation", False)]
        attr = "self_device_time_total"
    else:
        events, attr = list(prof.key_averages()), "self_cpu_time_total"
    busy_us = sum(getattr(e, attr) for e in events)
    rows = sorted(events, key=lambda e: -getattr(e, attr))[:top]
    out = {
        "wall_s": wall, "device_busy_s": busy_us / 1e6, "busy_fraction": busy_us / 1e6 / wall,
        "top": [{"op": e.key[:120], "self_s": getattr(e, attr) / 1e6, "calls": e.count,
                 "share": getattr(e, attr) / max(busy_us, 1e-9)} for e in rows],
        "torch": torch.__version__,
    }
    if device == "cuda":  # what the host was doing while the GPU sat idle
        kernels, host = [], []
        try:
            for e in prof.events():
                span = (e.time_range.start, e.time_range.end)
                if e.device_type == DeviceType.CUDA and not getattr(e, "is_user_annotation", False):
                    kernels.append(span)
                elif e.device_type == DeviceType.CPU:
                    host.append((e.name, *span))
            out["idle"] = idle_attribution(kernels, host, top=top)
        except Exception as e:  # noqa: BLE001 - the busy figures above stand without it
            out["idle"] = {"error": f"{type(e).__name__}: {e}"}
    return out


def idle_attribution(kernels: list[tuple[float, float]], host: list[tuple[str, float, float]], *,
                     min_gap_us: float = 5.0, top: int = 15) -> dict[str, Any]:
    """The device's idle gaps and the host op running in each (all times in µs, one clock).

    The window runs from the first host op's start to the last kernel's or host op's end. Every stretch of it
    that no kernel covers is a gap; a gap of at least ``min_gap_us`` is attributed to the *shortest* host op
    covering its midpoint (what the host was doing then: a synchronising ``aten::item``, an autograd node's
    launches, Python between ops show as their enclosing op), or to ``(no host op)``.
    Returns ``idle_s``, ``gaps``, and ``by_host_op``: the ``top`` ops by idle time, with their gap counts.
    """
    if not host and not kernels:
        return {"idle_s": 0.0, "gaps": 0, "by_host_op": []}
    start = min([s for _, s, _ in host] + [s for s, _ in kernels])
    end = max([e for _, _, e in host] + [e for _, e in kernels])
    gaps, at = [], start
    for s, e in sorted(kernels):
        if s > at:
            gaps.append((at, s))
        at = max(at, e)
    if end > at:
        gaps.append((at, end))
    # sweep the gaps' midpoints in time order over the host ops sorted by start, keeping the ops begun so far in
    # a heap by duration: ops that ended surface and are dropped when they reach the top, so the top is the
    # shortest op covering the midpoint (O((ops + gaps) log ops) for a step's ~10^5 host events)
    ops = sorted(host, key=lambda op: op[1])
    heap: list[tuple[float, float, str]] = []
    by: dict[str, list[float]] = {}
    i = 0
    for g0, g1 in gaps:
        if g1 - g0 < min_gap_us:
            continue
        mid = (g0 + g1) / 2
        while i < len(ops) and ops[i][1] <= mid:
            name, s, e = ops[i]
            heapq.heappush(heap, (e - s, e, name))
            i += 1
        while heap and heap[0][1] < mid:
            heapq.heappop(heap)
        name = heap[0][2] if heap else "(no host op)"
        slot = by.setdefault(name, [0.0, 0])
        slot[0] += g1 - g0
        slot[1] += 1
    rows = sorted(by.items(), key=lambda kv: -kv[1][0])[:top]
    return {"idle_s": sum(g1 - g0 for g0, g1 in gaps) / 1e6, "gaps": len(gaps),
            "by_host_op": [{"op": name[:120], "idle_s": t / 1e6, "gaps": n} for name, (t, n) in rows]}


def _worker(which: str, args: argparse.Namespace, extra: list[str], timeout: float) -> dict[str, Any]:
    argv = [a for a in sys.argv[1:] if a != "--dry-run"] + (["--dry-run"] if args.dry_run else [])
    cmd = [sys.executable, __file__, *argv, "--worker", which, *extra]
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s (time box)"}
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode or not lines:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])[-600:]
        return {"error": f"exit {proc.returncode}: {tail}", "wall_s": time.time() - t0}
    return {**json.loads(lines[-1]), "wall_s": time.time() - t0}


def fit_layers(args: argparse.Namespace, deadline: float) -> tuple[int, dict[str, Any]]:
    """ZAYA layers that fit: peak memory of 2- and 4-layer steps, extrapolated to 90% of the device."""
    probes = {}
    for n in (2, 4):
        probes[n] = _worker("zaya", args, ["--layers", str(n), "--warmup", "0", "--steps", "1"], deadline - time.time())
        if "error" in probes[n]:
            return 2, {"probe_error": probes[n]["error"]}
    per_layer = (probes[4]["peak_memory_gb"] - probes[2]["peak_memory_gb"]) / 2
    base = probes[2]["peak_memory_gb"] - 2 * per_layer
    fit = int((0.9 * probes[2]["device_memory_gb"] - base) // max(per_layer, 1e-9))
    info = {"probe_peak_gb": {n: p["peak_memory_gb"] for n, p in probes.items()}, "per_layer_gb": per_layer,
            "fixed_gb": base}
    return max(2, min(40, fit)), info


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-path", help="HF folder of the real model (dry run: optional, else a tiny Llama)")
    p.add_argument("--models", nargs="+", default=["real", "zaya"], choices=["real", "zaya"])
    p.add_argument("--seq-len", type=int, default=2048, help="input tokens per sequence")
    p.add_argument("--prompt-len", type=int, default=256, help="prompt tokens per sequence (not scored)")
    p.add_argument("--sequences", type=int, default=32, help="sequences per optimizer step")
    p.add_argument("--micro-batch", type=int, default=4, help="sequences per micro-batch (trainer.micro_batch_size)")
    p.add_argument("--zaya-sequences", type=int, default=16, help="--sequences for the ZAYA-shaped model")
    p.add_argument("--zaya-micro-batch", type=int, default=2, help="--micro-batch for the ZAYA-shaped model")
    p.add_argument("--layers", type=int, default=0, help="ZAYA layers (0: as many as fit)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps (kernel autotuning, allocator)")
    p.add_argument("--steps", type=int, default=2, help="timed steps (median reported)")
    p.add_argument("--logprob-impl", default="auto", choices=["auto", "chunked", "cce", "liger"])
    p.add_argument("--grad-filter", action="store_true",
                   help="trainer.logprob_grad_filter: cut-cross-entropy's gradient filtering (needs cce)")
    p.add_argument("--compile", action="store_true",
                   help="trainer.compile: torch.compile each decoder layer (the warm-up step compiles)")
    p.add_argument("--time-box", type=float, help="seconds for the whole run (default 170; dry run 1500)")
    p.add_argument("--dry-run", action="store_true", help="CPU, fp32, tiny shapes: checks the script, not speed")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="one more step under torch.profiler: device busy time vs wall, and the N heaviest ops")
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument("--worker", choices=["real", "zaya"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.dry_run:
        args.seq_len, args.prompt_len, args.sequences, args.micro_batch = 64, 16, 4, 2
        args.zaya_sequences, args.zaya_micro_batch = 4, 2
    if args.worker:
        if args.worker == "zaya":
            args.sequences, args.micro_batch = args.zaya_sequences, args.zaya_micro_batch
        print(json.dumps(run_one(args)), flush=True)
        return
    deadline = time.time() + (args.time_box or (1500.0 if args.dry_run else 170.0))
    result: dict[str, Any] = {"formula": "6*N_body*T + 6*N_head*T_loss + 6*n_layers*d_attn*S*T (causal)",
                              "seq_len": args.seq_len, "goal_mfu_real": GOAL_MFU_REAL}
    if "real" in args.models:
        if args.model_path is None and not args.dry_run:
            result["real"] = {"error": "--model-path is required on the GPU"}
        else:
            # the real model gets at most half of what is left, the ZAYA probes and run the rest
            result["real"] = _worker("real", args, [], (deadline - time.time()) * (0.5 if "zaya" in args.models else 1))
    if "zaya" in args.models:
        layers, info = (args.layers, {}) if args.layers or args.dry_run else fit_layers(args, deadline)
        layers = layers or 2
        zaya = _worker("zaya", args, ["--layers", str(layers)], deadline - time.time())
        if "error" in zaya and "OutOfMemory" in zaya["error"] and layers > 2:  # the estimate was off: one retry
            layers = max(2, math.floor(layers * 0.75))
            zaya = {**_worker("zaya", args, ["--layers", str(layers)], deadline - time.time()), "retried": True}
        result["zaya"] = {**zaya, **info}
    line = json.dumps(result)
    if args.out:
        with open(args.out, "w") as f:
            f.write(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
