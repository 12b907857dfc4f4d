"""Chunked vs naive token log-probs at ZAYA's vocabulary (262,272): peak memory and time of forward+backward.

Each variant runs in a fresh subprocess, so one variant's allocations cannot hide the other's peak. The peak is
measured as the increase over the inputs already allocated: on CPU the peak resident set (``ru_maxrss``) after
the first forward+backward minus the resident set just before it (inputs are built in place, so that no earlier
transient exceeds the measured peak); on CUDA ``torch.cuda.max_memory_allocated`` minus the allocation before it. Time is the median of ``--repeats`` further forward+backward passes. Both variants compute gradients for the
hidden states and the (tied) output weight, as in training.

    python benchmarks/logprobs_memory.py                         # CPU, N=2048, H=256 (fits in 24 GiB)
    python benchmarks/logprobs_memory.py --device cuda --tokens 16384 --hidden 2048 --dtype bfloat16 --fp32
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from zaya_rl.algorithms.logprobs import token_logprobs

ZAYA_VOCAB = 262_272


def naive(hidden, weight, targets, args):
    logits = hidden @ weight.T
    if args.fp32:
        logits = logits.float()
    logp = torch.log_softmax(logits / args.temperature, dim=-1)
    return logp.gather(-1, targets[:, None]).squeeze(-1)


def chunked(hidden, weight, targets, args):
    return token_logprobs(hidden, weight, targets, args.temperature, args.chunk_size, fp32=args.fp32)


VARIANTS = {"naive": naive, "chunked": chunked}


def _peak_bytes(device: str) -> int:
    if device == "cuda":
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def worker(args: argparse.Namespace) -> dict[str, float]:
    """Run one variant in this process; returns its peak-memory increase and median time."""
    fn, dev, dtype = VARIANTS[args.worker], args.device, getattr(torch, args.dtype)
    g = torch.Generator(device=dev).manual_seed(0)
    hidden = torch.randn(args.tokens, args.hidden, device=dev, dtype=dtype, generator=g).requires_grad_(True)
    # in place: a temporary of W's size here would raise the process's peak before the baseline is taken
    weight = torch.randn(args.vocab, args.hidden, device=dev, dtype=dtype, generator=g).mul_(0.02)
    weight.requires_grad_(True)
    targets = torch.randint(0, args.vocab, (args.tokens,), device=dev, generator=g)
    upstream = torch.randn(args.tokens, device=dev, generator=g)

    def step():
        hidden.grad = weight.grad = None
        (fn(hidden, weight, targets, args) * upstream).sum().backward()
        _sync(dev)

    # load kernels/libraries with separate tiny tensors, so that nothing of the real size predates the baseline
    tiny_w = weight[:64].detach().clone().requires_grad_(True)
    fn(hidden[:8].detach().clone().requires_grad_(True), tiny_w, targets[:8] % 64, args).sum().backward()
    _sync(dev)
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated() if dev == "cuda" else _current_rss_bytes()
    step()
    peak = _peak_bytes(dev) - before
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {"peak_bytes": peak, "seconds": statistics.median(times)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=2048, help="N, rows of hidden states")
    p.add_argument("--hidden", type=int, default=256, help="H")
    p.add_argument("--vocab", type=int, default=ZAYA_VOCAB, help="V (ZAYA: 262,272)")
    p.add_argument("--chunk-size", type=int, default=128, help="rows per chunk of the chunked variant")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--fp32", action="store_true", help="fp32 logits for bf16 inputs (both variants)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--repeats", type=int, default=2, help="timed passes after the measured one")
    p.add_argument("--worker", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    results = {}
    for name in VARIANTS:
        cmd = [sys.executable, __file__, *sys.argv[1:], "--worker", name]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results[name] = json.loads(out.strip().splitlines()[-1])
    logits_gb = args.tokens * args.vocab * 4 / 1e9
    print(
        f"N={args.tokens} H={args.hidden} V={args.vocab} chunk={args.chunk_size} dtype={args.dtype} "
        f"fp32={args.fp32} device={args.device}; one fp32 [N x V] logits tensor = {logits_gb:.2f} GB"
    )
    print(f"{'variant':<8} {'peak extra memory':>18} {'fwd+bwd time':>13}")
    for name, r in results.items():
        print(f"{name:<8} {r['peak_bytes'] / 1e9:>15.3f} GB {r['seconds']:>11.2f} s")
    n, c = results["naive"], results["chunked"]
    print(f"memory ratio naive/chunked = {n['peak_bytes'] / c['peak_bytes']:.1f}x   (goal >= 8x)")
    print(f"time ratio chunked/naive   = {c['seconds'] / n['seconds']:.2f}x   (goal <= 1.3x)")


if __name__ == "__main__":
    main()
