"""Base held-out accuracy of a real model on a config's environment mixture, greedy and sampled.

    python benchmarks/real_model_eval.py configs/smollm2_cpu.yaml -n 64 --temperatures 0 1 \\
        --out benchmarks/results/real_model_base_cpu.json --samples /tmp/smollm2_outputs.jsonl

For each environment of ``data.environments``: the pipeline's held-out problems (``MixtureSampler.eval_draws``,
seeds 2^31 + j, at the level ``zaya-rl eval`` uses), prompted exactly as a run prompts them (the model's chat
template, ``data.system_prompt``), one completion each at every temperature with the run's engine
(``rollout.engine``: vLLM for CPU here), ``rollout.sampling.max_new_tokens`` tokens, scored by the
environment's own verifier. Reported per environment and temperature: accuracy with its Wilson 95% interval,
the fraction whose answer could be extracted (``format_ok``), mean completion tokens, the fraction that hit
the budget, and the canary flag rate of the config's settings (per-environment overrides applied), measured
on the finished text (``zaya_rl.canary``). ``--samples`` keeps every completion (JSON lines) so extraction
and canary settings can be checked against real outputs (tests/environments/test_real_outputs.py);
``--rescore SAMPLES`` scores such a file again with the current verifiers and canary settings (no generation),
e.g. after a change to the answer extraction.

Why a script and not ``zaya-rl eval``: it also measures sampled accuracy, formats, lengths and the canary,
and needs no Ray.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

#: z of a two-sided 95% interval.
Z95 = 1.959963984540054


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k/n (Wilson 1927); (0, 1) for n = 0.

    Preferred to the normal approximation because accuracies near 0 or 1 with n in the hundreds are common
    here, where p ± z·sqrt(p(1-p)/n) leaves [0, 1] or collapses to a point.
    """
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def held_out_problems(cfg: Any, n: int) -> list[Any]:
    """The ``n`` held-out problems per environment that ``zaya-rl eval`` scores, generated in-process."""
    from environments.registry import get_environment
    from zaya_rl.pipeline.evaluate import eval_levels
    from zaya_rl.pipeline.run import make_sampler

    envs: dict[str, Any] = {}
    problems = []
    sampler = make_sampler(cfg)
    for d in sampler.eval_draws(n, eval_levels(cfg, sampler)):
        env = envs.setdefault(d.env, get_environment(d.env, **d.kwargs))
        problems.append(env.generate(d.seed, d.difficulty))
    return problems


def canary_flags(cfg: Any, env: str, text: str) -> bool:
    """Whether the config's canary (with the environment's overrides) flags a finished completion."""
    from zaya_rl.canary import CompressibilityCanary

    entry = next(e for e in cfg.data.environments if e.name == env)
    c = cfg.canary
    canary = CompressibilityCanary(entry.canary_threshold or c.threshold, entry.canary_patience or c.patience,
                                   c.chunk_bytes)
    return canary.feed(text)


async def generate(cfg: Any, engine: Any, tok: Any, problems: list[Any], temperatures: list[float]) -> list[tuple]:
    """One completion per problem and temperature, all on one engine in one event loop (the in-process
    vLLM frontend steps inside the loop that first used it); returns ``[(results, seconds)]`` per temperature."""
    from zaya_rl.models.tokenizer import encode_chat
    from zaya_rl.rollout.base import GenerationRequest, SamplingParams

    prompts = [encode_chat(tok, p.messages, system_prompt=cfg.data.system_prompt) for p in problems]
    out = []
    try:
        for temperature in temperatures:
            requests = [
                GenerationRequest(f"eval-T{temperature:g}-{i}", ids, SamplingParams(
                    max_new_tokens=cfg.rollout.sampling.max_new_tokens, temperature=temperature,
                    stop_token_ids=(tok.eos_token_id,), seed=cfg.seed + 1 + i))
                for i, ids in enumerate(prompts)
            ]  # fmt: skip
            t0 = time.perf_counter()
            results = await asyncio.gather(*(engine.generate(r) for r in requests))
            out.append((results, time.perf_counter() - t0))
    finally:
        await engine.close()
    return out


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-environment statistics of scored completions (module docstring)."""
    n = len(rows)
    k = sum(int(r["accuracy"] >= 1.0) for r in rows)
    lo, hi = wilson_interval(k, n)
    return {
        "n": n, "accuracy": k / n if n else 0.0, "ci95": [round(lo, 4), round(hi, 4)],
        "format_ok": sum(r["format_ok"] for r in rows) / max(n, 1),
        "mean_tokens": sum(r["tokens"] for r in rows) / max(n, 1),
        "hit_budget": sum(r["finish"] == "length" for r in rows) / max(n, 1),
        "canary_flag_rate": sum(r["canary"] for r in rows) / max(n, 1),
        "verifier_errors": sum(r["status"] != "ok" for r in rows),
    }  # fmt: skip


def score_rows(cfg: Any, envs: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Verify every row's text again (current extraction) and summarise per temperature and environment."""
    by_t: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for row in rows:
        problem = envs[row["env"]].generate(row["seed"], row["difficulty"])
        score = envs[row["env"]].verify(problem, row["text"])
        row |= {"extracted": score.extracted, "accuracy": score.accuracy, "format_ok": score.format_ok,
                "status": score.status, "canary": canary_flags(cfg, row["env"], row["text"])}
        by_t.setdefault(f"T={row['temperature']:g}", {name: [] for name in envs})[row["env"]].append(row)
    return {t: {name: summarize(r) for name, r in per_env.items()} for t, per_env in by_t.items()}


