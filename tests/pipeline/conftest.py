"""Shared fixtures of the pipeline tests: one local Ray instance per module, a tiny fast run config."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from zaya_rl.config import config_from_dict


@pytest.fixture(scope="module")
def ray_local():
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=256 * 2**20, log_to_driver=False,
             runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}})
    yield ray
    ray.shutdown()


def tiny_run_config(run_dir: Path, *overrides: str, **sections):
    """A run of a few seconds per step: tiny ZAYA, arithmetic, 4 groups of 4 per step, no SFT, no plots."""
    data = {
        "run_dir": str(run_dir),
        "rollout": {"max_batch_size": 64, "sampling": {"max_new_tokens": 6}, "resources": {"num_cpus": 0.5}},
        "algorithm": {"group_size": 4},
        "trainer": {"micro_batch_size": 32, "resources": {"num_cpus": 0.5}},
        "pipeline": {"groups_per_step": 4, "total_steps": 6, "scorer_resources": {"num_cpus": 0.5},
                     "verify_timeout_s": 5.0},
        "data": {"environments": [{"name": "arithmetic", "difficulty": 0}]},
        "eval": {"num_problems": 4},
        "checkpoint": {"every_steps": 2, "keep_last": 2},
        "logging": {"wandb_mode": "disabled", "progress_bar": False, "plots": False, "log_samples_every": 0},
        "canary": {"enabled": False},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return config_from_dict(data, list(overrides))


def wait_for_step(run_dir: Path, step: int, timeout_s: float = 300.0) -> None:
    """Block until ``metrics.jsonl`` holds an RL step record with ``step >= step``."""
    path = Path(run_dir) / "metrics.jsonl"
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if path.exists():
            for line in path.read_text().splitlines():
                rec = json.loads(line)
                if "train/loss" in rec and rec["step"] >= step:
                    return
        time.sleep(0.2)
    raise TimeoutError(f"no RL step {step} in {path} after {timeout_s} s")


def assert_books_balance(summary: dict, *, steps: int, batch: int, full_groups: bool = True) -> None:
    """generated == trained + dropped; every step trained ``batch`` samples (fewer when rollouts were
    excluded from their groups, e.g. by verifier errors: ``full_groups=False``)."""
    assert summary["optimizer_steps"] == steps
    if full_groups:
        assert summary["samples_trained"] == steps * batch, summary
    else:
        assert 0 < summary["samples_trained"] <= steps * batch, summary
    assert summary["samples_generated"] == summary["samples_trained"] + summary["samples_dropped"], summary
    assert summary["samples_dropped"] == sum(summary["samples_dropped_by_reason"].values())
