"""Token log-probs at ZAYA's vocabulary (262,272): peak memory and time of forward+backward, every implementation
against naive ``log_softmax``.

Variants: ``naive`` (``log_softmax(h Wᵀ / T)`` under autograd; with ``--fp32`` the bf16 GEMM's logits are cast to
fp32, the cheapest naive fp32 head), ``chunked`` (``token_logprobs(impl="chunked")``, the reference), ``cce`` and
``liger`` (the fused kernels behind ``token_logprobs``, CUDA only) and ``cce_filtered`` (cut-cross-entropy with
its default gradient filtering, not used by the trainer: shown for what it would buy). A variant that cannot run
here (no CUDA, package missing, an fp32 head Liger cannot give) is reported with the reason, not measured.

Each variant runs in a fresh subprocess, so one variant's allocations cannot hide another's peak. Peak = the
increase over the inputs already allocated: on CUDA ``torch.cuda.max_memory_allocated`` minus the allocation
just before a forward+backward that follows one untimed warm-up at full size (Triton autotuning, cuBLAS
workspaces); on CPU the peak resident set (``ru_maxrss``) after the first forward+backward minus the resident
set just before it (one size per process). Time = median of ``--repeats`` further passes. Every variant computes
gradients for the hidden states and the (tied) output weight, as in training.

    python benchmarks/logprobs_memory.py                         # CPU, N=2048, H=256 (fits in 24 GiB)
    python benchmarks/logprobs_memory.py --device cuda --tokens 8192 16384 --hidden 2048 --dtype bfloat16 --fp32

The last line printed is one JSON object with every figure (``ratios[N][variant]``: ``memory_x`` = naive's
peak / the variant's, ``time_x`` = the variant's time / naive's; goal >= 8x and <= 1.1x).
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

ZAYA_VOCAB = 262_272
GOAL_MEMORY_X, GOAL_TIME_X = 8.0, 1.1


def naive(hidden, weight, targets, args):
    logits = hidden @ weight.T
    if args.fp32:
        logits = logits.float()
    logp = torch.log_softmax(logits / args.temperature, dim=-1)
    return logp.gather(-1, targets[:, None]).squeeze(-1)


def _token_logprobs(impl):
    def run(hidden, weight, targets, args):
        from zaya_rl.algorithms.logprobs import token_logprobs

        return token_logprobs(hidden, weight, targets, args.temperature, args.chunk_size, fp32=args.fp32, impl=impl)

    return run


def cce_filtered(hidden, weight, targets, args):
    from zaya_rl.algorithms.fused_logprobs import cce_logprobs

    return cce_logprobs(hidden, weight, None, targets, 1.0 / args.temperature, grad_filter=True)


VARIANTS = {
    "naive": naive,
    "chunked": _token_logprobs("chunked"),
    "cce": _token_logprobs("cce"),
    "cce_filtered": cce_filtered,
    "liger": _token_logprobs("liger"),
}


def _why_not(name: str, args: argparse.Namespace) -> str:
    """Why variant ``name`` cannot run with these arguments ("" if it can)."""
    if name in ("naive", "chunked"):
        return ""
    from zaya_rl.algorithms.fused_logprobs import unsupported

    kernel = "cce" if name == "cce_filtered" else name
    return unsupported(kernel, device=torch.device(args.device), weight_dtype=getattr(torch, args.dtype),
                       fp32=args.fp32, has_bias=False)


def _current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure(args: argparse.Namespace, tokens: int) -> dict[str, float]:
    """One variant at ``tokens`` rows in this process: its peak-memory increase and median time."""
    fn, dev, dtype = VARIANTS[args.worker], args.device, getattr(torch, args.dtype)
    g = torch.Generator(device=dev).manual_seed(0)
    hidden = torch.randn(tokens, args.hidden, device=dev, dtype=dtype, generator=g).requires_grad_(True)
    # in place: a temporary of W's size here would raise the process's peak before the baseline is taken
    weight = torch.randn(args.vocab, args.hidden, device=dev, dtype=dtype, generator=g).mul_(0.02)
    weight.requires_grad_(True)
    targets = torch.randint(0, args.vocab, (tokens,), device=dev, generator=g)
    upstream = torch.randn(tokens, device=dev, generator=g)

    def step():
        hidden.grad = weight.grad = None
        (fn(hidden, weight, targets, args) * upstream).sum().backward()
        _sync(dev)

    if dev == "cuda":  # full-size warm-up (autotuning, workspaces), then exact allocator statistics
        step()
        hidden.grad = weight.grad = None
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        peak = torch.cuda.max_memory_allocated() - before
    else:  # load kernels with tiny tensors, so that nothing of the real size predates the baseline
        tiny_w = weight[:64].detach().clone().requires_grad_(True)
        fn(hidden[:8].detach().clone().requires_grad_(True), tiny_w, targets[:8] % 64, args).sum().backward()
        before = _current_rss_bytes()
        step()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before  # Linux reports KiB
    print(json.dumps({"tokens": tokens, "peak_bytes": peak}), flush=True)  # kept if the timing runs out of time
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {"peak_bytes": peak, "seconds": statistics.median(times)}


def _run_worker(name: str, sizes: list[int], argv: list[str], timeout: float) -> dict[int, dict]:
    cmd = [sys.executable, __file__, *argv, "--worker", name, "--tokens", *map(str, sizes)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        stdout, error = proc.stdout, f"exit {proc.returncode}: " + (proc.stderr.strip().splitlines() or ["?"])[-1][:300]
    except subprocess.TimeoutExpired as e:
        stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else e.stdout or ""
        error = f"timed out after {timeout:.0f} s"
    got: dict[int, dict] = {}
    for line in stdout.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            got[int(r["tokens"])] = r  # the last line of a size wins (memory first, then memory and time)
    return {n: got[n] if "seconds" in got.get(n, {}) else {**got.get(n, {}), "error": error} for n in sizes}


def _strip_tokens(argv: list[str]) -> list[str]:
    """argv without ``--tokens N...`` (each worker gets its own sizes)."""
    out, skip = [], False
    for a in argv:
        if a == "--tokens":
            skip = True
            continue
        if skip and not a.startswith("--"):
            continue
        skip = False
        out.append(a)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, nargs="+", default=[2048], help="N, rows of hidden states (several allowed)")
    p.add_argument("--hidden", type=int, default=256, help="H")
    p.add_argument("--vocab", type=int, default=ZAYA_VOCAB, help="V (ZAYA: 262,272)")
    p.add_argument("--chunk-size", type=int, default=128,
                   help="rows per chunk of the chunked variant (128: as the figures on record; the trainer's default is 1024)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--fp32", action="store_true", help="fp32 logits for bf16 inputs (every variant)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--repeats", type=int, default=3, help="timed passes after the measured one")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--timeout", type=float, default=240, help="seconds per worker process")
    p.add_argument("--worker", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        for n in args.tokens:
            print(json.dumps({"tokens": n, **measure(args, n)}), flush=True)
        return
    argv = _strip_tokens(sys.argv[1:])
    results: dict[int, dict[str, dict]] = {n: {} for n in args.tokens}
    for name in ["naive", *[v for v in args.variants if v != "naive"]]:
        why = _why_not(name, args)
        if why:
            for n in args.tokens:
                results[n][name] = {"skipped": why}
            continue
        # CUDA: one process for every size (exact allocator statistics); CPU: one per size (ru_maxrss only rises)
        groups = [args.tokens] if args.device == "cuda" else [[n] for n in args.tokens]
        for sizes in groups:
            for n, r in _run_worker(name, sizes, argv, args.timeout).items():
                results[n][name] = r
    ratios: dict[int, dict[str, dict]] = {}
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"H={args.hidden} V={args.vocab} dtype={args.dtype} fp32={args.fp32} T={args.temperature} "
          f"chunk={args.chunk_size} device={device_name}")
    for n, by_variant in results.items():
        print(f"\nN={n}: one fp32 [N x V] logits tensor = {n * args.vocab * 4 / 1e9:.2f} GB")
        print(f"{'variant':<13} {'peak extra':>11} {'fwd+bwd':>9} {'memory x':>9} {'time x':>7}")
        base = by_variant.get("naive", {})
        ratios[n] = {}
        for name, r in by_variant.items():
            if "peak_bytes" not in r:
                print(f"{name:<13} {r.get('skipped') or r.get('error')}")
                continue
            row = {}
            if "peak_bytes" in base:
                row["memory_x"] = base["peak_bytes"] / max(r["peak_bytes"], 1)
            if "seconds" in base and "seconds" in r:
                row["time_x"] = r["seconds"] / base["seconds"]
            ratios[n][name] = row
            mem = f"{row['memory_x']:.1f}x" if "memory_x" in row else "-"
            tim = f"{row['time_x']:.2f}x" if "time_x" in row else "-"
            secs = f"{r['seconds']:>7.3f} s" if "seconds" in r else f"{'-':>9}"
            print(f"{name:<13} {r['peak_bytes'] / 1e9:>8.3f} GB {secs} {mem:>9} {tim:>7}  {r.get('error', '')}")
    print(f"\ngoal: memory x >= {GOAL_MEMORY_X:g}, time x <= {GOAL_TIME_X:g} (naive = 1)")
    print(json.dumps({"device": device_name, "hidden": args.hidden, "vocab": args.vocab, "dtype": args.dtype,
                      "fp32": args.fp32, "temperature": args.temperature, "results": results, "ratios": ratios,
                      "goal": {"memory_x": GOAL_MEMORY_X, "time_x": GOAL_TIME_X}}))


if __name__ == "__main__":
    main()
