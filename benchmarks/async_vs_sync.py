"""Asynchronous vs synchronous RL: samples/s of the RL phase and trainer idle fraction, measured in one invocation.

Both runs use the same config and every component (actors, engine, trainer); only ``pipeline.mode`` differs.
In ``sync`` mode a batch is generated, scored, trained and the weights published before the next batch
is admitted (max_lag 0); in ``async`` mode generation continues while the trainer learns, bounded by
``pipeline.max_lag``. Samples/s counts the RL phase only (engine start-up, SFT and evaluations excluded).
With ``--repeats N`` the modes alternate (sync, async, async, sync, ...) so that a shared machine's load
drifts into both sides alike; the ratio printed is median(async) / median(sync), with each pair's ratio.

    python benchmarks/async_vs_sync.py                                   # tiny CPU config, torch engine, 40 steps each
    python benchmarks/async_vs_sync.py --config configs/tiny_cpu.yaml --steps 60 pipeline.max_lag=2
    python benchmarks/async_vs_sync.py --repeats 2 rollout.engine=vllm model.preset=tiny-qwen3moe   # vLLM for CPU
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path


def _run(config: str, mode: str, steps: int, overrides: list[str], root: Path) -> dict:
    from zaya_rl.config import load_config
    from zaya_rl.pipeline.run import train

    cfg = load_config(config, [
        f"run_dir={root}", f"pipeline.mode={mode}", f"pipeline.total_steps={steps}", "sft.enabled=false",
        "eval.num_problems=4", "logging.wandb_mode=disabled", "logging.progress_bar=false", "logging.plots=false",
        "checkpoint.every_steps=0", *overrides,
    ])  # fmt: skip
    r = train(cfg)
    return {"samples_per_s": r["rl_samples_per_s"], "rl_seconds": r["rl_seconds"],
            "trainer_idle_frac": round(r["trainer_idle_frac"], 3), "samples_trained": r["samples_trained"],
            "dropped": r["samples_dropped"]}  # fmt: skip


def _order(repeats: int) -> list[str]:
    """sync, async, async, sync, sync, async, ...: each mode goes first equally often."""
    pairs = [("sync", "async") if i % 2 == 0 else ("async", "sync") for i in range(repeats)]
    return [m for p in pairs for m in p]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/tiny_cpu.yaml")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--repeats", type=int, default=1, help="runs of each mode, alternating")
    p.add_argument("overrides", nargs="*", help="key.sub=value applied to every run")
    args = p.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    runs: dict[str, list[dict]] = {"sync": [], "async": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i, mode in enumerate(_order(args.repeats)):
            runs[mode].append(_run(args.config, mode, args.steps, args.overrides, Path(tmp) / f"{mode}{i}"))
            print(mode, json.dumps(runs[mode][-1]), flush=True)
    med = {m: statistics.median(r["samples_per_s"] for r in rs) for m, rs in runs.items()}
    idle = {m: statistics.median(r["trainer_idle_frac"] for r in rs) for m, rs in runs.items()}
    pairs = [round(a["samples_per_s"] / s["samples_per_s"], 2) for a, s in zip(runs["async"], runs["sync"], strict=True)]
    print(json.dumps({"config": args.config, "overrides": args.overrides, "steps": args.steps, "runs": runs}, indent=1))
    print(f"async/sync samples/s ratio: {med['async'] / med['sync']:.2f}x (median {med['async']:.1f} vs "
          f"{med['sync']:.1f}; per pair {pairs}; trainer idle: async {idle['async']:.2f}, sync {idle['sync']:.2f})")


if __name__ == "__main__":
    main()
