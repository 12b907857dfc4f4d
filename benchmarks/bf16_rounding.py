"""How much of an RL gain survives the cast of the trainer's float32 weights to a bfloat16 rollout engine,
by round-to-nearest against stochastic rounding (``weight_sync.rounding``, ``zaya_rl.weights.rounding``).

    python benchmarks/bf16_rounding.py --base models/smollm2-135m-instruct \\
        --trained runs/smollm2_cpu/checkpoints/step_000019/model --config runs/smollm2_cpu/config.yaml

``--base``: the starting checkpoint (bfloat16, as imported); ``--trained``: a float32 checkpoint of an RL run
from it. Writes the trained weights rounded both ways (float32 files holding bfloat16 values, so the
evaluation engine runs them in ``--config``'s dtype) and evaluates base, trained, nearest and stochastic with
``zaya-rl eval --config`` (greedy, the config's held-out problems). Prints, per variant, held-out accuracy,
the share of weights equal to the base and the share of the trained gain kept (``kept = (acc - base) /
(trained - base)``); ``--out`` writes the JSON record.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from zaya_rl.weights.rounding import rollout_cast


def write_rounded(folder: Path, weights: dict[str, torch.Tensor], out: Path, rounding: str,
                  base: dict[str, torch.Tensor]) -> float:
    """``weights`` (``folder``'s) cast to bfloat16 by ``rounding``, stored as float32 in ``out`` beside a copy
    of ``folder``'s other files (config, tokenizer); returns the share of weights equal to ``base``."""
    shutil.copytree(folder, out, ignore=shutil.ignore_patterns("*.safetensors"), dirs_exist_ok=True)
    cast = rollout_cast("bfloat16", rounding, seed=0, version=1)  # type: ignore[arg-type]
    rounded = {k: cast(v.float()).float().contiguous() for k, v in weights.items()}
    save_file(rounded, str(out / "model.safetensors"), metadata={"format": "pt"})
    return same_as_base(rounded, base)


def same_as_base(weights: dict[str, torch.Tensor], base: dict[str, torch.Tensor]) -> float:
    same = sum(int((weights[k].float() == base[k].float()).sum()) for k in base)
    return same / sum(t.numel() for t in base.values())


def evaluate(config: Path, model: Path, run_dir: Path) -> dict[str, float]:
    """``zaya-rl eval`` of ``model`` with ``config``'s engine, tasks and held-out problems."""
    cmd = [sys.executable, "-m", "zaya_rl.cli", "eval", str(config), f"model.path={model}", f"run_dir={run_dir}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    start = out.rfind("\n{\n")  # the result is the last JSON object printed (indented)
    return json.loads(out[start + 1 if start >= 0 else 0 :])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, required=True)
    ap.add_argument("--trained", type=Path, required=True)
    ap.add_argument("--config", type=Path, required=True, help="the run's config (engine, tasks, eval)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/zaya_bf16_rounding"))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    base = load_file(str(args.base / "model.safetensors"))
    trained = load_file(str(args.trained / "model.safetensors"))
    variants = {"base": (args.base, 1.0), "trained_fp32": (args.trained, same_as_base(trained, base))}
    for rounding in ("nearest", "stochastic"):
        folder = args.work / f"bf16_{rounding}"
        variants[f"bf16_{rounding}"] = (folder, write_rounded(args.trained, trained, folder, rounding, base))
    record: dict = {"base": str(args.base), "trained": str(args.trained), "config": str(args.config),
                    "date": time.strftime("%Y-%m-%d"), "variants": {}}
    for name, (folder, same) in variants.items():
        t0 = time.perf_counter()
        acc = evaluate(args.config, folder, args.work / f"eval_{name}")
        record["variants"][name] = {"accuracy": acc, "same_as_base_frac": round(same, 4),
                                    "eval_s": round(time.perf_counter() - t0, 1)}
    b = record["variants"]["base"]["accuracy"]["accuracy"]
    t = record["variants"]["trained_fp32"]["accuracy"]["accuracy"]
    print(f"{'variant':16} {'held-out':>9} {'= base':>8} {'gain kept':>10}")
    for name, v in record["variants"].items():
        a = v["accuracy"]["accuracy"]
        v["gain_kept"] = None if t == b else round((a - b) / (t - b), 3)
        kept = "-" if v["gain_kept"] is None else f"{v['gain_kept']:.2f}"
        print(f"{name:16} {a:9.3f} {v['same_as_base_frac']:8.3f} {kept:>10}")
    if args.out is not None:
        args.out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
