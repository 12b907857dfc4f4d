"""Create the run's Ray actors from the config, and call rollout workers with restart handling.

Placement comes from config (``rollout.resources``, ``trainer.resources``, ``pipeline.scorer_resources``):
CPUs, GPUs and custom resources per actor. Requests are checked against the cluster before any actor is
created, because Ray leaves an unsatisfiable request pending forever (e.g. ``num_gpus: 0.5`` on a CPU-only
cluster; research/vllm_ray.md §5).

Rollout workers and scorers are restartable (``max_restarts``): when a worker dies mid-generation, its
calls fail with ``RayActorError``; ``WorkerSet.generate`` waits for Ray to restart it, re-sends the current
weights and resubmits the group (counted in ``groups/resubmitted`` and ``workers/restarts``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, ObjectLostError, RayActorError

from zaya_rl.config import ConfigError, RunConfig
from zaya_rl.config.schema import ActorResources
from zaya_rl.pipeline.accounting import Accounting
from zaya_rl.pipeline.placement import Placement, create_placement, trainer_ranks
from zaya_rl.pipeline.records import GroupSpec, Rollout
from zaya_rl.rollout.base import SamplingParams

log = logging.getLogger(__name__)

#: Worker failures that mean "the actor process is gone or restarting" (retry after re-sending weights).
#: ObjectLostError: a large result stored on a node that died before the driver fetched it.
ACTOR_FAILURES = (RayActorError, ActorDiedError, ActorUnavailableError, ObjectLostError)
#: Resubmissions of one group before the run gives up (a worker that dies on every attempt is a bug).
MAX_GROUP_RETRIES = 5


def actor_name(cfg: RunConfig, role: str, index: int = 0) -> str:
    """Ray name of a run's actor (``ray.get_actor(name)`` from the driver, for debugging and fault drills).

    Unique per run folder, so two runs on one cluster never collide.
    """
    return f"zaya_rl:{Path(cfg.run_dir).resolve()}:{role}:{index}"


def _options(res: ActorResources) -> dict[str, Any]:
    return {"num_cpus": res.num_cpus, "num_gpus": res.num_gpus, "resources": dict(res.resources) or None}


def check_resources(cfg: RunConfig, cluster: dict[str, float], nodes: list[dict[str, float]] | None = None) -> None:
    """Raise ``ConfigError`` naming the field when the cluster cannot hold the requested actors.

    Checks that some single node can hold each actor (``nodes``: every alive node's resources) and that the
    cluster's totals cover all actors together; Ray would otherwise leave the request pending forever.
    """
    wants = [
        ("rollout.resources", cfg.rollout.resources, cfg.rollout.num_workers),
        ("trainer.resources", cfg.trainer.resources, trainer_ranks(cfg)),
        ("pipeline.scorer_resources", cfg.pipeline.scorer_resources, cfg.pipeline.num_scorers),
    ]
    nodes = nodes if nodes is not None else [cluster]
    total: dict[str, float] = {}
    for field_name, res, count in wants:
        asks = {k: v for k, v in {"CPU": res.num_cpus, "GPU": res.num_gpus, **res.resources}.items() if v}
        if not any(all(node.get(k, 0.0) >= v for k, v in asks.items()) for node in nodes):
            raise ConfigError(
                f"{field_name}: no single Ray node has {asks} for one actor (cluster totals: {cluster}; "
                f"nodes: {nodes})"
            )
        for key, amount in asks.items():
            total[key] = total.get(key, 0.0) + amount * count
    for key, amount in total.items():
        if amount > cluster.get(key, 0.0) + 1e-9:
            raise ConfigError(
                f"rollout/trainer/scorer resources: the actors together ask for {amount} {key} but the Ray "
                f"cluster has {cluster.get(key, 0.0)}; lower rollout.resources / trainer.resources / "
                f"pipeline.scorer_resources or the actor counts"
            )


def alive_node_resources() -> list[dict[str, float]]:
    """Total resources of every alive Ray node."""
    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]


@dataclass
class WorkerSet:
    """The rollout workers, the weights they should hold, and per-worker load for least-loaded dispatch."""

    handles: list[Any]
    accounting: Accounting
    trainer: Any = None
    transport: str = "state_dict"
    weights_ref: Any = None
    version: int = 0
    pushing: bool = False
    inflight: list[int] = field(default_factory=list)
    incarnations: list[str | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.inflight = [0] * len(self.handles)
        self.incarnations = [None] * len(self.handles)

    async def publish(self, weights_ref: Any, version: int) -> None:
        """Send new weights to every worker (applied in flight); returns once all acknowledged."""
        self.weights_ref, self.version = weights_ref, version
        await asyncio.gather(*(self._send_weights(i) for i in range(len(self.handles))))

    async def _send_weights(self, i: int) -> None:
        try:
            await self.handles[i].update_weights.remote(self.weights_ref, self.version)
        except ACTOR_FAILURES:
            # A worker that died mid-update gets the current weights once Ray has restarted it.
            await self._recover_with_wait(i)

    def submit_version(self, version: int) -> Any:
        """Ask the trainer for ``version`` now (it runs right after the trainer's current call, so it sees
        exactly those weights); ``deliver`` then gets it to every worker.

        ``weight_sync.transport: state_dict`` (CPU, any engine): the trainer returns a CPU state dict into
        the object store and the workers apply it in flight while the trainer goes on training.
        Other transports (``file``, ``nccl``, ``ipc``): the trainer pushes through the data plane itself
        (``push_weights``: one call per worker per version), and re-syncs restarted workers.
        """
        self.pushing = self.transport != "state_dict"
        return self.trainer.push_weights.remote(version) if self.pushing else self.trainer.get_weights.remote(version)

    async def deliver(self, ref: Any, version: int) -> dict[str, float]:
        """Complete ``submit_version``: returns the transport's ``weights/`` metrics (empty for state_dict)."""
        if self.pushing:
            self.version = version
            return await ref
        await self.publish(ref, version)
        return {}

    async def refresh_incarnations(self) -> None:
        self.incarnations = list(await asyncio.gather(*(h.incarnation.remote() for h in self.handles)))

    async def _recover(self, i: int) -> None:
        """After a failure of worker ``i``: wait for its restart, count it once, re-send the weights."""
        incarnation = await self.handles[i].incarnation.remote()
        if incarnation != self.incarnations[i]:
            self.incarnations[i] = incarnation
            self.accounting.worker_restarts += 1
            log.warning("rollout worker %d restarted (incarnation %s); re-sending weights v%d", i, incarnation, self.version)
        if self.pushing:
            await self.trainer.resync_worker.remote(i, self.version)
        elif self.weights_ref is not None:
            await self.handles[i].update_weights.remote(self.weights_ref, self.version)

    async def generate(
        self, spec: GroupSpec, n: int, params: SamplingParams, env_canary: dict[str, Any] | None
    ) -> list[Rollout]:
        """Generate one group on the least-loaded worker; resubmit it if the worker dies meanwhile."""
        return await self._call(
            lambda: min(range(len(self.handles)), key=self.inflight.__getitem__),
            lambda h: h.generate_group.remote(spec, n, params, env_canary),
            f"group {spec.group_id}", resubmits=int(spec.kind != "eval"),
        )

    async def generate_together(
        self, groups: list[tuple[GroupSpec, int, SamplingParams, dict[str, Any] | None]]
    ) -> list[list[Rollout]]:
        """Generate ``groups`` in one call per worker: worker j gets groups j, j + W, ... in that order.

        Sync mode (``pipeline.lockstep``): the split and the order depend on the list alone, so every
        engine batches the same requests together in every run. A failed worker's share is resubmitted to
        it once Ray has restarted it.
        """
        W = len(self.handles)
        shares = [(j, groups[j::W]) for j in range(W) if groups[j::W]]
        results = await asyncio.gather(*(
            self._call(lambda j=j: j, lambda h, share=share: h.generate_groups.remote(share),
                       f"groups {[g[0].group_id for g in share]}", resubmits=sum(g[0].kind != "eval" for g in share))
            for j, share in shares
        ))
        out: list[list[Rollout]] = [[] for _ in groups]
        for (j, _), res in zip(shares, results, strict=True):
            out[j::W] = res
        return out

    async def _call(self, pick: Any, call: Any, what: str, *, resubmits: int) -> Any:
        """``call(handle)`` on worker ``pick()``; after a worker failure, recover it and try again."""
        for attempt in range(MAX_GROUP_RETRIES + 1):
            i = pick()
            self.inflight[i] += 1
            try:
                return await call(self.handles[i])
            except ACTOR_FAILURES as e:
                if attempt == MAX_GROUP_RETRIES:
                    raise RuntimeError(f"{what} failed on {attempt + 1} workers in a row") from e
                log.warning("rollout worker %d failed on %s (%s); resubmitting", i, what, type(e).__name__)
                self.accounting.groups_resubmitted += resubmits
                await self._recover_with_wait(i)
            finally:
                self.inflight[i] -= 1
        raise AssertionError("unreachable")

    async def _recover_with_wait(self, i: int) -> None:
        for _ in range(120):  # a restart takes seconds; give up after ~2 minutes
            try:
                await self._recover(i)
                return
            except ACTOR_FAILURES:
                await asyncio.sleep(1.0)
        raise RuntimeError(f"rollout worker {i} did not come back after a failure")


@dataclass
class ActorSet:
    trainer: Any  # None for evaluation-only runs; rank 0 under DeepSpeed
    workers: WorkerSet
    scorers: list[Any]
    trainer_followers: list[Any] = field(default_factory=list)  # DeepSpeed ranks > 0
    placement: Placement | None = None

    def kill(self) -> None:
        for h in [self.trainer, *self.trainer_followers, *self.workers.handles, *self.scorers]:
            if h is None:
                continue
            try:
                ray.kill(h, no_restart=True)
            except Exception:  # noqa: BLE001 - best-effort teardown of possibly dead actors
                pass
        if self.placement is not None:
            self.placement.remove()


def _start_trainer(cfg: RunConfig, cfg_dict: dict[str, Any], model_path: str | None, placement: Placement) -> list[Any]:
    """Trainer rank actors (one unless DeepSpeed); DeepSpeed ranks join one process group before returning."""
    from zaya_rl.pipeline.trainer_actor import TrainerActor

    ranks = [
        ray.remote(TrainerActor)
        .options(name=actor_name(cfg, "trainer", r), max_restarts=0, **_options(cfg.trainer.resources),
                 **placement.trainer(r))
        .remote(cfg_dict, model_path)
        for r in range(trainer_ranks(cfg))
    ]
    if cfg.trainer.backend == "deepspeed":
        addr, port = ray.get(ranks[0].rendezvous_address.remote())
        ray.get([a.init_parallel.remote(r, len(ranks), addr, port) for r, a in enumerate(ranks)])
        ray.get(ranks[0].set_followers.remote(ranks[1:]))
    return ranks


def create_actors(
    cfg: RunConfig, accounting: Accounting, trainer_model_path: str | None = None, *, with_trainer: bool = True
) -> ActorSet:
    """Validate resources and start the trainer (unless ``with_trainer`` is False), rollout workers, scorers."""
    from zaya_rl.pipeline.rollout_worker import RolloutWorker
    from zaya_rl.pipeline.scorer import Scorer

    check_resources(cfg, ray.cluster_resources(), alive_node_resources())
    if cfg.rollout.engine == "vllm":  # e.g. ZAYA: fail here, not in restarting worker actors
        from zaya_rl.rollout.vllm_build import check_vllm_supports

        check_vllm_supports(cfg)
    placement = create_placement(cfg)
    cfg_dict = cfg.model_dump(mode="json")
    ranks = _start_trainer(cfg, cfg_dict, trainer_model_path, placement) if with_trainer else [None]
    workers = [
        ray.remote(RolloutWorker)
        .options(name=actor_name(cfg, "rollout", i), max_restarts=-1, max_task_retries=0, max_concurrency=1000,
                 **_options(cfg.rollout.resources), **placement.rollout(i))
        .remote(cfg_dict, i)
        for i in range(cfg.rollout.num_workers)
    ]
    if with_trainer:  # the weight transport's data plane (NCCL: a group of trainer rank 0 and the engines)
        ray.get(ranks[0].connect_workers.remote(workers))
    scorers = [
        ray.remote(Scorer)
        .options(name=actor_name(cfg, "scorer", i), max_restarts=-1, max_task_retries=2,
                 max_concurrency=cfg.pipeline.scorer_processes + 1, **_options(cfg.pipeline.scorer_resources))
        .remote(cfg_dict)
        for i in range(cfg.pipeline.num_scorers)
    ]
    return ActorSet(trainer=ranks[0], workers=WorkerSet(workers, accounting, trainer=ranks[0],
                                                       transport=cfg.weight_sync.transport), scorers=scorers,
                    trainer_followers=ranks[1:], placement=placement)
