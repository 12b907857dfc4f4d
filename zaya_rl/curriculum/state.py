"""The curriculum's own files in its run folder: ``curriculum.json``, boundary records, ``summary.json``.

``curriculum.json`` (rewritten atomically at every stage boundary)::

    {"stages": [{"index": 0, "name": "reasoning_warmup", "steps": 232, "status": "done",
                 "global_steps": [0, 232], "attempts": 1, "attempt_seconds": 812.4, "final_model": ...,
                 "result": {...per-stage summary...}}, ...]}

``status`` is ``pending``, ``running`` or ``done``; a resume skips ``done`` stages. ``metrics.jsonl`` of
the curriculum folder gets a ``curriculum/stage_start`` record when a stage (re)starts and, when it ends,
its RL step records (deduplicated by step, the last attempt winning) on the global step axis with a
``stage`` field, followed by a ``curriculum/stage_end`` record with its held-out accuracies. Each stage's
own folder keeps its full ``metrics.jsonl``, plots, checkpoints and ``summary.json``.

``stage_result`` condenses a stage's summary plus its TTC and behavioural metrics into the entry that the
curriculum summary lists per stage.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from zaya_rl.config.schema import RunConfig

STATE_FILE = "curriculum.json"
#: Keys copied from a stage run's summary into its curriculum entry.
_SUMMARY_KEYS = ("eval_accuracy_before", "eval_accuracy_after", "eval_before", "eval_after", "samples_generated",
                 "samples_trained", "samples_dropped", "samples_dropped_by_reason", "optimizer_steps",
                 "wall_seconds", "rl_seconds", "resumed_from")
#: Summed over stages into the curriculum summary.
_SUMMED = ("samples_generated", "samples_trained", "samples_dropped", "optimizer_steps")



def _global_step_offsets(cfg: RunConfig) -> list[int]:
    """Optimizer steps done before each stage starts (stage k spans offsets[k] .. offsets[k] + steps)."""
    offsets, total = [], 0
    for stage in cfg.stages:
        offsets.append(total)
        total += stage.steps
    return offsets


class CurriculumState:
    """``curriculum.json``: one entry per stage (module docstring)."""

    def __init__(self, run_dir: str | Path, stages: list[dict[str, Any]]) -> None:
        self.path = Path(run_dir) / STATE_FILE
        self.stages = stages

    @classmethod
    def load_or_new(cls, cfg: RunConfig) -> CurriculumState:
        """The saved state of ``cfg.run_dir``, or a fresh one (every stage ``pending``)."""
        path = Path(cfg.run_dir) / STATE_FILE
        if path.is_file():
            state = cls(cfg.run_dir, json.loads(path.read_text())["stages"])
            names = [(s["name"], s["steps"]) for s in state.stages]
            if names != [(s.name, s.steps) for s in cfg.stages]:
                from zaya_rl.config import ConfigError

                raise ConfigError(f"stages: {path} was written for stages {names}; the config now has "
                                  f"{[(s.name, s.steps) for s in cfg.stages]}")
            return state
        offsets = _global_step_offsets(cfg)
        return cls(cfg.run_dir, [
            {"index": k, "name": s.name, "steps": s.steps, "status": "pending", "attempts": 0,
             "attempt_seconds": 0.0, "global_steps": [offsets[k], offsets[k] + s.steps]}
            for k, s in enumerate(cfg.stages)
        ])

    @property
    def started(self) -> bool:
        return any(s["status"] != "pending" for s in self.stages)

    def done(self, index: int) -> bool:
        return self.stages[index]["status"] == "done"

    def start(self, index: int) -> None:
        self.stages[index].update(status="running", attempts=self.stages[index]["attempts"] + 1)
        self.save()

    def add_seconds(self, index: int, seconds: float) -> None:
        self.stages[index]["attempt_seconds"] = round(self.stages[index]["attempt_seconds"] + seconds, 2)
        self.save()

    def finish(self, index: int, result: dict[str, Any], final_model: str) -> None:
        self.stages[index].update(status="done", result=result, final_model=final_model)
        self.save()

    def save(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"stages": self.stages}, indent=1))
        os.replace(tmp, self.path)


def read_records(path: Path) -> list[dict[str, Any]]:
    """Scalar records of a ``metrics.jsonl`` (none when the file is missing)."""
    if not path.is_file():
        return []
    from zaya_rl.logging.metrics import read_metrics

    return read_metrics(path)


def rl_step_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per RL optimizer step (the last one written for a step wins: a resumed attempt)."""
    by_step = {r["step"]: r for r in records if "train/loss" in r}
    return [by_step[s] for s in sorted(by_step)]


def _weighted(steps: list[dict[str, Any]], key: str, weight: str) -> float | None:
    pairs = [(r[key], r.get(weight, 0.0)) for r in steps if key in r]
    total = sum(w for _, w in pairs)
    return sum(v * w for v, w in pairs) / total if total else None


