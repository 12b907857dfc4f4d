"""Placement groups from ``placement.mode``: bundle plans (pure), the cluster check, and real placement on a
local Ray instance with two *fake* GPUs (Ray schedules by resource counts, so CPU CI can check which
bundle, hence which GPU id, each actor lands on).

python -m pytest tests/pipeline/test_placement.py -q
"""

from __future__ import annotations

import os

import pytest

from zaya_rl.config import ConfigError, config_from_dict
from zaya_rl.pipeline.placement import bundles_fit, create_placement, plan_bundles, trainer_ranks


def _cfg(mode, workers=1, r_gpu=0.5, t_gpu=0.5, **extra):
    return config_from_dict({"placement": {"mode": mode, "timeout_s": 20},
                             "rollout": {"num_workers": workers, "resources": {"num_cpus": 0.25, "num_gpus": r_gpu}},
                             "trainer": {"resources": {"num_cpus": 0.25, "num_gpus": t_gpu}}, **extra})


def test_bundle_plans():
    assert plan_bundles(config_from_dict({})) == ([], [], [])
    b, ro, tr = plan_bundles(_cfg("colocated", workers=2))
    assert b == [{"GPU": 1.0, "CPU": 0.5}, {"GPU": 1.0, "CPU": 0.25}] and ro == [0, 1] and tr == [0]
    b, ro, tr = plan_bundles(_cfg("disaggregated", workers=2, r_gpu=1, t_gpu=1))
    assert b == [{"GPU": 1.0, "CPU": 0.25}] * 3 and ro == [0, 1] and tr == [2]
    ds = _cfg("disaggregated", r_gpu=1, t_gpu=1, trainer={"backend": "deepspeed", "num_gpus": 2,
                                                          "resources": {"num_cpus": 0.25, "num_gpus": 1}})
    assert trainer_ranks(ds) == 2 and plan_bundles(ds)[2] == [1, 2]


def test_cluster_check_and_config_errors():
    with pytest.raises(ConfigError, match="needs 3.0 GPU in 3 bundles but the Ray cluster has 2"):
        bundles_fit(plan_bundles(_cfg("disaggregated", workers=2, r_gpu=1, t_gpu=1))[0], {"GPU": 2.0, "CPU": 8.0})
    with pytest.raises(ConfigError, match="must be <= 1 to share a GPU"):
        _cfg("colocated", r_gpu=0.7, t_gpu=0.5)
    with pytest.raises(ConfigError, match="must be > 0"):
        _cfg("disaggregated", r_gpu=0, t_gpu=1)
    with pytest.raises(ConfigError, match="transport=ipc needs trainer and rollout on one GPU"):
        _cfg("disaggregated", r_gpu=1, t_gpu=1, rollout={"engine": "vllm", "resources": {"num_gpus": 1}},
             weight_sync={"transport": "ipc"})
    with pytest.raises(ConfigError, match="transport=nccl needs rollout.engine=vllm"):
        config_from_dict({"weight_sync": {"transport": "nccl"}})


@pytest.fixture(scope="module")
def fake_gpu_ray():
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", num_cpus=2, num_gpus=2, include_dashboard=False, object_store_memory=128 * 2**20,
             log_to_driver=False)
    yield ray
    ray.shutdown()


def _gpu_of(ray, options):
    @ray.remote(num_cpus=0.25)
    def where():
        return ray.get_gpu_ids()

    return ray.get(where.options(**options).remote())


@pytest.mark.parametrize(("mode", "r_gpu", "t_gpu", "same"), [("colocated", 0.5, 0.5, True),
                                                              ("disaggregated", 1.0, 1.0, False)])
def test_actors_land_on_their_bundles(fake_gpu_ray, mode, r_gpu, t_gpu, same):
    ray = fake_gpu_ray
    cfg = _cfg(mode, r_gpu=r_gpu, t_gpu=t_gpu)
    placement = create_placement(cfg)
    try:
        rollout = _gpu_of(ray, {"num_gpus": r_gpu, **placement.rollout(0)})
        trainer = _gpu_of(ray, {"num_gpus": t_gpu, **placement.trainer(0)})
        assert len(rollout) == len(trainer) == 1
        assert (rollout == trainer) is same
    finally:
        placement.remove()
