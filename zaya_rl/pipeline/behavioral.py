"""Behavioural RL: reward-model scores combined with instruction-following checks (DESIGN.md §4–§5).

With ``behavioral.enabled`` every training group is scored twice: by its environment's verifier in the
scorer pool (for ``ifeval``: the IFEval checks, reward = fraction of constraints followed) and by a reward
model running as its own Ray actor (``rewards.reward_model.reward_model_actor``; a GPU on a cluster via
``behavioral.reward_model.resources``, never in the trainer). Per group of G responses:

    raw_i = RM logit of (prompt messages, response_i)                  rewards.reward_model (batched)
    rm_i  = transform(raw)_i in [0, 1]   (sigmoid, or group_rank / group_minmax over the group's responses)
    r_i   = (w_rm * rm_i + w_if * if_i) / (w_rm + w_if)                rewards.rm_transforms.combine_behavioral

``r_i`` replaces the verifier's reward. Accuracy stays the verifier's (every constraint followed), so
held-out evaluation, which never calls the RM, measures the same thing before and after a stage.
Advantages follow the stage's ``algorithm.advantage`` (MaxRL or Dr-GRPO); rewards lie in [0, 1] for both.

Batching: ``RMBatcher`` queues the pairs of concurrently finishing groups in the driver and sends them in
one actor call once ``batch_size`` pairs wait or ``max_wait_s`` has passed; the actor then runs forward
passes of ``batch_size`` pairs. The actor starts at the first training group. With ``build_tiny`` a tiny
random RM is first written to ``<run_dir>/tiny_reward_model`` (nothing is downloaded).

Failures: an RM call that raises marks the group's scored samples ``error`` (excluded and counted, like a
verifier failure). Samples whose verifier failed stay excluded. Run
``python -m pytest tests/pipeline/test_behavioral.py -q``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from zaya_rl.config import ConfigError, RunConfig

log = logging.getLogger(__name__)

#: Folder (under the run folder) of the tiny RM that ``behavioral.reward_model.build_tiny`` writes.
TINY_RM_DIR = "tiny_reward_model"
ROLE = "reward_model"


def reward_model_path(cfg: RunConfig) -> Path:
    """The RM folder: ``behavioral.reward_model.path``, or the run folder's tiny RM."""
    rm = cfg.behavioral.reward_model
    return Path(rm.path) if rm.path is not None else Path(cfg.run_dir) / TINY_RM_DIR


def check_reward_model(cfg: RunConfig, cluster: dict[str, float] | None = None) -> None:
    """Raise ``ConfigError`` naming the field when the RM folder or its resources cannot work."""
    rm = cfg.behavioral.reward_model
    path = reward_model_path(cfg)
    if rm.path is not None and not (path / "config.json").is_file():
        raise ConfigError(f"behavioral.reward_model.path: {path} is not a model folder (no config.json)")
    asks = {"CPU": rm.resources.num_cpus, "GPU": rm.resources.num_gpus, **rm.resources.resources}
    for key, amount in asks.items():
        if cluster is not None and amount and cluster.get(key, 0.0) < amount:
            raise ConfigError(f"behavioral.reward_model.resources: the RM actor asks for {amount} {key} but the "
                              f"Ray cluster has {cluster.get(key, 0.0)}")


async def start_reward_model(cfg: RunConfig) -> Any:
    """Build the tiny RM if asked, check the folder and the cluster, start the actor; returns its handle."""
    import ray

    from rewards.reward_model import RewardModelConfig, build_tiny_reward_model, reward_model_actor
    from rewards.rm_transforms import TransformConfig
    from zaya_rl.pipeline.actors import actor_name

    rm = cfg.behavioral.reward_model
    path = reward_model_path(cfg)
    if rm.path is None and not (path / "config.json").is_file():
        await asyncio.to_thread(build_tiny_reward_model, str(path), seed=cfg.seed)
    check_reward_model(cfg, ray.cluster_resources())
    device = rm.device if rm.device != "auto" else ("cuda" if rm.resources.num_gpus > 0 else "cpu")
    config = RewardModelConfig(path=str(path), max_length=rm.max_length, batch_size=rm.batch_size, device=device,
                               dtype=rm.dtype, transform=TransformConfig())  # transforms run in the driver
    return reward_model_actor(config, num_cpus=rm.resources.num_cpus, num_gpus=rm.resources.num_gpus,
                              resources=dict(rm.resources.resources) or None, name=actor_name(cfg, ROLE),
                              max_restarts=3, max_task_retries=2)


def stop_reward_model(cfg: RunConfig) -> None:
    """Kill the run's RM actor if one is alive (called when a run ends, normally or not)."""
    if not cfg.behavioral.enabled:
        return
    import ray

    from zaya_rl.pipeline.actors import actor_name

    try:
        ray.kill(ray.get_actor(actor_name(cfg, ROLE)), no_restart=True)
    except ValueError:  # no such actor: the run never scored a training group
        pass