def stage_result(summary: dict[str, Any], steps: list[dict[str, Any]]) -> dict[str, Any]:
    """A stage's curriculum entry: its summary's key figures plus TTC and behavioural aggregates."""
    out = {k: summary[k] for k in _SUMMARY_KEYS if k in summary}
    ttc_samples = sum(r.get("ttc/samples", 0.0) for r in steps)
    if ttc_samples:
        base = sum(r.get("ttc/base_samples", 0.0) for r in steps)
        out["ttc"] = {"sample_frac": ttc_samples / (ttc_samples + base),
                      "accuracy": _weighted(steps, "ttc/accuracy", "ttc/samples"),
                      "base_accuracy": _weighted(steps, "ttc/base_accuracy", "ttc/base_samples"),
                      "prompt_tokens": _weighted(steps, "ttc/prompt_tokens", "ttc/samples")}
    if any(r.get("behavioral/samples") for r in steps):
        out["behavioral"] = {k: _weighted(steps, f"behavioral/{k}", "behavioral/samples")
                             for k in ("rm_raw", "rm_reward", "if_reward", "reward")}
    return out


class BoundaryLog:
    """Appends curriculum records to the curriculum folder's ``metrics.jsonl`` (module docstring)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self._t0 = time.time()

    def _write(self, records: list[dict[str, Any]]) -> None:
        with self.path.open("a") as f:
            for rec in records:
                f.write(json.dumps({"time_s": round(time.time() - self._t0, 3), **rec}) + "\n")

    def stage_start(self, entry: dict[str, Any], resumed_from: str | None) -> None:
        rec = {"step": entry["global_steps"][0], "curriculum/stage_start": 1.0,
               "curriculum/stage_index": float(entry["index"]), "stage": entry["name"]}
        if resumed_from:
            rec["curriculum/resumed_from"] = resumed_from
        self._write([rec])

    def stage_end(self, entry: dict[str, Any], steps: list[dict[str, Any]]) -> None:
        g0, g1 = entry["global_steps"]
        mirrored = [{**r, "step": g0 + r["step"], "stage": entry["name"]} for r in steps]
        result = entry["result"]
        end = {"step": g1, "curriculum/stage_end": 1.0, "curriculum/stage_index": float(entry["index"]),
               "stage": entry["name"], "eval/accuracy": result["eval_accuracy_after"],
               "curriculum/eval_before/accuracy": result["eval_accuracy_before"],
               "curriculum/eval_after/accuracy": result["eval_accuracy_after"]}
        self._write([*mirrored, end])


def curriculum_summary(state: CurriculumState) -> dict[str, Any]:
    """The curriculum's ``summary.json``: per-stage entries (held-out accuracy before/after each stage, on its
    own mixture) and the sums of steps, samples and wall time."""
    stages = [{"index": s["index"], "name": s["name"], "steps": s["steps"], "global_steps": s["global_steps"],
               "attempts": s["attempts"], "attempt_seconds": s["attempt_seconds"],
               "final_model": s.get("final_model"), **s.get("result", {})} for s in state.stages]
    summary: dict[str, Any] = {k: sum(st.get(k, 0) for st in stages) for k in _SUMMED}
    summary.update({
        "curriculum": [s["name"] for s in stages],
        # wall time of the whole curriculum, actor start-up and every attempt included
        "wall_seconds": round(sum(s["attempt_seconds"] for s in stages), 2),
        "final_model": stages[-1].get("final_model"),
        "stages": stages,
    })
    return summary


def report_lines(summary: dict[str, Any]) -> list[str]:
    """What ``zaya-rl train``/``resume`` print at the end of a curriculum: one line per stage, then totals."""
    n = len(summary["stages"])
    lines = []
    for st in summary["stages"]:
        line = (f"[zaya-rl] stage {st['index'] + 1}/{n} {st['name']}: {st['optimizer_steps']} steps in "
                f"{st['attempt_seconds']:.0f} s; held-out accuracy {st['eval_accuracy_before']:.3f} -> "
                f"{st['eval_accuracy_after']:.3f}")
        if "ttc" in st:
            t = st["ttc"]
            line += (f"; TTC {t['sample_frac']:.0%} of samples, accuracy {t['accuracy'] or 0:.3f} vs "
                     f"{t['base_accuracy'] or 0:.3f} single-rollout")
        if "behavioral" in st:
            line += f"; RM reward {st['behavioral']['rm_reward']:.3f}, IF reward {st['behavioral']['if_reward']:.3f}"
        lines.append(line)
    lines.append(f"[zaya-rl] done: {n} stages, {summary['optimizer_steps']} steps in {summary['wall_seconds']:.0f} s; "
                 f"samples generated {summary['samples_generated']}, trained {summary['samples_trained']}, "
                 f"dropped {summary['samples_dropped']}; final weights {summary['final_model']}")
    return lines