def evaluate(cfg: Any, n: int, temperatures: list[float], samples: Path | None) -> dict[str, Any]:
    """Accuracy table {temperature: {env: stats}} plus the settings it was measured with."""
    from environments.registry import get_environment
    from zaya_rl.rollout.factory import build_engine

    problems = held_out_problems(cfg, n)
    envs = {e.name: get_environment(e.name, **e.kwargs) for e in cfg.data.environments}
    table: dict[str, Any] = {}
    engine, tok = build_engine(cfg)
    generated = asyncio.run(generate(cfg, engine, tok, problems, temperatures))
    out = samples.open("w") if samples else None
    try:
        for temperature, (results, seconds) in zip(temperatures, generated, strict=True):
            rows: dict[str, list[dict[str, Any]]] = {name: [] for name in envs}
            for p, res in zip(problems, results, strict=True):
                text = tok.decode(res.token_ids, skip_special_tokens=True)
                score = envs[p.env].verify(p, text)
                row = {"env": p.env, "seed": p.seed, "difficulty": p.difficulty, "temperature": temperature,
                       "answer": p.answer, "text": text, "extracted": score.extracted, "accuracy": score.accuracy,
                       "format_ok": score.format_ok, "status": score.status, "tokens": res.num_tokens,
                       "finish": res.finish_reason, "canary": canary_flags(cfg, p.env, text)}
                rows[p.env].append(row)
                if out:
                    out.write(json.dumps(row) + "\n")
            tokens = sum(r.num_tokens for r in results)
            table[f"T={temperature:g}"] = {name: summarize(r) for name, r in rows.items()} | {
                "_throughput": {"completions": len(results), "tokens": tokens, "seconds": round(seconds, 1),
                                "tokens_per_s": round(tokens / seconds, 1)}}
            print(json.dumps({f"T={temperature:g}": table[f"T={temperature:g}"]}), flush=True)
    finally:
        if out:
            out.close()
    return {"model": cfg.model.path or cfg.model.preset, "engine": cfg.rollout.engine,
            "max_new_tokens": cfg.rollout.sampling.max_new_tokens, "problems_per_env": n,
            "environments": [e.model_dump() for e in cfg.data.environments],
            "canary": cfg.canary.model_dump(), "results": table}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="run config (its model, engine, mixture, budget and canary are used)")
    ap.add_argument("overrides", nargs="*", help="key.sub=value overrides of the config")
    ap.add_argument("-n", type=int, default=64, help="held-out problems per environment")
    ap.add_argument("--temperatures", type=float, nargs="+", default=[0.0, 1.0], help="0 = greedy")
    ap.add_argument("--out", required=True, help="result JSON")
    ap.add_argument("--samples", default=None, help="JSON lines of every completion (optional)")
    ap.add_argument("--rescore", default=None, help="score this samples file again instead of generating")
    args = ap.parse_args(argv)
    from zaya_rl.curriculum.layers import load_layered

    cfg = load_layered([args.config, *args.overrides])
    t0 = time.perf_counter()
    if args.rescore:
        result = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
        from environments.registry import get_environment

        envs = {e.name: get_environment(e.name, **e.kwargs) for e in cfg.data.environments}
        rows = [json.loads(line) for line in Path(args.rescore).read_text().splitlines() if line.strip()]
        table = score_rows(cfg, envs, rows)
        for t, per_env in table.items():  # generation throughput stays as measured
            per_env["_throughput"] = result.get("results", {}).get(t, {}).get("_throughput")
        result |= {"results": table, "rescored_from": args.rescore, "canary": cfg.canary.model_dump()}
        Path(args.rescore).write_text("".join(json.dumps(r) + "\n" for r in rows))
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(table, indent=1), flush=True)
        return 0
    result = evaluate(cfg, args.n, args.temperatures, Path(args.samples) if args.samples else None)
    result["wall_seconds"] = round(time.perf_counter() - t0, 1)
    result["command"] = " ".join(["python", "benchmarks/real_model_eval.py", *(argv or sys.argv[1:])])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
