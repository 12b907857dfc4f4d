"""``TrainerActor.push_weights`` through real Ray actors (torch engine, CPU): one call per worker per
version, the worker's engine then samples with that version; ``resync_worker``; the metrics.

python -m pytest tests/weights/test_push_ray.py -q -m slow     (~90 s: three actor processes per case)
"""

from __future__ import annotations

import os

import pytest

from zaya_rl.config import config_from_dict
from zaya_rl.pipeline.records import GroupSpec
from zaya_rl.rollout.base import SamplingParams


@pytest.fixture(scope="module")
def ray_cpu():
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=256 * 2**20,
             log_to_driver=False, runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1"}})
    yield ray
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["state_dict", "file"])
def test_push_reaches_every_worker(ray_cpu, tmp_path, transport):
    ray = ray_cpu
    from zaya_rl.pipeline.rollout_worker import RolloutWorker
    from zaya_rl.pipeline.trainer_actor import TrainerActor

    cfg = config_from_dict({"run_dir": str(tmp_path), "model": {"preset": "tiny-qwen3moe"},
                            "weight_sync": {"transport": transport, "shm_dir": str(tmp_path / "shm")},
                            "canary": {"enabled": False}})
    d = cfg.model_dump(mode="json")
    trainer = ray.remote(TrainerActor).options(num_cpus=0.25).remote(d)
    workers = [ray.remote(RolloutWorker).options(num_cpus=0.25, max_concurrency=100).remote(d, i) for i in range(2)]
    ray.get(trainer.connect_workers.remote(workers))
    metrics = ray.get(trainer.push_weights.remote(3))
    assert metrics["weights/bytes"] > 0 and metrics["weights/push_s"] > 0 and "weights/worker_load_s" in metrics
    spec = GroupSpec(0, "arithmetic", 0, 0, {"messages": [{"role": "user", "content": "1+1="}]}, 3, "eval")
    for w in workers:
        (rollout,) = ray.get(w.generate_group.remote(spec, 1, SamplingParams(max_new_tokens=3, seed=1)))
        assert set(rollout.versions) == {3}
    ray.get(trainer.resync_worker.remote(1, 4))  # after a restart: only worker 1, through the object store
    versions = [set(ray.get(w.generate_group.remote(spec, 1, SamplingParams(max_new_tokens=3)))[0].versions)
                for w in workers]
    assert versions == [{3}, {4}]
    if transport == "file":
        assert not any((tmp_path / "shm").rglob("*.safetensors"))  # version folders are removed
    for h in [trainer, *workers]:
        ray.kill(h)
