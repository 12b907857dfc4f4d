"""Collect the results of ``run_all.sh`` / ``run_x2.sh`` into one summary (JSON + a compact text table).

    python benchmarks/gpu/summarize.py WORK_DIR OUT_DIR

Reads ``WORK_DIR/res/*.json`` (bench outputs, env report, step exit codes) and the e2e run folders
``WORK_DIR/e2e_*/{summary.json,metrics.jsonl}``; writes ``OUT_DIR/summary.json`` and prints the table.
The e2e samples/s is measured over the RL steps only, from the record of step ``WARMUP_STEPS`` (env, default 3)
to the last one (evaluation, Ray and engine start, and the first steps' warm-up excluded), so async vs sync
compares the pipelines. ``rollout_tok_s`` is the mean of the same steps' ``perf/tokens_per_s``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

#: Optimizer steps not timed at the start of each e2e run (engine and allocator warm-up).
WARMUP_STEPS = int(os.environ.get("WARMUP_STEPS", "3"))


def rl_throughput(run_dir: Path) -> dict[str, Any]:
    """Samples/s over the RL steps of one run, plus lag and trainer idle fraction."""
    out: dict[str, Any] = {"run_dir": str(run_dir)}
    summ = run_dir / "summary.json"
    if summ.is_file():
        s = json.loads(summ.read_text())
        out.update({k: s.get(k) for k in ("optimizer_steps", "samples_trained", "samples_generated",
                                          "wall_seconds", "eval_accuracy_before", "eval_accuracy_after",
                                          "trainer_idle_frac", "mode")})
    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file():
        out["error"] = "no metrics.jsonl"
        return out
    steps = [r for r in map(json.loads, metrics.read_text().splitlines()) if "train/loss" in r]
    timed = steps[min(WARMUP_STEPS, max(len(steps) - 2, 0)) :]
    if len(timed) >= 2:
        dt = timed[-1]["time_s"] - timed[0]["time_s"]
        samples = sum(r.get("train/num_sequences") or 0 for r in timed[1:])
        out["rl_steps_timed"] = len(timed) - 1
        out["samples_per_s"] = samples / dt if dt > 0 else None
        out["rollout_tok_s"] = sum(r.get("perf/tokens_per_s", 0.0) for r in timed[1:]) / (len(timed) - 1)
        out["lag_mean"] = sum(r.get("pipeline/lag_mean", 0.0) for r in steps) / len(steps)
        out["abs_logp_diff_mean"] = sum(r.get("loss/abs_logp_diff", 0.0) for r in steps) / len(steps)
        coverage = [r["replay/coverage"] for r in steps if "replay/coverage" in r]  # router replay on
        if coverage:  # below 1: rollouts came back without routes (vLLM 0.24: zaya_rl.rollout.vllm_compat)
            out["replay_coverage_mean"] = sum(coverage) / len(coverage)
            out["replay_coverage_min"] = min(coverage)
    publish = [r["perf/publish_s"] for r in map(json.loads, metrics.read_text().splitlines()) if "perf/publish_s" in r]
    if publish:
        out["publish_s_mean"] = sum(publish) / len(publish)
    return out


def _load(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return {"error": f"{path.name}: {e}"}


def summarize(work: Path) -> dict[str, Any]:
    res = work / "res"
    summary: dict[str, Any] = {p.stem: _load(p) for p in sorted(res.glob("*.json"))}
    e2e = {p.name: rl_throughput(p) for p in sorted(work.glob("e2e_*")) if p.is_dir()}
    summary["e2e"] = e2e
    a, s = e2e.get("e2e_async", {}).get("samples_per_s"), e2e.get("e2e_sync", {}).get("samples_per_s")
    summary["async_over_sync"] = a / s if a and s else None
    return summary


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def table(s: dict[str, Any]) -> str:
    """The compact text summary printed at the end of a device call."""
    lines = ["== zaya_rl GPU summary =="]
    for name, r in s.items():
        if name in ("e2e", "async_over_sync", "steps"):
            continue
        if isinstance(r, dict):
            keys = [k for k in r if not isinstance(r[k], (dict, list)) and k not in ("traceback",)]
            lines.append(f"[{name}] " + ", ".join(f"{k}={_fmt(r[k])}" for k in keys)[:900])
            for sub in ("inflight", "canary", "pipeline", "file", "state_dict", "state_dict_per_tensor", "ipc",
                        "ipc_per_tensor", "nccl", "vllm_load", "fixed", "mixed", "effective"):
                if isinstance(r.get(sub), dict):
                    d = {k: v for k, v in r[sub].items() if k != "reps" and not isinstance(v, dict)}
                    d.update({f"{k}.ratio": v.get("ratio_median") for k, v in r[sub].items()
                              if isinstance(v, dict) and "ratio_median" in v})
                    lines.append(f"    {sub}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in d.items())[:600])
    for name, r in s.get("e2e", {}).items():
        lines.append(f"[{name}] " + ", ".join(f"{k}={_fmt(v)}" for k, v in r.items() if k != "run_dir"))
    lines.append(f"[async/sync samples/s] {_fmt(s.get('async_over_sync'))}")
    if isinstance(s.get("steps"), dict):
        lines.append("[steps] " + ", ".join(f"{k}={v}" for k, v in s["steps"].items()))
    return "\n".join(lines)


def main() -> int:
    work, out = Path(sys.argv[1]), Path(sys.argv[2])
    s = summarize(work)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(s, indent=1, default=str))
    text = table(s)
    (out / "summary.txt").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
