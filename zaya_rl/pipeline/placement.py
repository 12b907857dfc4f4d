"""GPU placement of rollout workers and trainer ranks from ``placement.mode`` (Ray placement groups).

| mode | placement group | rollout worker i | trainer rank r |
| --- | --- | --- | --- |
| ``ray`` | none: each actor asks Ray for its ``resources`` | anywhere | anywhere |
| ``colocated`` | ``max(W, R)`` bundles of one GPU | bundle i, fractional GPU | bundle r, fractional GPU |
| ``disaggregated`` | ``W + R`` bundles of one GPU | bundle i | bundle W + r |

(W rollout workers, R trainer ranks.) Colocated actors share a physical GPU with fractional ``num_gpus``
that sum to at most 1 (checked in the config), so CUDA IPC works between them; disaggregated ones never
share one, which is what NCCL weight transfer is for. The bundles' total is checked against the cluster
before anything is placed (``bundles_fit``), because a placement group that cannot be satisfied stays
pending forever; ``ready`` then waits at most ``placement.timeout_s``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zaya_rl.config import ConfigError, RunConfig


def trainer_ranks(cfg: RunConfig) -> int:
    """Trainer processes: ``trainer.num_gpus`` under DeepSpeed, else one."""
    return max(cfg.trainer.num_gpus, 1) if cfg.trainer.backend == "deepspeed" else 1


def plan_bundles(cfg: RunConfig) -> tuple[list[dict[str, float]], list[int], list[int]]:
    """``(bundles, rollout bundle index per worker, trainer bundle index per rank)`` (empty for ``ray``)."""
    mode, w, r = cfg.placement.mode, cfg.rollout.num_workers, trainer_ranks(cfg)
    ro, tr = cfg.rollout.resources, cfg.trainer.resources
    if mode == "ray":
        return [], [], []
    if mode == "colocated":
        n = max(w, r)
        cpus = [ro.num_cpus * (i < w) + tr.num_cpus * (i < r) for i in range(n)]
        return [{"GPU": 1.0, "CPU": c} for c in cpus], list(range(w)), list(range(r))
    bundles = [{"GPU": 1.0, "CPU": ro.num_cpus}] * w + [{"GPU": 1.0, "CPU": tr.num_cpus}] * r
    return bundles, list(range(w)), list(range(w, w + r))


def bundles_fit(bundles: list[dict[str, float]], cluster: dict[str, float]) -> None:
    """Raise ``ConfigError`` when the cluster's totals cannot hold ``bundles``."""
    for key in ("GPU", "CPU"):
        need = sum(b.get(key, 0.0) for b in bundles)
        if need > cluster.get(key, 0.0) + 1e-9:
            raise ConfigError(
                f"placement: the placement group needs {need} {key} in {len(bundles)} bundles but the Ray cluster "
                f"has {cluster.get(key, 0.0)} (resources: {cluster}); lower rollout.num_workers / trainer.num_gpus "
                "or use placement.mode=colocated"
            )


@dataclass
class Placement:
    """Ray ``.options(...)`` for each rollout worker and trainer rank."""

    group: Any
    rollout_bundles: list[int]
    trainer_bundles: list[int]

    def _strategy(self, bundle: int) -> dict[str, Any]:
        if self.group is None:
            return {}
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        return {"scheduling_strategy": PlacementGroupSchedulingStrategy(
            placement_group=self.group, placement_group_bundle_index=bundle,
            placement_group_capture_child_tasks=True)}

    def rollout(self, i: int) -> dict[str, Any]:
        return self._strategy(self.rollout_bundles[i]) if self.group is not None else {}

    def trainer(self, r: int) -> dict[str, Any]:
        return self._strategy(self.trainer_bundles[r]) if self.group is not None else {}

    def remove(self) -> None:
        if self.group is not None:
            from ray.util.placement_group import remove_placement_group

            remove_placement_group(self.group)


def create_placement(cfg: RunConfig) -> Placement:
    """Reserve the placement group of ``cfg.placement`` (checked first) and wait until it is ready."""
    import ray
    from ray.util.placement_group import placement_group

    bundles, ro, tr = plan_bundles(cfg)
    if not bundles:
        return Placement(None, [], [])
    bundles_fit(bundles, ray.cluster_resources())
    group = placement_group(bundles, strategy=cfg.placement.strategy)
    try:
        ray.get(group.ready(), timeout=cfg.placement.timeout_s)
    except Exception as e:  # GetTimeoutError: e.g. bundles too large for any single node
        raise ConfigError(
            f"placement: the placement group {bundles} was not ready after {cfg.placement.timeout_s} s "
            f"(strategy {cfg.placement.strategy}); available: {ray.available_resources()}"
        ) from e
    return Placement(group, ro, tr)
