"""Reliability drills on a real (tiny) run: a killed rollout worker, bad verifiers, a killed trainer.

Each run uses local Ray, the tiny ZAYA model and the torch engine, so it exercises the same code path as
``zaya-rl train``. Run: ``python -m pytest tests/pipeline/test_reliability.py -q``.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
from conftest import assert_books_balance, tiny_run_config, wait_for_step

from zaya_rl.paths import latest_checkpoint
from zaya_rl.pipeline.actors import actor_name
from zaya_rl.pipeline.run import resume, train

BATCH = 16  # groups_per_step 4 × group_size 4


def _kill_later(ray, cfg, role: str, step: int, errors: list) -> threading.Thread:
    """SIGKILL the ``role`` actor once RL step ``step`` is logged; a rollout worker only while it is decoding
    (else, on a loaded machine, the kill could land between two batches with nothing to resubmit)."""

    def run() -> None:
        try:
            wait_for_step(cfg.run_dir, step)
            handle = ray.get_actor(actor_name(cfg, role))
            pid = ray.get(handle.pid.remote())  # before the wait: no round trip between "decoding" and the kill
            deadline = time.time() + 60
            while role == "rollout" and ray.get(handle.groups_in_flight.remote()) == 0:
                if time.time() > deadline:
                    raise TimeoutError("the rollout worker had no group in flight for 60 s after the step")
                time.sleep(0.005)
            os.kill(pid, signal.SIGKILL)
        except Exception as e:  # surfaced by the test
            errors.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_killed_rollout_worker_is_restarted_and_nothing_is_lost(ray_local, tmp_path):
    cfg = tiny_run_config(tmp_path / "run", "pipeline.max_lag=2")
    errors: list = []
    killer = _kill_later(ray_local, cfg, "rollout", step=2, errors=errors)
    summary = train(cfg)
    killer.join(timeout=5)
    assert not errors, errors
    assert summary["worker_restarts"] >= 1
    assert summary["groups_resubmitted"] >= 1  # the groups it was decoding were generated again
    assert_books_balance(summary, steps=6, batch=BATCH)


def test_raising_hanging_and_crashing_verifiers_become_errors_and_the_run_goes_on(ray_local, tmp_path):
    chaos = {"name": "chaos", "kwargs": {"raise_frac": 0.15, "hang_frac": 0.03, "crash_frac": 0.03}}
    cfg = tiny_run_config(tmp_path / "run", "pipeline.verify_timeout_s=1.0", "pipeline.scorer_processes=2",
                          data={"environments": [chaos]})
    summary = train(cfg)
    assert summary["samples_dropped_by_reason"].get("verifier_error", 0) > 0
    assert_books_balance(summary, steps=6, batch=BATCH, full_groups=False)


def test_killed_trainer_resumes_from_its_checkpoint_with_the_same_books(ray_local, tmp_path):
    cfg = tiny_run_config(tmp_path / "run")
    errors: list = []
    killer = _kill_later(ray_local, cfg, "trainer", step=3, errors=errors)
    with pytest.raises(Exception, match="(?i)actor|died|unavailable"):
        train(cfg)
    killer.join(timeout=5)
    assert not errors, errors
    latest = latest_checkpoint(tmp_path / "run" / "checkpoints")  # complete ones only, never a .tmp
    assert latest is not None
    saved = json.loads((latest / "orchestrator.json").read_text())
    summary = resume(tmp_path / "run")
    assert summary["resumed_from"] == str(latest)
    assert_books_balance(summary, steps=6, batch=BATCH)
    # the books continue from the checkpoint: its counts are included, not restarted from zero
    assert summary["samples_trained"] - saved["accounting"]["trained"] == (6 - saved["step"]) * BATCH
    assert summary["eval_accuracy_before"] == saved["run"]["eval_before"]["accuracy"]
