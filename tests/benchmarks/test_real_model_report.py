"""benchmarks/real_model_eval.py (Wilson intervals) and benchmarks/real_model_report.py on a synthetic run folder.

python -m pytest tests/benchmarks/test_real_model_report.py -q
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from real_model_eval import wilson_interval  # noqa: E402
from real_model_report import main as report_main  # noqa: E402
from real_model_report import step_timing


def _score_roots(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson's interval from its definition: the p with (k/n - p)^2 = z^2 p (1 - p) / n (a quadratic)."""
    import numpy as np

    phat = k / n
    roots = np.roots([1 + z * z / n, -(2 * phat + z * z / n), phat * phat])
    return float(min(roots.real)), float(max(roots.real))


@pytest.mark.parametrize("k, n", [(5, 10), (0, 64), (16, 64), (256, 256), (37, 256)])
def test_wilson_interval_solves_the_score_equation(k, n):
    assert wilson_interval(k, n) == pytest.approx(_score_roots(k, n), abs=1e-9)
    if (k, n) == (5, 10):
        assert wilson_interval(k, n) == pytest.approx((0.2366, 0.7634), abs=1e-4)  # the textbook example


def _fake_run(path: Path, before: dict, after: dict, mode: str) -> Path:
    path.mkdir(parents=True)
    envs = [{"name": "rg/chain_sum", "difficulty": 0, "kwargs": {"answer_format": "number"}},
            {"name": "rg/basic_arithmetic", "difficulty": 0, "kwargs": {}}]
    cfg = {"model": {"path": "models/smollm2-135m-instruct"}, "rollout": {"engine": "vllm", "sampling": {}},
           "data": {"environments": envs}, "eval": {"num_problems": 64}, "algorithm": {}, "optim": {}, "pipeline": {}}
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    summary = {"eval_before": before, "eval_after": after, "wall_seconds": 100.0, "rl_seconds": 80.0,
               "samples_trained": 256, "optimizer_steps": 2, "samples_generated": 260,
               "samples_dropped_by_reason": {"stale": 4}, "mode": mode, "max_lag": 1 if mode == "async" else 0}
    (path / "summary.json").write_text(json.dumps(summary))
    recs = [{"step": s, "train/loss": 0.1, "env/rg/chain_sum/accuracy": 0.2 * s, "env/rg/basic_arithmetic/accuracy": 0.1}
            for s in (1, 2)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def test_report_writes_the_issue_schema_with_intervals(tmp_path, capsys):
    before = {"rg/chain_sum": 0.25, "rg/basic_arithmetic": 0.125, "accuracy": 0.1875, "errors": 0.0}
    after = {"rg/chain_sum": 0.5, "rg/basic_arithmetic": 0.25, "accuracy": 0.375, "errors": 0.0}
    a = _fake_run(tmp_path / "async", before, after, "async")
    s = _fake_run(tmp_path / "sync", before, {**after, "rg/chain_sum": 0.4375, "accuracy": 0.34375}, "sync")
    out = tmp_path / "res" / "real_model_x.json"
    assert report_main(["--async-run", str(a), "--sync-run", str(s), "--rsa", str(tmp_path / "none"),
                        "--device", "test", "--out", str(out)]) == 0
    rec = json.loads(out.read_text())
    for key in ("model", "device", "engine", "tasks", "held_out_problems", "accuracy_before", "accuracy_after",
                "ci95_after", "sync_accuracy_after", "wall_seconds", "samples_trained", "rsa", "trl"):
        assert key in rec, key
    assert rec["accuracy_after"]["rg/chain_sum"] == 0.5 and rec["gain_points"]["rg/chain_sum"] == 25.0
    assert rec["ci95_after"]["rg/chain_sum"] == pytest.approx(wilson_interval(32, 64), abs=1e-4)
    assert rec["ci95_after"]["mean"] == pytest.approx(wilson_interval(48, 128), abs=1e-4)  # pooled problems
    assert rec["sync_accuracy_after"]["rg/chain_sum"] == 0.4375
    assert rec["rsa"] is None and "rsa" in rec["not_measured"] and rec["trl"] is None
    assert rec["curve"]["async"]["step"] == [1, 2] and out.with_suffix(".png").stat().st_size > 1000
    assert "| rg/chain_sum | 0.250" in out.with_suffix(".md").read_text()


def test_step_timing_takes_medians_of_the_logged_seconds():
    recs = [{"step": 0, "time_s": 1.0, "eval/before/accuracy": 0.1},
            {"step": 1, "time_s": 3.0, "train/loss": 0.1, "perf/train_compute_s": 0.5, "perf/train_call_s": 0.7},
            {"step": 1, "time_s": 3.1, "perf/publish_s": 0.2},
            {"step": 2, "time_s": 4.0, "train/loss": 0.1, "perf/train_compute_s": 0.4, "perf/train_call_s": 0.6},
            {"step": 3, "time_s": 7.0, "train/loss": 0.1, "perf/train_compute_s": 0.9, "perf/train_call_s": 1.2,
             "perf/publish_s": 0.4}]
    assert step_timing(recs) == {"step_interval_s": 2.0, "train_compute_s": 0.5, "train_call_s": 0.7,
                                 "publish_s": 0.3}
    assert step_timing(recs[:1]) == {"step_interval_s": None, "train_compute_s": None, "train_call_s": None,
                                     "publish_s": None}
