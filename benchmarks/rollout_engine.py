"""Throughput of ``TorchEngine`` against a plain transformers ``generate`` loop, same model, prompts and batch.

    python benchmarks/rollout_engine.py                      # tiny-zaya, CPU, both workloads
    python benchmarks/rollout_engine.py --preset tiny-qwen3moe --device cuda --batch 64 --requests 256

Two workloads, both sampling at T = 1 from the same left-padded prompts of mixed lengths:

- ``fixed``: ``--batch`` prompts, exactly ``--new-tokens`` tokens each (no stop token; ``generate`` gets
  ``min_new_tokens``). Both sides do the same work; this measures per-step overhead.
- ``mixed``: ``--requests`` prompts with ``--stop-tokens`` stop tokens and a budget of ``--max-new`` tokens,
  so lengths spread like RL rollouts (geometric, most short, a tail up to the budget). ``generate`` runs
  them in static batches of ``--batch`` and each batch decodes until its longest row stops; the engine keeps
  ``--batch`` rows decoding and admits the next request as soon as one stops (continuous batching).
  Tokens counted: every sampled token up to and including the stop (``generate``'s padding is not).

The engine additionally returns behaviour log-probs, versions and (routing on) routed experts, which
``generate`` does not. The machine may be shared, so the sides are interleaved, ``--repeats`` times after
one warm-up of each, and the ratios are computed from the medians (and the best runs) of this invocation.
On a CPU the tokens per CPU-second of this process (``time.process_time``; one torch thread) are reported
too: other processes' load stretches wall time but not the CPU time a side needs (``cpu_ratio_median``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from zaya_rl.models.policy import load_policy  # noqa: E402
from zaya_rl.rollout.base import GenerationRequest, SamplingParams, run_requests  # noqa: E402
from zaya_rl.rollout.torch_engine import TorchEngine  # noqa: E402


def _prompts(n: int) -> list[list[int]]:
    return [[257, 260, *[(7 * i + 3 * j) % 256 for j in range(4 + i % 13)], 258, 261] for i in range(n)]


def _engine_run(model, tok, prompts, *, batch, max_new, stop, exact, record, seed):
    def run() -> int:
        engine = TorchEngine(model, tok, max_batch_size=batch, record_routing=record, seed=seed)
        reqs = [GenerationRequest(f"r{i}", p, SamplingParams(max_new_tokens=max_new, stop_token_ids=stop, seed=seed + i))
                for i, p in enumerate(prompts)]  # fmt: skip
        results = run_requests(engine, reqs)
        assert not exact or all(len(r.token_ids) == max_new for r in results)
        return sum(len(r.token_ids) for r in results)

    return run


def generate_run(model, tok, prompts, *, batch, max_new, stop, exact, seed):
    chunks = [prompts[i : i + batch] for i in range(0, len(prompts), batch)]
    inputs = []
    for chunk in chunks:
        width = max(len(p) for p in chunk)
        ids = torch.tensor([[tok.pad_token_id] * (width - len(p)) + p for p in chunk], device=model.device)
        starts = torch.tensor([width - len(p) for p in chunk], device=model.device)
        inputs.append((ids, (torch.arange(width, device=model.device)[None, :] >= starts[:, None]).long()))
    stops = torch.tensor(list(stop) or [-1], device=model.device)

    def run() -> int:
        torch.manual_seed(seed)
        tokens = 0
        for ids, mask in inputs:
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_p=1.0,
                                 top_k=0, max_new_tokens=max_new, min_new_tokens=max_new if exact else 0,
                                 eos_token_id=list(stop) or None, pad_token_id=tok.pad_token_id)  # fmt: skip
            new = out[:, ids.shape[1] :]
            hit = torch.isin(new, stops)
            first = torch.where(hit.any(1), hit.int().argmax(1) + 1, torch.full_like(hit[:, 0], new.shape[1], dtype=torch.long))
            tokens += int(first.sum())
            assert not exact or new.shape[1] == max_new
        return tokens

    return run


def _interleaved(sides: dict, repeats: int) -> dict[str, tuple[list[float], list[float]]]:
    """(tokens per wall second, tokens per CPU second) of each side, ``repeats`` rounds after a warm-up;
    the order rotates every round."""
    names = list(sides)
    for fn in sides.values():
        with torch.inference_mode():
            fn()
    out: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n in names}
    for r in range(repeats):
        for n in names[r % len(names) :] + names[: r % len(names)]:
            with torch.inference_mode():
                t0, c0 = time.perf_counter(), time.process_time()
                tokens = sides[n]()
                out[n][0].append(tokens / (time.perf_counter() - t0))
                out[n][1].append(tokens / (time.process_time() - c0))
    return out


def _report(workload: str, rates: dict[str, tuple[list[float], list[float]]], cpu: bool) -> dict:
    base, base_cpu = rates["generate"]
    rows = {}
    for name, (r, c) in rates.items():
        rows[name] = {"median_tok_s": round(statistics.median(r)), "best_tok_s": round(max(r)),
                      "ratio_median": round(statistics.median(r) / statistics.median(base), 3),
                      "ratio_best": round(max(r) / max(base), 3)}  # fmt: skip
        line = (f"  {workload:5s} {name:26s}: median {rows[name]['median_tok_s']:7d} tok/s, best "
                f"{rows[name]['best_tok_s']:7d}   ratio median {rows[name]['ratio_median']:.2f}, best "
                f"{rows[name]['ratio_best']:.2f}")
        if cpu:
            rows[name]["cpu_ratio_median"] = round(statistics.median(c) / statistics.median(base_cpu), 3)
            line += f", per CPU-second {rows[name]['cpu_ratio_median']:.2f}"
        print(line, flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny-zaya")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=64, help="fixed workload: tokens per prompt")
    ap.add_argument("--requests", type=int, default=128, help="mixed workload: prompts")
    ap.add_argument("--max-new", type=int, default=256, help="mixed workload: budget per prompt")
    ap.add_argument("--stop-tokens", type=int, default=4, help="mixed workload: this many byte tokens stop a row")
    ap.add_argument("--workloads", default="fixed,mixed")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (rollout actors use 1)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = load_policy(args.preset, device=args.device)
    model.eval()
    print(f"{args.preset} on {args.device}, {args.threads} thread(s), batch {args.batch}, {args.repeats} rounds")
    result = {"preset": args.preset, "device": args.device, "batch": args.batch}
    stop = tuple(range(100, 100 + args.stop_tokens))  # byte tokens, none of them in the prompts' opening
    shapes = {"fixed": (_prompts(args.batch), args.new_tokens, (), True),
              "mixed": (_prompts(args.requests), args.max_new, stop, False)}  # fmt: skip
    for workload in args.workloads.split(","):
        prompts, max_new, stops, exact = shapes[workload]
        kw = dict(batch=args.batch, max_new=max_new, stop=stops, exact=exact, seed=0)
        sides = {"generate": generate_run(model, tok, prompts, **kw),
                 "engine (routing recorded)": _engine_run(model, tok, prompts, record=True, **kw),
                 "engine (no routing)": _engine_run(model, tok, prompts, record=False, **kw)}  # fmt: skip
        result[workload] = _report(workload, _interleaved(sides, args.repeats), args.device == "cpu")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