class RMBatcher:
    """Queue (prompt, response) pairs from concurrent groups; send them to the RM in few calls.

    Args:
        call: ``(prompts, responses) -> awaitable raw scores`` (an actor's ``raw_scores.remote``).
        flush_pairs: send as soon as this many pairs wait.
        max_wait_s: send at the latest this long after the first pair of a batch arrived.
    """

    def __init__(self, call: Callable[[list, list], Awaitable[Sequence[float]]], *, flush_pairs: int,
                 max_wait_s: float) -> None:
        self.call, self.flush_pairs, self.max_wait_s = call, flush_pairs, max_wait_s
        self._queue: list[tuple[list, list, asyncio.Future]] = []
        self._pairs = 0
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task] = set()
        self.calls = 0
        self.pairs_sent = 0

    async def raw_scores(self, prompts: list, responses: list[str]) -> list[float]:
        """Raw RM scores of the pairs, in order, once their batch has been scored."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queue.append((prompts, responses, fut))
        self._pairs += len(responses)
        if self._pairs >= self.flush_pairs:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.max_wait_s, self._flush)
        return await fut

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._queue, self._pairs = self._queue, [], 0
        if batch:
            task = asyncio.ensure_future(self._send(batch))
            self._sending.add(task)  # asyncio keeps only weak references to tasks
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[list, list, asyncio.Future]]) -> None:
        prompts = [p for ps, _, _ in batch for p in ps]
        responses = [r for _, rs, _ in batch for r in rs]
        self.calls += 1
        self.pairs_sent += len(responses)
        try:
            raw = list(await self.call(prompts, responses))
            if len(raw) != len(responses):
                raise RuntimeError(f"reward model returned {len(raw)} scores for {len(responses)} pairs")
        except Exception as e:  # noqa: BLE001 - every waiting group gets the error and marks its samples
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(e)
            return
        start = 0
        for _, rs, fut in batch:
            if not fut.done():
                fut.set_result(raw[start : start + len(rs)])
            start += len(rs)


class BehavioralScorer:
    """Combine RM and verifier rewards of training groups (module docstring).

    Args:
        cfg: the run config (``behavioral`` section, run folder, actor names).
        start: coroutine that starts the RM and returns a ``(prompts, responses) -> awaitable`` scorer;
            default: ``start_reward_model`` and the actor's ``raw_scores``.
    """

    def __init__(self, cfg: RunConfig, start: Callable[[], Awaitable[Callable]] | None = None) -> None:
        from rewards.rm_transforms import TransformConfig

        self.cfg = cfg.behavioral
        rm = self.cfg.reward_model
        self.transform = TransformConfig(name=rm.transform, temperature=rm.temperature, shift=rm.shift)
        self._start = start or (lambda: _actor_call(cfg))
        self._starting: asyncio.Task | None = None
        self.batcher: RMBatcher | None = None
        self._stats: dict[str, list[float]] = {}

    @classmethod
    def from_run_config(cls, cfg: RunConfig) -> BehavioralScorer | None:
        """A scorer for ``cfg``, or None when ``behavioral.enabled`` is false."""
        return cls(cfg) if cfg.behavioral.enabled else None

    async def _ready(self) -> RMBatcher:
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        call = await self._starting
        if self.batcher is None:
            rm = self.cfg.reward_model
            self.batcher = RMBatcher(call, flush_pairs=rm.batch_size, max_wait_s=rm.max_wait_s)
        return self.batcher

    async def rescore(self, problem: dict[str, Any], responses: list[str],
                      scores: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Replace each verified sample's reward by the combined reward; failed samples pass unchanged."""
        from rewards.rm_transforms import apply_transform, combine_behavioral

        ok = [i for i, s in enumerate(scores) if s["status"] == "ok"]
        if not ok:
            return scores
        batcher = await self._ready()
        try:
            raw = await batcher.raw_scores([problem["messages"]] * len(ok), [responses[i] for i in ok])
            rm = apply_transform(raw, None, self.transform)  # None: the group's responses are one group
        except Exception as e:  # noqa: BLE001 - like a verifier failure: the samples are excluded, the run goes on
            log.error("reward model failed on a group of %s: %s", problem.get("env"), e)
            self._add("rm_errors", [1.0] * len(ok))
            bad = {i: {**scores[i], "status": "error", "reason": f"reward model: {e}"} for i in ok}
            return [bad.get(i, s) for i, s in enumerate(scores)]
        verifier = [float(scores[i]["reward"]) for i in ok]
        combined = combine_behavioral(rm, verifier, rm_weight=self.cfg.rm_weight, if_weight=self.cfg.if_weight)
        for key, values in (("rm_raw", raw), ("rm_reward", rm), ("if_reward", verifier), ("reward", combined)):
            self._add(key, [float(v) for v in values])
        new = {i: {**scores[i], "reward": float(c)} for i, c in zip(ok, combined, strict=True)}
        return [new.get(i, s) for i, s in enumerate(scores)]

    def _add(self, key: str, values: list[float]) -> None:
        self._stats.setdefault(key, []).extend(values)

    def metrics(self) -> dict[str, float]:
        """``behavioral/*`` means since the last call (``samples``: RM-scored samples); resets the window."""
        stats, self._stats = self._stats, {}
        m = {f"behavioral/{k}": sum(v) / len(v) for k, v in stats.items() if k != "rm_errors"}
        m["behavioral/samples"] = float(len(stats.get("reward", [])))
        m["behavioral/rm_errors"] = float(len(stats.get("rm_errors", [])))
        if self.batcher is not None and self.batcher.calls:
            m["behavioral/rm_pairs_per_call"] = self.batcher.pairs_sent / self.batcher.calls
        return m


async def _actor_call(cfg: RunConfig) -> Callable:
    actor = await start_reward_model(cfg)
    return lambda prompts, responses: actor.raw_scores.remote(prompts, responses)
