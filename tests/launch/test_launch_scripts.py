"""The three launch modes of docs/cluster.md: launch/local.sh, launch/submit.sh (Ray Jobs), launch/slurm.sbatch.

Fast tests check what fails before any Ray process starts (syntax, usage, config and run_dir errors, the
runtime env, the readiness wait's timeout). Slow tests run each mode end to end on this host:

* ``local.sh`` starts a private Ray head, trains, and stops exactly that head;
* ``submit.sh`` submits to a head started here with its dashboard (the job API), through
  ``launch/runtime_env.yaml`` (working_dir upload, per-job pip virtualenv, env vars);
* ``slurm.sbatch`` runs under a fake ``srun``/``scontrol`` (tests/launch/fake_slurm: every node is this
  host) with two nodes and token authentication, places the rollout worker on the worker node by its
  custom resource, and tears the cluster down on exit.

Slow: ``python -m pytest tests/launch -m slow``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / "launch"
FAKE_SLURM = Path(__file__).resolve().parent / "fake_slurm"
SCRIPTS = [LAUNCH / "local.sh", LAUNCH / "submit.sh", LAUNCH / "slurm.sbatch"]
#: A run small enough for 2 cores (the tiny model; no SFT; two optimizer steps).
TINY = ["pipeline.total_steps=2", "pipeline.groups_per_step=2", "algorithm.group_size=4", "sft.enabled=false",
        "eval.num_problems=2", "checkpoint.every_steps=0", "logging.plots=false", "logging.progress_bar=false",
        "logging.wandb_mode=disabled"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    return {**env, **extra}


def _sh(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def _ray_processes_on(port: int) -> list[str]:
    """Command lines of live processes of the Ray instance whose GCS listens on ``port`` (read-only)."""
    marks = (f":{port} ", f"={port} ", f":{port}\0", f"={port}\0")
    out = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmd = cmdline.read_bytes().decode(errors="replace") + "\0"
        except OSError:
            continue
        if any(m in cmd for m in marks) and "pytest" not in cmd:
            out.append(cmd.replace("\0", " "))
    return out


# ------------------------------------------------------------------ fast: before any Ray process starts
@pytest.mark.parametrize("script", [*SCRIPTS, *FAKE_SLURM.iterdir()], ids=lambda p: p.name)
def test_shell_syntax(script):
    assert _sh(["bash", "-n", str(script)], _env()).returncode == 0
    if shutil.which("shellcheck"):
        proc = _sh(["shellcheck", "-s", "bash", str(script)], _env())
        assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_help_prints_usage(script):
    proc = _sh(["bash", str(script), "--help"], _env())
    assert proc.returncode == 0 and f"launch/{script.name}" in proc.stdout and "#" not in proc.stdout[:2]


def test_submit_needs_an_address_and_an_absolute_run_dir():
    no_address = _sh([str(LAUNCH / "submit.sh"), "configs/tiny_cpu.yaml"], _env())
    assert no_address.returncode != 0 and "RAY_ADDRESS" in no_address.stderr
    env = _env(RAY_ADDRESS="http://127.0.0.1:1")  # never contacted: both errors come first
    relative = _sh([str(LAUNCH / "submit.sh"), "configs/tiny_cpu.yaml", "run_dir=runs/x"], env)
    assert relative.returncode == 2 and "run_dir=runs/x is relative" in relative.stderr
    bad = _sh([str(LAUNCH / "submit.sh"), "configs/tiny_cpu.yaml", "run_dir=/tmp/x", "pipeline.max_lag=-1"], env)
    assert bad.returncode != 0 and "pipeline.max_lag" in bad.stderr


def test_runtime_env_does_not_clash_with_the_drivers():
    from zaya_rl.pipeline.setup import ACTOR_ENV

    env = yaml.safe_load((LAUNCH / "runtime_env.yaml").read_text())
    assert env["working_dir"] == "."
    assert not set(env["env_vars"]) & set(ACTOR_ENV), "Ray refuses a job whose driver sets the same env var"
    assert all(isinstance(v, str) for v in env["env_vars"].values())
    (req,) = env["pip"]["packages"]
    assert (REPO / req.removeprefix("-r ${RAY_RUNTIME_ENV_CREATE_WORKING_DIR}/")).is_file()


def test_slurm_config_error_stops_before_any_node_is_touched(tmp_path):
    calls = tmp_path / "srun_calls"
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text(f"#!/usr/bin/env bash\necho \"$*\" >> {calls}\n")
    (fake / "srun").chmod(0o755)
    shutil.copy(FAKE_SLURM / "scontrol", fake / "scontrol")
    env = _env(PATH=f"{fake}:{os.environ['PATH']}", SLURM_JOB_NODELIST="a,b", SLURM_SUBMIT_DIR=str(REPO))
    proc = _sh(["bash", str(LAUNCH / "slurm.sbatch"), "configs/examples/multinode.yaml", "rollout.num_workers=0"],
               env)
    assert proc.returncode == 2 and "rollout.num_workers" in proc.stderr
    assert not calls.exists()


def test_wait_for_ray_reports_missing_nodes_and_times_out():
    sys.path.insert(0, str(LAUNCH))
    try:
        from wait_for_ray import missing
    finally:
        sys.path.remove(str(LAUNCH))
    assert missing(3, {"rollout_node": 2.0}, 3, {"rollout_node": 2}) == []
    assert missing(2, {"rollout_node": 1.0}, 3, {"rollout_node": 2, "GPU": 8}) == [
        "2/3 nodes alive", "rollout_node: 1/2", "GPU: 0/8"]
    t0 = time.monotonic()
    proc = _sh([sys.executable, str(LAUNCH / "wait_for_ray.py"), "--address", f"127.0.0.1:{_free_port()}",
                "--timeout", "1"], _env(), timeout=30)
    assert proc.returncode == 1 and "no Ray head listens" in proc.stderr
    assert time.monotonic() - t0 < 20


# ------------------------------------------------------------------ slow: each mode end to end
@pytest.mark.slow
def test_local_sh_starts_trains_and_stops_its_own_head(tmp_path):
    port = _free_port()
    proc = _sh([str(LAUNCH / "local.sh"), "configs/tiny_cpu.yaml", f"run_dir={tmp_path}", *TINY],
               _env(NUM_CPUS="2", RAY_PORT=str(port), RAY_AUTH_MODE="disabled"), timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"started a Ray head at 127.0.0.1:{port}" in proc.stdout
    assert json.loads((tmp_path / "summary.json").read_text())["optimizer_steps"] == 2
    time.sleep(2)
    assert not _ray_processes_on(port), "the head started by local.sh outlived the run"


@pytest.fixture
def head_with_dashboard(tmp_path):
    """A Ray head with the job API, started (and stopped, by its pid) here."""
    port, dash, agent = _free_port(), _free_port(), _free_port()
    env = _env(RAY_AUTH_MODE="disabled")
    head = subprocess.Popen(
        ["ray", "start", "--head", "--block", f"--port={port}", "--num-cpus=2", "--include-dashboard=true",
         f"--dashboard-port={dash}", f"--dashboard-agent-listen-port={agent}", "--disable-usage-stats"],
        env=env, stdout=open(tmp_path / "head.log", "w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while _sh(["curl", "-sf", f"http://127.0.0.1:{dash}/api/version"], env).returncode != 0:
            assert head.poll() is None and time.monotonic() < deadline, (tmp_path / "head.log").read_text()
            time.sleep(1)
        yield f"http://127.0.0.1:{dash}", port
    finally:
        head.send_signal(signal.SIGTERM)
        head.wait(timeout=120)


@pytest.mark.slow
def test_submit_sh_runs_the_job_with_the_runtime_env(head_with_dashboard, tmp_path):
    address, port = head_with_dashboard
    proc = _sh([str(LAUNCH / "submit.sh"), "configs/tiny_cpu.yaml", f"run_dir={tmp_path}", *TINY],
               _env(RAY_ADDRESS=address, RAY_AUTH_MODE="disabled", SUBMISSION_ID="zaya-rl-test"), timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Job 'zaya-rl-test' succeeded" in proc.stdout + proc.stderr
    assert json.loads((tmp_path / "summary.json").read_text())["optimizer_steps"] == 2


@pytest.mark.slow
def test_slurm_sbatch_on_two_fake_nodes_with_token_auth(tmp_path):
    port, dash = _free_port(), _free_port()
    env = _env(
        PATH=f"{FAKE_SLURM}:{os.environ['PATH']}", SLURM_JOB_NODELIST="node-a,node-b", SLURM_SUBMIT_DIR=str(REPO),
        SLURM_CPUS_PER_TASK="2", RAY_PORT=str(port), DASHBOARD_PORT=str(dash), READY_TIMEOUT="240",
        # Two Ray nodes on one host need distinct agent ports (on a real cluster they are on different hosts).
        HEAD_START_ARGS=f"--dashboard-agent-listen-port={_free_port()}",
        WORKER_START_ARGS=f"--dashboard-agent-listen-port={_free_port()}",
    )
    env.pop("RAY_AUTH_MODE", None)  # the template's default: token auth with a fresh token
    proc = _sh(["bash", str(LAUNCH / "slurm.sbatch"), "configs/examples/multinode.yaml", f"run_dir={tmp_path}",
                "rollout.num_workers=1", *TINY], env, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert "auth token" in out and "2 nodes" in out and "Ray cluster stopped" in out
    assert json.loads((tmp_path / "summary.json").read_text())["optimizer_steps"] == 2
    time.sleep(2)
    assert not _ray_processes_on(port), "Ray processes outlived the SLURM job"
