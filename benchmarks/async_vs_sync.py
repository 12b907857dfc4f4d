"""Asynchronous vs synchronous RL: samples/s of the RL phase and trainer idle fraction, one run each.

Both runs use the same config and every component (actors, engine, trainer); only ``pipeline.mode`` differs.
In ``sync`` mode a batch is generated, scored, trained and the weights published before the next batch
is admitted (max_lag 0); in ``async`` mode generation continues while the trainer learns, bounded by
``pipeline.max_lag``. The ratio printed is measured in this one invocation.

    python benchmarks/async_vs_sync.py                                   # tiny CPU config, 40 steps each
    python benchmarks/async_vs_sync.py --config configs/tiny_cpu.yaml --steps 60 pipeline.max_lag=2
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path


def _run(config: str, mode: str, steps: int, overrides: list[str], root: Path) -> dict:
    from zaya_rl.config import load_config
    from zaya_rl.pipeline.run import train

    cfg = load_config(config, [
        f"run_dir={root / mode}", f"pipeline.mode={mode}", f"pipeline.total_steps={steps}", "sft.enabled=false",
        "eval.num_problems=4", "logging.wandb_mode=disabled", "logging.progress_bar=false", "logging.plots=false",
        "checkpoint.every_steps=0", *overrides,
    ])  # fmt: skip
    return train(cfg)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/tiny_cpu.yaml")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("overrides", nargs="*", help="key.sub=value applied to both runs")
    args = p.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    with tempfile.TemporaryDirectory() as tmp:
        res = {mode: _run(args.config, mode, args.steps, args.overrides, Path(tmp)) for mode in ("sync", "async")}
    rows = {
        mode: {"rl_seconds": r["rl_seconds"], "samples_per_s": r["rl_samples_per_s"],
               "trainer_idle_frac": round(r["trainer_idle_frac"], 3), "samples_trained": r["samples_trained"],
               "dropped": r["samples_dropped"]}
        for mode, r in res.items()
    }  # fmt: skip
    print(json.dumps(rows, indent=2))
    ratio = rows["async"]["samples_per_s"] / rows["sync"]["samples_per_s"]
    print(f"async/sync samples/s ratio: {ratio:.2f}x "
          f"(trainer idle: async {rows['async']['trainer_idle_frac']:.2f}, sync {rows['sync']['trainer_idle_frac']:.2f})")


if __name__ == "__main__":
    main()
