"""A run never hangs in silence: ``zaya-rl train``/``resume`` as subprocesses, on the real pipeline.

* A verifier that raises on every answer (``chaos`` with ``raise_frac: 1``) spends the error budget
  (``pipeline.max_failed_groups``): the command exits 1 within a bounded time with one message naming the
  environment and quoting the exception, and ``summary.json`` says why. ``resume`` does the same.
* Ctrl-C (SIGINT) during RL: the step in flight finishes, a checkpoint of that step and ``summary.json``
  are written, one line says where, exit code 130, no traceback. A second run resumes from it.

Slow (each run starts its own local Ray; ~1 min a run on an idle 2-core machine, 5 at load 25): run
``python -m pytest tests/pipeline/test_stopping.py -q -m slow``. The fast, in-process versions of the same
behaviour (real orchestrator and scorer) are ``test_health.py``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import wait_for_step

from zaya_rl.paths import latest_checkpoint, step_dir

REPO = Path(__file__).resolve().parents[2]
#: Bound on one tiny run's start-up and stop on a loaded 2-core machine (start-up alone took ~100 s at load 25).
RUN_TIMEOUT_S = 420


def _config(tmp_path: Path, env: dict, **pipeline) -> Path:
    cfg = {
        "run_dir": str(tmp_path / "run"),
        "rollout": {"max_batch_size": 64, "sampling": {"max_new_tokens": 6}, "resources": {"num_cpus": 0.5}},
        "algorithm": {"group_size": 4},
        "trainer": {"micro_batch_size": 32, "resources": {"num_cpus": 0.5}},
        "pipeline": {"groups_per_step": 2, "total_steps": 4, "scorer_resources": {"num_cpus": 0.5}, **pipeline},
        "data": {"environments": [env]},
        "eval": {"num_problems": 2},
        "checkpoint": {"every_steps": 0},
        "logging": {"wandb_mode": "disabled", "plots": False, "log_samples_every": 0},
        "canary": {"enabled": False},
        "ray": {"num_cpus": 2},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _zaya(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": ""}
    return subprocess.Popen([sys.executable, "-m", "zaya_rl.cli", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen, timeout_s: float = RUN_TIMEOUT_S) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"no exit within {timeout_s} s (the run hangs); stderr tail:\n{err[-3000:]}")
    return proc.returncode, out, err


def _last_line(err: str) -> str:
    return [line for line in err.splitlines() if line.strip()][-1]


@pytest.mark.slow
def test_an_always_failing_verifier_stops_train_and_resume_with_one_message(tmp_path):
    cfg = _config(tmp_path, {"name": "chaos", "kwargs": {"raise_frac": 1.0}}, max_failed_groups=3)
    for args in (["train", str(cfg)], ["resume", str(tmp_path / "run")]):
        code, _, err = _finish(_zaya(*args))
        last = _last_line(err)
        assert code == 1, err[-3000:]
        assert last.startswith("zaya-rl: environment 'chaos' failed 3 groups in a row"), last
        assert "RuntimeError: chaos: injected verifier exception" in last, last
        assert "Traceback" not in err, err[-3000:]
        assert re.search(r"rl:\s+0%.*err=\d+\]", err), err[-3000:]  # the bar counted the errors
        summary = json.loads((tmp_path / "run" / "summary.json").read_text())
        assert summary["status"] == "failed" and "chaos" in summary["stop_reason"]
        assert summary["optimizer_steps"] == 0 and summary["env_errors"] >= 3 * 4
        assert summary["samples_generated"] == summary["samples_trained"] + summary["samples_dropped"]


@pytest.mark.slow
def test_sigint_stops_cleanly_with_a_checkpoint_and_a_summary(tmp_path):
    cfg = _config(tmp_path, {"name": "arithmetic", "difficulty": 0}, total_steps=200)
    proc = _zaya("train", str(cfg))
    try:
        wait_for_step(tmp_path / "run", 1, timeout_s=RUN_TIMEOUT_S)  # RL is running
    except TimeoutError:
        proc.kill()
        pytest.fail(f"no RL step: {proc.communicate()[1][-3000:]}")
    proc.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    code, out, err = _finish(proc, timeout_s=120)
    assert code == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    steps = summary["optimizer_steps"]
    assert summary["status"] == "interrupted" and 1 <= steps < 200, summary
    ckpt = latest_checkpoint(tmp_path / "run" / "checkpoints")
    assert ckpt == step_dir(tmp_path / "run" / "checkpoints", steps)  # the step reached, complete
    assert json.loads((ckpt / "orchestrator.json").read_text())["step"] == steps
    assert _last_line(err) == (f"zaya-rl: interrupted at step {steps}/200: checkpoint {ckpt}, summary "
                               f"{tmp_path / 'run' / 'summary.json'}; continue with `zaya-rl resume {tmp_path / 'run'}`")
    assert summary["samples_generated"] == summary["samples_trained"] + summary["samples_dropped"]
    print(f"stopped {time.monotonic() - t0:.1f} s after SIGINT")
    code, out, err = _finish(_zaya("resume", str(tmp_path / "run"), f"pipeline.total_steps={steps + 1}"))
    assert code == 0, err[-3000:]
    resumed = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert resumed["status"] == "completed" and resumed["resumed_from"] == str(ckpt)
    assert resumed["optimizer_steps"] == steps + 1
    assert out.splitlines()[-1].startswith(f"[zaya-rl] results in {tmp_path / 'run'}: summary.json"), out
    log_lines = (tmp_path / "run" / "train.log").read_text().splitlines()
    assert log_lines and all(line[:4].isdigit() for line in log_lines)  # one timestamped record per line


@pytest.mark.slow
def test_rl_time_limit_ends_the_run_as_finished_with_the_evaluation_after(tmp_path):
    """``pipeline.rl_time_limit_s``: RL stops at the limit, then the run ends like one that reached total_steps
    (exit 0, evaluation after RL, final checkpoint, ``status: completed``), not like an interrupted one."""
    cfg = _config(tmp_path, {"name": "arithmetic", "difficulty": 0}, total_steps=100_000, rl_time_limit_s=10)
    code, out, err = _finish(_zaya("train", str(cfg)))
    assert code == 0, err[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    steps = summary["optimizer_steps"]
    assert summary["status"] == "completed" and summary["rl_time_limit_reached"] and 1 <= steps < 100_000, summary
    assert summary["eval_after"] is not None and summary["stop_reason"] is None
    assert 10 <= summary["rl_seconds"] < 10 + 60, summary  # the step in flight finishes after the limit
    assert latest_checkpoint(tmp_path / "run" / "checkpoints") == step_dir(tmp_path / "run" / "checkpoints", steps)
    assert summary["samples_generated"] == summary["samples_trained"] + summary["samples_dropped"]
