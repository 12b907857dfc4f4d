"""``zaya-rl train``, ``zaya-rl resume`` and ``zaya-rl eval`` (heavy imports happen inside the handlers)."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="run RL from a config file (key.sub=value overrides; run_dir=DIR)")
    t.add_argument("config", help="YAML config, e.g. configs/tiny_cpu.yaml")
    t.add_argument("overrides", nargs="*", help="key.sub=value (validated before any actor starts); further YAML "
                   "files are deep-merged over the first, e.g. configs/zaya1/_base.yaml configs/zaya1/_stages.yaml")
    t.set_defaults(handler=_train)
    r = sub.add_parser("resume", help="continue a run from its newest complete checkpoint")
    r.add_argument("run_dir")
    r.add_argument("overrides", nargs="*", help="key.sub=value, e.g. pipeline.total_steps=200")
    r.set_defaults(handler=_resume)
    e = sub.add_parser("eval", help="held-out accuracy of a run's newest checkpoint (or of a config's start model); "
                       "several targets are scored one after the other, in one engine where their models allow")
    e.add_argument("target", help="a run folder, a checkpoint folder, or a YAML config")
    e.add_argument("more", nargs="*", metavar="TARGET|OVERRIDE",
                   help="more targets, then key.sub=value overrides applied to each, e.g. eval.num_problems=200")
    e.set_defaults(handler=_eval)


def _train(args: argparse.Namespace) -> int:
    from zaya_rl.curriculum.layers import load_layered

    cfg = load_layered([args.config, *args.overrides])  # fails here, before Ray, on any config error
    from zaya_rl.pipeline.run import train

    _report(train(cfg))
    return 0


def _resume(args: argparse.Namespace) -> int:
    from zaya_rl.pipeline.run import resume

    _report(resume(args.run_dir, args.overrides))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from zaya_rl.pipeline.run import evaluate_targets

    targets = [args.target, *(a for a in args.more if "=" not in a)]
    overrides = [a for a in args.more if "=" in a]
    results = dict(evaluate_targets([(t, t, overrides) for t in targets]))
    print(json.dumps(results[args.target] if len(targets) == 1 else results, indent=2))
    return 0


def _report(summary: dict) -> None:
    if "curriculum" in summary:  # one line per stage (zaya_rl.curriculum.state.report_lines)
        from zaya_rl.curriculum.state import report_lines

        print("\n".join(report_lines(summary)), flush=True)
    else:
        before, after = summary["eval_accuracy_before"], summary["eval_accuracy_after"]
        ratio = f"{after / before:.2f}x" if before > 0 else "n/a (before = 0)"
        print(
            f"[zaya-rl] done: {summary['optimizer_steps']} steps in {summary['wall_seconds']:.0f} s; held-out "
            f"accuracy {before:.3f} -> {after:.3f} ({ratio}); samples generated {summary['samples_generated']}, "
            f"trained {summary['samples_trained']}, dropped {summary['samples_dropped']}",
            flush=True,
        )
        for w in summary.get("warnings", []):
            print(f"[zaya-rl] warning (step {w['step']}): {w['message']}", flush=True)
    print(results_line(summary), flush=True)


def results_line(summary: dict) -> str:
    """Where a finished run's results are (the last line ``zaya-rl train``/``resume`` print)."""
    run_dir = summary["run_dir"]
    return (f"[zaya-rl] results in {run_dir}: summary.json, metrics.jsonl (every step), train.log, plots/; "
            f"final weights {summary.get('final_model') or 'none'}; `zaya-rl eval {run_dir}` re-evaluates them")
