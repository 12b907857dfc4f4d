"""Turn real-model runs into ``real_model_<machine>.json``, a learning-curve PNG and a short Markdown note.

    python benchmarks/real_model_report.py --async-run runs/smollm2_cpu [--sync-run DIR] [--rsa DIR] \\
        --device "2-core CPU (shared)" --out benchmarks/results/real_model_cpu.json

Reads each run folder's ``summary.json`` (held-out accuracy before/after per environment, samples, wall
time), ``config.yaml`` and ``metrics.jsonl`` (per-step training accuracy), and an ``zaya-rl rsa eval`` output
folder's ``rsa_eval.json``. Intervals are Wilson 95% (``real_model_eval.wilson_interval``) over the
``eval.num_problems`` held-out problems of each environment. The JSON follows issue 12 item 8; a field that
was not measured is null and ``not_measured`` says why. The PNG is written beside the JSON (same stem).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_model_eval import wilson_interval  # noqa: E402


def _load_run(run_dir: Path) -> dict[str, Any]:
    import yaml

    summary = json.loads((run_dir / "summary.json").read_text())
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {"summary": summary, "cfg": cfg, "records": [r for r in records if isinstance(r, dict)]}


def _accuracy(ev: dict[str, float], tasks: list[str], n: int) -> dict[str, Any]:
    """Per task and macro mean, each with its Wilson interval (the mean's over all tasks' problems)."""
    out: dict[str, Any] = {}
    for t in tasks:
        k = round(ev[t] * n)
        out[t] = {"accuracy": round(ev[t], 4), "ci95": [round(x, 4) for x in wilson_interval(k, n)]}
    k_all = sum(round(ev[t] * n) for t in tasks)
    out["mean"] = {"accuracy": round(ev["accuracy"], 4),
                   "ci95": [round(x, 4) for x in wilson_interval(k_all, n * len(tasks))]}
    return out


def _curve(records: list[dict[str, Any]], tasks: list[str]) -> dict[str, list]:
    steps, acc = [], {t: [] for t in tasks}
    for r in records:
        if "train/loss" in r or "rollout/accuracy" in r:
            if all(f"env/{t}/accuracy" in r for t in tasks):
                steps.append(r["step"])
                for t in tasks:
                    acc[t].append(r[f"env/{t}/accuracy"])
    return {"step": steps, **acc}


#: Per-step seconds summarised by ``step_timing`` (``docs/concepts.md`` §4 says what each one times).
TIMING_KEYS = ("perf/train_compute_s", "perf/train_call_s", "perf/publish_s")


def step_timing(records: list[dict[str, Any]]) -> dict[str, float | None]:
    """Medians over a run's optimizer steps: the interval between steps and each of ``TIMING_KEYS`` (None where
    the run did not log it)."""
    import statistics

    times = [r["time_s"] for r in records if "train/loss" in r and "time_s" in r]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    out: dict[str, float | None] = {"step_interval_s": round(statistics.median(gaps), 4) if gaps else None}
    for key in TIMING_KEYS:
        vals = [r[key] for r in records if isinstance(r.get(key), (int, float))]
        out[key.removeprefix("perf/")] = round(statistics.median(vals), 4) if vals else None
    return out


def build(async_run: Path, sync_run: Path | None, rsa: Path | None, device: str) -> dict[str, Any]:
    """The issue-12 record of one machine (module docstring)."""
    a = _load_run(async_run)
    tasks = [e["name"] for e in a["cfg"]["data"]["environments"]]
    n = a["cfg"]["eval"]["num_problems"]
    s = a["summary"]
    before = _accuracy(s["eval_before"], tasks, n)
    # a run killed by its time box before the evaluation after RL has a summary without one
    after = _accuracy(s["eval_after"], tasks, n) if s.get("eval_after") else {t: {"accuracy": None, "ci95": None}
                                                                              for t in before}
    out: dict[str, Any] = {
        "model": a["cfg"]["model"]["path"], "device": device, "engine": a["cfg"]["rollout"]["engine"],
        "tasks": [{"name": e["name"], "difficulty": e.get("difficulty", 0), "kwargs": e.get("kwargs", {})}
                  for e in a["cfg"]["data"]["environments"]],
        "held_out_problems": n,
        "accuracy_before": {t: v["accuracy"] for t, v in before.items()},
        "ci95_before": {t: v["ci95"] for t, v in before.items()},
        "accuracy_after": {t: v["accuracy"] for t, v in after.items()},
        "ci95_after": {t: v["ci95"] for t, v in after.items()},
        "gain_points": {t: None if after[t]["accuracy"] is None
                        else round(100 * (after[t]["accuracy"] - before[t]["accuracy"]), 1) for t in after},
        "wall_seconds": s["wall_seconds"], "rl_seconds": s["rl_seconds"],
        "samples_trained": s["samples_trained"], "optimizer_steps": s["optimizer_steps"],
        "samples_generated": s["samples_generated"], "samples_dropped_by_reason": s["samples_dropped_by_reason"],
        "mode": s["mode"], "max_lag": s["max_lag"],
        "settings": {k: a["cfg"][k] for k in ("algorithm", "optim", "pipeline") if k in a["cfg"]}
        | {"sampling": a["cfg"]["rollout"]["sampling"], "canary": a["cfg"].get("canary")},
        "curve": {"async": _curve(a["records"], tasks)},
        "step_timing": {"async": step_timing(a["records"])},
        "sync_accuracy_after": None, "rsa": None, "trl": None,
        "not_measured": {"trl": "not part of this run: benchmarks/trl_vs_zaya.py compares TRL GRPOTrainer on the same config"},
    }  # fmt: skip
    if not s.get("eval_after"):
        out["not_measured"]["accuracy_after"] = f"the async run ended before its evaluation after RL ({s.get('status')})"
    b = _load_run(sync_run) if sync_run is not None and (sync_run / "summary.json").is_file() else None
    if b is not None and b["summary"].get("eval_after"):
        sa = _accuracy(b["summary"]["eval_after"], tasks, n)
        out["sync_accuracy_after"] = {t: v["accuracy"] for t, v in sa.items()}
        out["sync_ci95_after"] = {t: v["ci95"] for t, v in sa.items()}
        out["sync_accuracy_before"] = {t: v["accuracy"] for t, v in
                                       _accuracy(b["summary"]["eval_before"], tasks, n).items()}
        out["sync"] = {k: b["summary"][k] for k in ("wall_seconds", "rl_seconds", "samples_trained",
                                                     "optimizer_steps", "mode", "max_lag")}
        out["curve"]["sync"] = _curve(b["records"], tasks)
        out["step_timing"]["sync"] = step_timing(b["records"])
    else:
        out["not_measured"]["sync_accuracy_after"] = "no sync run finished" if sync_run else "no sync run made"
    if rsa is not None and (rsa / "rsa_eval.json").is_file():
        r = json.loads((rsa / "rsa_eval.json").read_text())
        first, last, n_rsa = r["rounds"][0], r["rounds"][-1], r["settings"]["num_problems"]
        out["rsa"] = {
            "env": r["settings"]["env"], "problems": n_rsa, "settings": r["settings"]["rsa"],
            # round 0: single rollouts at budget β (mean over the N candidates); last round: the RSA answer
            "single_rollout_accuracy": first["mean_accuracy"], "majority_at_n_accuracy": first["majority_accuracy"],
            "rsa_accuracy": last["majority_accuracy"],
            "rsa_ci95": [round(x, 4) for x in wilson_interval(round(last["majority_accuracy"] * n_rsa), n_rsa)],
            "rounds": r["rounds"],
        }  # fmt: skip
    else:
        out["not_measured"]["rsa"] = "no rsa eval finished" if rsa else "no rsa eval made"
    return out


def plot(record: dict[str, Any], png: Path) -> None:
    """Training accuracy per step (T=1 rollouts) per task, with held-out before/after (greedy) and intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t["name"] for t in record["tasks"]]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.6), squeeze=False)
    for ax, t in zip(axes[0], tasks, strict=True):
        for mode, style in (("async", "-"), ("sync", "--")):
            c = record["curve"].get(mode)
            if c and c["step"]:
                ax.plot(c["step"], c[t], style, label=f"train rollouts ({mode})", alpha=0.8)
        last = max((record["curve"][m]["step"][-1] for m in record["curve"] if record["curve"][m]["step"]),
                   default=1)
        for x, key, label in ((0, "before", "held-out before"), (last, "after", "held-out after (async)")):
            acc, ci = record[f"accuracy_{key}"][t], record[f"ci95_{key}"][t]
            if acc is None:  # not measured (the record's not_measured says why)
                continue
            lo, hi = ci
            ax.errorbar([x], [acc], yerr=[[acc - lo], [hi - acc]], fmt="o", capsize=4, label=label)
        if record.get("sync_accuracy_after"):
            acc, (lo, hi) = record["sync_accuracy_after"][t], record["sync_ci95_after"][t]
            sync_steps = record["curve"].get("sync", {}).get("step")
            ax.errorbar([sync_steps[-1] if sync_steps else last], [acc], yerr=[[acc - lo], [hi - acc]], fmt="s", capsize=4,
                        label="held-out after (sync)")
        ax.set_title(t)
        ax.set_xlabel("optimizer step")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy")
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.suptitle(f"{Path(record['model']).name} on {record['device']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def markdown(record: dict[str, Any]) -> str:
    """A short table: per task before/after (with intervals), sync after, samples and wall time."""
    n = record["held_out_problems"]
    lines = [f"# {Path(record['model']).name}: held-out accuracy before and after RL ({record['device']})", "",
             f"{n} held-out problems per task (greedy), Wilson 95% intervals; {record['samples_trained']} "
             f"samples trained in {record['optimizer_steps']} steps, {record['wall_seconds']:.0f} s wall "
             f"({record['rl_seconds']:.0f} s RL), mode {record['mode']}, max_lag {record['max_lag']}.", "",
             "| task | before | after | gain (points) | sync after |", "|---|---|---|---|---|"]
    for t in record["accuracy_before"]:
        b, a = record["accuracy_before"][t], record["accuracy_after"][t]
        bl, bh = record["ci95_before"][t]
        after = "-" if a is None else f"{a:.3f} [{record['ci95_after'][t][0]:.3f}, {record['ci95_after'][t][1]:.3f}]"
        gain = "-" if a is None else f"{record['gain_points'][t]:+.1f}"
        sync = record["sync_accuracy_after"][t] if record.get("sync_accuracy_after") else None
        lines.append(f"| {t} | {b:.3f} [{bl:.3f}, {bh:.3f}] | {after} | {gain} | "
                     f"{'-' if sync is None else f'{sync:.3f}'} |")
    if record.get("sync"):  # a sync run cut by its time limit trained fewer samples: say how many
        b = record["sync"]
        lines.append(f"\nSync run (`max_lag: 0`): {b['samples_trained']} samples in {b['optimizer_steps']} steps, "
                     f"{b['rl_seconds']:.0f} s of RL.")
    if record.get("rsa"):
        r = record["rsa"]
        lines.append(f"\nMarkovian RSA on the trained model ({r['env']}, {r['problems']} problems, N="
                     f"{r['settings']['num_candidates']}, β={r['settings']['budget']}, τ={r['settings']['tail_tokens']}, "
                     f"C={r['settings']['tails_per_prompt']}, {r['settings']['aggregation_rounds']} round(s), "
                     f"T={r['settings']['temperature']}): single rollout {r['single_rollout_accuracy']:.3f}, "
                     f"majority@N {r['majority_at_n_accuracy']:.3f}, RSA {r['rsa_accuracy']:.3f} "
                     f"[{r['rsa_ci95'][0]:.3f}, {r['rsa_ci95'][1]:.3f}]."
                     + (f" Model: {record['rsa_model']}." if record.get("rsa_model") else ""))
    if record.get("async_vs_sync_same_time"):
        e = record["async_vs_sync_same_time"]
        mean = lambda acc: sum(acc.values()) / len(acc)  # noqa: E731 - tasks weigh equally (same n each)
        lines.append("\nAsync vs sync (`max_lag: 0`), samples/s over each run's RL time: "
                     + "; ".join(f"{m} {e[m]['samples_trained']} samples in {e[m]['optimizer_steps']} steps and "
                                 f"{e[m]['rl_seconds']:.0f} s ({e[m]['rl_samples_per_s']:.1f}/s), held-out after "
                                 f"{mean(e[m]['accuracy_after']):.3f}" for m in ("async", "sync"))
                     + f"; {e['async_over_sync_samples_per_s']:.2f}× samples/s ({e['source']}).")
    if record.get("trl"):
        r = record["trl"]
        acc = ("held-out after not measured" if r["accuracy_after"] is None else
               f"held-out after {r['accuracy_after']:.3f} (TRL) vs {r['zaya_accuracy_after']:.3f} (zaya-rl) on "
               f"{r['held_out_problems_per_task']} problems per task")
        lines.append(f"\nTRL `GRPOTrainer` on the same config, {r['samples']} samples each: {r['wall_seconds']:.1f} s vs "
                     f"{r['zaya_wall_seconds']:.1f} s for zaya-rl's loop ({r['speedup_loop']:.2f}×; whole processes "
                     f"{r['speedup_process']:.2f}×), {acc}" + (f" ({r['note']})" if r.get("note") else "") + ".")
    for mode, t in record.get("step_timing", {}).items():
        lines.append(f"\nStep timing ({mode}, medians in s): " + ", ".join(f"{k} {v}" for k, v in t.items() if v is not None) + ".")
    for key, why in record["not_measured"].items():
        lines.append(f"\nNot measured: `{key}`: {why}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--async-run", required=True, type=Path, help="run folder of the (async) training run")
    ap.add_argument("--sync-run", type=Path, default=None, help="run folder of the max_lag=0 run")
    ap.add_argument("--rsa", type=Path, default=None, help="zaya-rl rsa eval output folder")
    ap.add_argument("--device", required=True, help="machine, in words")
    ap.add_argument("--extra", type=Path, default=None, help="JSON object merged into the record")
    ap.add_argument("--out", required=True, type=Path, help="result JSON (PNG and .md beside it)")
    args = ap.parse_args(argv)
    record = build(args.async_run, args.sync_run, args.rsa, args.device)
    if args.extra is not None and args.extra.is_file():
        record |= json.loads(args.extra.read_text())
        # what the extra record supplies is measured after all
        record["not_measured"] = {k: v for k, v in record["not_measured"].items() if record.get(k) is None}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    plot(record, args.out.with_suffix(".png"))
    args.out.with_suffix(".md").write_text(markdown(record))
    print(markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
