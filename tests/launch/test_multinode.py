"""Multi-node runs on one machine: placement from config, and losing a rollout node mid-run.

A ``ray.cluster_utils.Cluster`` starts several Ray nodes (one raylet each) on this host, labelled with the
custom resources of ``configs/examples/multinode.yaml``:

    head     {"scorer_node": 1}    the driver (orchestrator) and the scorer
    trainer  {"trainer_node": 1}   the trainer
    rollout  {"rollout_node": 1}   x 3: two rollout workers and one spare

The tests assert that every actor lands where its config's resource request sends it (node ids differ as
configured), and that removing the node of a rollout worker mid-run is survived the way a dead rollout
worker is: Ray restarts the worker on the spare node, the group it was generating is resubmitted, the run
finishes and the sample accounting balances. The run joins the cluster through ``ray.address`` (the
path ``ray job submit`` and ``launch/*.sh`` take).

Slow (Ray nodes take ~10-20 s each to start on the 2-core box): ``python -m pytest tests/launch -m slow``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from zaya_rl.config import load_config  # noqa: E402

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "configs" / "examples" / "multinode.yaml"
#: Small enough for 2 cores, long enough that the node is removed while the run is in its RL loop.
TINY = [
    "pipeline.total_steps=6", "pipeline.groups_per_step=2", "algorithm.group_size=4",
    "rollout.sampling.max_new_tokens=24", "eval.num_problems=2", "checkpoint.every_steps=3",
    "logging.wandb_mode=disabled", "logging.plots=false", "logging.progress_bar=false",
    "logging.log_samples_every=0",
]


def _node_id(actor: object, timeout_s: float = 180.0, *, not_on: str | None = None) -> str:
    """The id of the Ray node an actor runs on, asked of the actor itself; waits while Ray restarts it.

    ``not_on``: keep asking until the answer differs. After its node is SIGKILLed, an actor's old worker
    process can still answer for a moment (calls go to it directly), until it notices its raylet is gone.
    """
    from ray.exceptions import GetTimeoutError, RayActorError

    deadline = time.monotonic() + timeout_s
    while True:
        ref = actor.__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id())
        try:
            node = ray.get(ref, timeout=max(deadline - time.monotonic(), 1.0))
        except RayActorError:  # unavailable while Ray restarts it (max_restarts=-1): ask again
            node = None
        except GetTimeoutError as e:
            raise AssertionError(f"actor did not answer within {timeout_s} s") from e
        if node is not None and node != not_on:
            return node
        assert time.monotonic() < deadline, f"actor still on node {not_on} or unavailable after {timeout_s} s"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def cluster():
    """Head + trainer node + three rollout nodes, all on this host; the test process is the driver."""
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # one host, throw-away cluster (docs/troubleshooting.md)
    if ray.is_initialized():
        ray.shutdown()
    small = {"num_cpus": 1, "object_store_memory": 128 * 2**20}
    c = Cluster(initialize_head=True,
                head_node_args={**small, "resources": {"scorer_node": 1}, "include_dashboard": False})
    nodes = {"head": c.head_node, "trainer": c.add_node(wait=False, resources={"trainer_node": 1}, **small)}
    nodes["rollout"] = [c.add_node(wait=False, resources={"rollout_node": 1}, **small) for _ in range(3)]
    c.wait_for_nodes()
    ray.init(address=c.address, include_dashboard=False, log_to_driver=False)
    yield c, nodes
    ray.shutdown()
    c.shutdown()
    if saved is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = saved


def test_actors_are_placed_by_config_resources(cluster, tmp_path):
    from zaya_rl.pipeline.accounting import Accounting
    from zaya_rl.pipeline.actors import create_actors

    c, nodes = cluster
    cfg = load_config(EXAMPLE, [*TINY, f"run_dir={tmp_path}", f"ray.address={c.address}"])
    assert cfg.rollout.num_workers == 2
    actors = create_actors(cfg, Accounting())
    try:
        workers = [_node_id(h) for h in actors.workers.handles]
        assert _node_id(actors.trainer) == nodes["trainer"].node_id
        assert [_node_id(s) for s in actors.scorers] == [nodes["head"].node_id]
        rollout_ids = {n.node_id for n in nodes["rollout"]}
        assert set(workers) <= rollout_ids, "a rollout worker ran outside the rollout nodes"
        assert len(set(workers)) == 2, f"both rollout workers landed on one node: {workers}"
    finally:
        actors.kill()


def _wait_for_group_in_flight(worker: object, alive: threading.Thread, deadline: float) -> None:
    """Poll the worker until a ``generate_group`` call runs on it (the RL loop has windows without one:
    admission waits for the trainer), so a kill right after loses a group in flight."""
    while ray.get(worker.groups_in_flight.remote(), timeout=max(deadline - time.monotonic(), 1.0)) == 0:
        assert alive.is_alive() and time.monotonic() < deadline, "no group was ever in flight on the worker"
        time.sleep(0.02)


def _rl_started(metrics: Path) -> bool:
    """Whether the held-out evaluation before RL is logged: the RL loop then admits its first groups."""
    if not metrics.is_file():
        return False
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    return any("eval/before/accuracy" in r for r in records)


def test_losing_a_rollout_node_mid_run_is_survived(cluster, tmp_path):
    """One rollout worker, so the run can only finish through its restart on the spare node."""
    from zaya_rl.pipeline.actors import actor_name
    from zaya_rl.pipeline.run import train

    c, nodes = cluster
    run_dir, shared = tmp_path / "run", tmp_path / "shared_fs" / "ckpt"
    cfg = load_config(EXAMPLE, [*TINY, "rollout.num_workers=1", f"run_dir={run_dir}",
                                f"checkpoint.dir={shared}", f"ray.address={c.address}"])
    result: dict = {}

    def run() -> None:
        try:
            result["summary"] = train(cfg)
        except BaseException as e:  # noqa: BLE001 - re-raised in the test thread below
            result["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 300
    while not _rl_started(run_dir / "metrics.jsonl"):
        assert thread.is_alive() and time.monotonic() < deadline, f"run ended before RL started: {result}"
        time.sleep(0.1)
    worker = ray.get_actor(actor_name(cfg, "rollout", 0))
    before = _node_id(worker)
    victim = next(n for n in nodes["rollout"] if n.node_id == before)
    _wait_for_group_in_flight(worker, thread, deadline)  # before: a fixed point in time, sometimes idle
    c.remove_node(victim, allow_graceful=False)  # SIGKILL: a node that crashes, not one that drains
    nodes["rollout"].remove(victim)
    after = _node_id(worker, not_on=before)  # blocks until Ray has restarted the worker elsewhere
    thread.join(timeout=600)
    assert not thread.is_alive(), "run did not finish after the node loss"
    if "error" in result:
        raise result["error"]
    summary = result["summary"]

    assert after != before and after in {n.node_id for n in nodes["rollout"]}
    assert summary["optimizer_steps"] == 6
    assert summary["worker_restarts"] == 1
    assert summary["groups_resubmitted"] >= 1, "no group was in flight on the lost node"
    assert summary["samples_generated"] == summary["samples_trained"] + summary["samples_dropped"]
    assert 0 < summary["samples_trained"] <= 6 * 2 * 4
    # Checkpoints went to the configured (shared) folder, not under run_dir.
    assert sorted(p.name for p in shared.iterdir()) == ["step_000003", "step_000006"]
    assert not (run_dir / "checkpoints").exists()
