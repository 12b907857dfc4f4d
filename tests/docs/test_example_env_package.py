"""The worked example of docs/environments.md: a separate package adds an environment through an entry point.

``examples/zaya-env-example`` is pip-installed into a temporary ``--target`` folder (never into the shared
venv) that reaches the CLI, Ray's workers and the verifier processes through ``PYTHONPATH``; nothing in the
repository names ``max_digit``. Then ``zaya-rl envs list/check`` see it, the package's own tests pass, and
(slow) a tiny ``zaya-rl train`` with it in the mixture completes and reports its accuracy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "zaya-env-example"


def _run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> dict[str, str]:
    """Install a copy of the example package (the build writes into its source folder) to a temp target."""
    tmp = tmp_path_factory.mktemp("plugin")
    src, target = tmp / "src", tmp / "site"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps", "--no-index",
         "--target", str(target), str(src)],
        check=True, capture_output=True, timeout=180,
    )
    path = os.pathsep.join(p for p in (str(target), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled",
            "WANDB_MODE": "disabled", "EXAMPLE_SRC": str(src)}


def test_installed_package_registers_and_passes_envs_check(plugin_env):
    zaya = [sys.executable, "-m", "zaya_rl.cli"]
    listing = _run([*zaya, "envs", "list", "--category", "example"], plugin_env).stdout
    row = next(line.split() for line in listing.splitlines() if line.startswith("max_digit"))
    assert row == ["max_digit", "example", "0..10", "zaya-env-example"]
    check = _run([*zaya, "envs", "check", "max_digit", "--difficulties", "0", "5", "10", "-n", "4"], plugin_env)
    assert "1 PASS, 0 FAIL" in check.stdout, check.stdout
    tests = Path(plugin_env["EXAMPLE_SRC"]) / "tests"
    _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)], plugin_env)


def test_without_the_package_the_name_is_unknown():
    """The control: the environment comes from the install above, not from this repository."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "zaya_rl.cli", "envs", "sample", "max_digit"], env=env,
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode != 0 and "unknown environment 'max_digit'" in proc.stderr + proc.stdout


@pytest.mark.slow
def test_tiny_train_with_the_plugin_in_the_mixture(plugin_env, tmp_path):
    run_dir = tmp_path / "run"
    _run([sys.executable, "-m", "zaya_rl.cli", "train", "configs/tiny_cpu.yaml", f"run_dir={run_dir}",
          "data.environments=[{name: max_digit, difficulty: 0}, {name: arithmetic}]",
          "pipeline.total_steps=2", "pipeline.groups_per_step=2", "algorithm.group_size=4",
          "sft.enabled=false", "eval.num_problems=4", "checkpoint.every_steps=0",
          "logging.plots=false", "logging.progress_bar=false"], plugin_env, timeout=600)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["optimizer_steps"] == 2
    assert set(summary["eval_after"]) >= {"max_digit", "arithmetic"}
    assert summary["samples_generated"] == summary["samples_trained"] + summary["samples_dropped"]
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("env/max_digit/accuracy" in m for m in metrics), "no rollout of the plugin environment was scored"
