"""The asynchronous RL loop (PipelineRL-style), driven from one asyncio event loop in the driver.

Each admitted group runs as one coroutine: problem (scorer pool) → G rollouts (least-loaded rollout worker;
in sync mode the step's groups together, ``pipeline.lockstep``) → rewards (scorer pool). Finished groups are
finalised (errors, canary, filter, advantages) into a FIFO of ready groups, in admission order by default
(``pipeline.staleness``: that order is what bounds lag without discarding anything). Whenever the trainer
is idle and ``groups_per_step`` groups are ready, one optimizer step starts; when it ends, the new weights
are published to every worker *in flight* and, on schedule, a checkpoint is written. Generation never waits
for training: admission control (``pipeline.staleness.admission_open``) is the only brake, and
``max_lag = 0`` turns the same loop into the synchronous baseline (``pipeline.mode: sync``).

Ordering guarantees rely on the trainer actor executing calls in submission order: ``get_weights`` and
``save`` for step k are submitted before ``train_step`` k+1, so they see exactly the weights of version k.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict, deque
from dataclasses import asdict, dataclass, field
from typing import Any

from environments.sampler import Draw
from zaya_rl.config import RunConfig
from zaya_rl.pipeline.accounting import Accounting
from zaya_rl.pipeline.actors import ActorSet
from zaya_rl.pipeline.behavioral import BehavioralScorer
from zaya_rl.pipeline.groups import apply_scores, finalize_group
from zaya_rl.pipeline.health import CollapseMonitor, ErrorBudget
from zaya_rl.pipeline.lockstep import JointGeneration
from zaya_rl.pipeline.records import Group, GroupSpec, Rollout
from zaya_rl.pipeline.staleness import AdmissionOrder, admissible_count, in_admission_order, is_stale, lag
from zaya_rl.pipeline.ttc import TTCMixer
from zaya_rl.rollout.base import SamplingParams
from zaya_rl.trainer.batch import TrainSample

log = logging.getLogger(__name__)


@dataclass
class Window:
    """Rollout statistics between two optimizer steps (unfiltered: every scored train rollout)."""

    t0: float = field(default_factory=time.perf_counter)
    rewards: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    accuracies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    flagged: dict[str, list[bool]] = field(default_factory=lambda: defaultdict(list))
    finish: Counter = field(default_factory=Counter)
    nonbinary: list[bool] = field(default_factory=list)  # per group with advantages: rewards not all 0/1
    texts: set[str] = field(default_factory=set)
    groups: int = 0
    tokens: int = 0
    samples: int = 0

    def add(self, group: Group) -> None:
        env = group.spec.env
        self.groups += 1
        for r in group.rollouts:
            self.texts.add(r.text)
            self.flagged[env].append(r.canary_flagged)
            self.finish[r.finish_reason] += 1
            self.tokens += len(r.token_ids)
            self.samples += 1
            if r.status == "ok":
                self.rewards[env].append(r.reward)
                self.accuracies[env].append(r.accuracy)

    def metrics(self) -> dict[str, float]:
        dt = max(time.perf_counter() - self.t0, 1e-9)
        m: dict[str, float] = {"perf/samples_per_s": self.samples / dt, "perf/tokens_per_s": self.tokens / dt}
        all_r = [x for v in self.rewards.values() for x in v]
        all_a = [x for v in self.accuracies.values() for x in v]
        all_f = [x for v in self.flagged.values() for x in v]
        if all_r:
            m["rollout/reward"], m["rollout/accuracy"] = _mean(all_r), _mean(all_a)
        if all_f:
            m["canary/flag_rate"] = _mean(all_f)
        if self.nonbinary:
            m["advantage/nonbinary_group_frac"] = _mean(self.nonbinary)
        if self.samples:
            m["rollout/response_tokens"] = self.tokens / self.samples
            m["rollout/distinct_per_group"] = len(self.texts) / self.groups  # health.CollapseMonitor
            m.update({f"rollout/finish_{k}": v / self.samples for k, v in self.finish.items()})
        for env in self.flagged:
            if self.rewards[env]:
                m[f"env/{env}/reward"] = _mean(self.rewards[env])
                m[f"env/{env}/accuracy"] = _mean(self.accuracies[env])
            m[f"env/{env}/canary_rate"] = _mean(self.flagged[env])
        return m


def _mean(xs: list) -> float:
    return float(sum(xs)) / len(xs)


class Orchestrator:
    """Run RL optimizer steps until ``total_steps``; see the module docstring."""

    def __init__(self, cfg: RunConfig, actors: ActorSet, sampler: Any, logger: Any, accounting: Accounting,
                 *, step: int = 0, next_group_id: int = 0, readmit: list[Draw] | None = None,
                 checkpointer: Any = None) -> None:
        self.cfg, self.actors, self.sampler, self.logger, self.acc = cfg, actors, sampler, logger, accounting
        self.checkpointer = checkpointer
        self.step = step
        self.next_group_id = next_group_id
        self.readmit = deque(readmit or [])
        self.gps = cfg.pipeline.groups_per_step
        self.G = cfg.algorithm.group_size
        self.sync = cfg.pipeline.mode == "sync"
        self.max_lag = 0 if self.sync else cfg.pipeline.max_lag
        self.order = AdmissionOrder(in_admission_order(mode=cfg.pipeline.mode, stale_policy=cfg.pipeline.stale_policy))
        s = cfg.rollout.sampling
        self.params = SamplingParams(max_new_tokens=s.max_new_tokens, temperature=s.temperature, top_p=s.top_p,
                                     seed=cfg.seed)
        self.env_canary = {e.name: {"threshold": e.canary_threshold, "patience": e.canary_patience}
                           for e in cfg.data.environments}
        self.published = step
        self.ready: deque[tuple[Group, list[Rollout]]] = deque()
        self.group_tasks: dict[asyncio.Task, Draw | None] = {}  # None: a TTC group (no draw rebuilds it)
        self.draws: dict[int, Draw] = {}  # group id -> its draw, while the group is not yet trained
        self.train_task: asyncio.Task | None = None
        self.train_batch: list[tuple[Group, list[Rollout]]] = []
        self.publish_task: asyncio.Task | None = None
        self.publish_wanted: tuple[Any, int] | None = None
        self.side_tasks: set[asyncio.Task] = set()
        self.pending_samples = 0
        self.nonbinary_envs: set[str] = set()
        self.budget = ErrorBudget(cfg.pipeline.max_failed_groups)
        self.collapse = CollapseMonitor(cfg.logging.collapse_window, cfg.logging.collapse_distinct_per_group)
        self.stop_requested = asyncio.Event()  # set by SIGINT (pipeline.stopping.Interrupts) or the time limit
        self.time_limit_reached = False  # pipeline.rl_time_limit_s ran out (a normal end, not an interruption)
        self.slow_levels: dict[str, int] = {}  # env -> lowest level retired as too slow to generate
        self.window = Window()
        self.trainer_busy_s = 0.0
        self.trainer_idle_frac: float | None = None
        self.rl_wall_s = 0.0
        self._train_t0 = 0.0
        self._scorer_i = 0
        self.ttc = TTCMixer.from_run_config(cfg)  # None unless ttc.fraction > 0
        self.behavioral = BehavioralScorer.from_run_config(cfg)  # None unless behavioral.enabled

    # ---------------------------------------------------------------- groups
    def _scorer(self) -> Any:
        self._scorer_i = (self._scorer_i + 1) % len(self.actors.scorers)
        return self.actors.scorers[self._scorer_i]

    async def run_group(self, draw: Draw, *, kind: str, n: int, params: SamplingParams,
                        problem: dict[str, Any] | None = None, group_id: int | None = None,
                        joint: JointGeneration | None = None) -> Group | None:
        """Problem → n rollouts → scores, for one group. None when the problem could not be generated.

        ``kind``: ``train``, ``ttc`` (a training group whose ``problem`` is an aggregation prompt built by
        ``self.ttc``) or ``eval``. ``group_id``: reserved at admission (None: a new one now). ``joint``:
        generate together with the other groups admitted with it (sync mode).
        """
        scorer = self._scorer()
        env = draw.env
        try:
            problem = problem if problem is not None else await scorer.make_problem.remote(asdict(draw))
        except Exception as e:  # noqa: BLE001 - an environment that fails to generate must not kill the run
            if joint is not None:
                joint.skip()
            # Too slow (pipeline.generate_timeout_s): an adaptive environment stops drawing the level, and the
            # admission loop draws a replacement; `status` reaches through Ray's RayTaskError to the cause.
            if getattr(e, "status", None) == "timeout" and self.sampler.retire_level(env, draw.difficulty):
                self._on_slow_level(env, draw.difficulty)
                return None
            reason = str(getattr(e, "cause", None) or e)  # Ray's RayTaskError: the scorer's exception, no traceback
            log.error("environment %s failed to generate seed=%d difficulty=%d: %s", env, draw.seed,
                      draw.difficulty, reason)
            self.budget.problem_failed(env, reason)  # raises RunStopped once the budget is spent
            self._show(err=self.budget.errors)
            return None
        gid = self._new_group_id() if group_id is None else group_id
        if kind == "train":
            self.draws[gid] = draw
        spec = GroupSpec(gid, env, draw.seed, draw.difficulty, problem, admitted_version=self.published, kind=kind)
        request = (spec, n, params, self.env_canary.get(env))
        rollouts = await (joint.generate(gid, request) if joint is not None else self.actors.workers.generate(*request))
        if kind != "eval":
            self.acc.add_generated(len(rollouts))
            self.pending_samples += len(rollouts)
        group = Group(spec, rollouts)
        texts = [r.text for r in rollouts]
        scores = await scorer.score.remote(problem, texts)
        if self.behavioral is not None and kind != "eval":
            scores = await self.behavioral.rescore(problem, texts, scores)
        apply_scores(group, scores)
        return group

    def _new_group_id(self) -> int:
        # Ids are given at admission, so a group's id (and its sampling seeds) never depends on timing.
        gid, self.next_group_id = self.next_group_id, self.next_group_id + 1
        return gid

    def _on_group_done(self, group: Group) -> None:
        self.budget.group_scored(group)  # raises RunStopped once the budget is spent
        self._show(err=self.budget.errors)
        self.window.add(group)
        if self.ttc is not None:
            self.ttc.on_group_done(group)
        if group.spec.kind != "ttc":  # aggregation accuracy must not move the RLVE ladders
            accs = [r.accuracy for r in group.rollouts if r.status == "ok"]
            self.sampler.observe(group.spec.env, group.spec.difficulty, accs)
        a = self.cfg.algorithm
        kept, dropped = finalize_group(group, advantage=a.advantage, canary_on_flag=self.cfg.canary.on_flag,
                                       filter_equal=a.filter_equal_groups, nonbinary=a.nonbinary_advantage)
        if group.estimator:
            self.window.nonbinary.append(group.nonbinary)
        if group.estimator not in ("", a.advantage) and group.spec.env not in self.nonbinary_envs:
            self.nonbinary_envs.add(group.spec.env)  # said once per environment
            log.warning("environment %s gives rewards that are not all 0 or 1 (e.g. %s): its groups get %s "
                        "advantages instead of %s (algorithm.nonbinary_advantage)", group.spec.env,
                        sorted({r.reward for r in kept})[:4], group.estimator, a.advantage)
        for reason, k in dropped.items():
            self.acc.add_dropped(reason, k)
            self.pending_samples -= k
        if kept:
            self.ready.append((group, kept))
        else:
            self.draws.pop(group.spec.group_id, None)

    def _on_slow_level(self, env: str, level: int) -> None:
        if level < self.slow_levels.get(env, level + 1):
            self.slow_levels[env] = level
            log.warning("environment %s: a problem at difficulty %d took longer than pipeline.generate_timeout_s="
                        "%g s to generate; levels >= %d are no longer drawn", env, level,
                        self.cfg.pipeline.generate_timeout_s, level)

    def _show(self, **fields: Any) -> None:
        """Pin counters to the progress bar (``MetricsLogger.show``) between optimizer steps."""
        show = getattr(self.logger, "show", None)  # evaluation-only runs and test doubles have no bar
        if show is not None:
            show(**fields)

    def _active_groups(self) -> int:
        return len(self.group_tasks) + len(self.ready) + len(self.train_batch) + self.step * self.gps

    def _admit(self, total_steps: int) -> None:
        room = admissible_count(active_groups=self._active_groups(), published_version=self.published,
                                groups_per_step=self.gps, max_lag=self.max_lag)
        room = max(min(room, total_steps * self.gps - self._active_groups()), 0)
        joint = JointGeneration(self.actors.workers.generate_together, room) if self.sync and room else None
        for _ in range(room):
            agg = self.ttc.take(self.acc.groups_submitted) if self.ttc is not None and not self.readmit else None
            if agg is not None:
                task = asyncio.create_task(self.run_group(agg.draw, kind="ttc", n=self.G, params=self.params,
                                                          problem=agg.problem, group_id=self._new_group_id(),
                                                          joint=joint))
                self.group_tasks[task] = None
            else:
                draw = self.readmit.popleft() if self.readmit else self.sampler.draw()
                task = asyncio.create_task(self.run_group(draw, kind="train", n=self.G, params=self.params,
                                                          group_id=self._new_group_id(), joint=joint))
                self.group_tasks[task] = draw
            self.order.admit(task)
            self.acc.groups_submitted += 1

    # ---------------------------------------------------------------- training
    def _take_batch(self) -> list[tuple[Group, list[Rollout]]] | None:
        batch, stale = [], 0
        while self.ready and len(batch) < self.gps:
            group, kept = self.ready.popleft()
            oldest = min((r.min_version for r in kept if r.token_ids), default=self.step)  # empty: no tokens to lag
            if is_stale(self.step, oldest, self.max_lag):
                if self.order.in_order:  # admission order proves lag <= max_lag (pipeline.staleness)
                    raise RuntimeError(f"group {group.spec.group_id} has lag {lag(self.step, oldest)} > max_lag "
                                       f"{self.max_lag} although groups are trained in admission order (a bug)")
                if self.cfg.pipeline.stale_policy == "drop":
                    self.acc.add_dropped("stale", len(kept))
                    self.pending_samples -= len(kept)
                    self.draws.pop(group.spec.group_id, None)
                    continue
                stale += len(kept)
            batch.append((group, kept))
        if len(batch) < self.gps:
            self.ready.extendleft(reversed(batch))  # counted once, when a batch is complete
            return None
        self.acc.stale_trained += stale
        return batch

    def _maybe_start_training(self) -> None:
        if self.train_task is not None:
            return
        batch = self._take_batch()
        if batch is None:
            return
        samples = [
            TrainSample(r.prompt_ids, r.token_ids, r.logprobs, r.advantage, r.routed_experts,
                        lag=lag(self.step, r.min_version))
            for _, kept in batch for r in kept
        ]
        self.train_batch = batch
        self._train_t0 = time.perf_counter()
        self.train_task = asyncio.create_task(self._train(samples))

    async def _train(self, samples: list[TrainSample]) -> dict[str, Any]:
        return await self.actors.trainer.train_step.remote(samples)

    def _on_train_done(self, metrics: dict[str, Any]) -> None:
        call_s = time.perf_counter() - self._train_t0
        self.trainer_busy_s += call_s
        # the trainer call's round trip: the actor's own compute (perf/train_compute_s) plus Ray's transfer and
        # any call queued before it on the actor (the weights of the version before)
        metrics = {**metrics, "perf/train_call_s": call_s}
        batch, self.train_batch, self.train_task = self.train_batch, [], None
        for g, _ in batch:
            self.draws.pop(g.spec.group_id, None)
        n = sum(len(kept) for _, kept in batch)
        self.pending_samples -= n
        lags = [lag(self.step, r.min_version) for _, kept in batch for r in kept]
        if metrics.get("train/skipped"):
            self.acc.add_dropped("nonfinite_step", n)
            log.warning("optimizer step skipped: %s", metrics.get("train/skip_reason"))
            self.logger.log(self.step, {**metrics, **self.acc.metrics()}, advance=0)
            return
        self.acc.add_trained(n)
        self.step += 1
        self._request_publish()
        if self.checkpointer is not None and self.checkpointer.due(self.step):
            self.checkpointer.request(self)
        self.acc.check(self.pending_samples)
        self._log_step(metrics, lags, batch)

    def _log_step(self, metrics: dict[str, Any], lags: list[int], batch: list[tuple[Group, list[Rollout]]]) -> None:
        m = {**metrics, **self.window.metrics(), **self.acc.metrics(), **self.sampler.metrics()}
        for extra in (self.ttc, self.behavioral):
            if extra is not None:
                m.update(extra.metrics())
        m["health/env_errors"] = float(self.budget.errors)
        self.collapse.check(self.step, m)
        self._show(warn=",".join(sorted(self.collapse.active)) or None)
        m["health/warnings"] = float(len(self.collapse.warnings))
        m.update({"pipeline/lag_mean": _mean(lags), "pipeline/lag_max": float(max(lags)),
                  "pipeline/lag_min": float(min(lags)), "pipeline/published_version": float(self.published),
                  "pipeline/inflight_groups": float(len(self.group_tasks)),
                  "pipeline/ready_groups": float(len(self.ready))})
        every = self.cfg.logging.log_samples_every
        if every and self.step % every == 0:
            rows = [[g.spec.env, g.spec.problem.get("messages", [{}])[-1].get("content", ""), r.text, r.reward]
                    for g, kept in batch[:2] for r in kept[:2]]
            self.logger.log_table("rollout/samples", ["env", "prompt", "response", "reward"], rows, self.step)
        self.window = Window()
        self.logger.log(self.step, m)

    # ---------------------------------------------------------------- weights
    def _request_publish(self) -> None:
        # Submitted now, so it runs on the trainer before train step k+1 and sees exactly version k.
        self.publish_wanted = (self.actors.workers.submit_version(self.step), self.step)
        if self.publish_task is None:
            self.publish_task = asyncio.create_task(self._publish())

    async def _publish(self) -> dict[str, float]:
        t0 = time.perf_counter()
        metrics: dict[str, float] = {}
        while self.publish_wanted is not None:
            ref, version = self.publish_wanted
            self.publish_wanted = None
            metrics = await self.actors.workers.deliver(ref, version)
            self.published = version
        return {**metrics, "perf/publish_s": time.perf_counter() - t0}

    # ---------------------------------------------------------------- loop
    def pending_draws(self) -> list[Draw]:
        """The draws of every admitted group not yet trained (checkpoints re-admit them on resume).

        TTC groups have none: their tails are gone after a crash, so their samples are booked interrupted.
        """
        ready = [self.draws.get(g.spec.group_id) for g, _ in [*self.train_batch, *self.ready]]
        return [d for d in (*self.group_tasks.values(), *ready, *self.readmit) if d is not None]

    async def run(self, total_steps: int) -> None:
        """Run until ``total_steps`` optimizer steps are done and the last weights are published.

        After ``stop_requested`` is set, no group is admitted and no step starts; the step in flight
        finishes (so the trainer's weights and ``self.step`` agree for a checkpoint), then the loop ends.
        """
        t_start = time.perf_counter()
        busy0 = self.trainer_busy_s
        stop = asyncio.ensure_future(self.stop_requested.wait())
        try:
            while self.step < total_steps:
                if not self.stop_requested.is_set():
                    self._maybe_start_training()  # first: dropping stale groups frees admission room
                    self._admit(total_steps)
                elif self.train_task is None:
                    break
                waiting = (set(self.group_tasks) - self.order.held) | self.side_tasks
                waiting |= {t for t in (self.train_task, self.publish_task) if t is not None}
                if not waiting:
                    raise RuntimeError(
                        f"pipeline stalled: nothing in flight and not enough groups to train (step {self.step}, "
                        f"published v{self.published}, ready groups {len(self.ready)}, "
                        f"active {self._active_groups()})"
                    )
                wake = set() if stop.done() else {stop}  # a stop request wakes the loop once
                done, _ = await asyncio.wait(waiting | wake, return_when=asyncio.FIRST_COMPLETED)
                for task in done - {stop}:
                    self._dispatch(task)
        finally:
            stop.cancel()
        await self.drain()
        wall = time.perf_counter() - t_start
        self.rl_wall_s += wall
        self.trainer_idle_frac = 1.0 - (self.trainer_busy_s - busy0) / max(wall, 1e-9)
        self.logger.log(self.step, {"perf/trainer_idle_frac": self.trainer_idle_frac, "perf/rl_wall_s": wall},
                        advance=0)

    def reach_time_limit(self) -> None:
        """``pipeline.rl_time_limit_s`` ran out: stop as on SIGINT, but the run ends as a finished one."""
        self.time_limit_reached = True
        self.stop_requested.set()

    def _dispatch(self, task: asyncio.Task) -> None:
        if task in self.group_tasks:
            task.result()  # a failed group stops the run now, not when its turn comes
            for t in self.order.finish(task):  # in admission order unless stale_policy is train/drop (async)
                del self.group_tasks[t]
                group = t.result()
                if group is not None:
                    self._on_group_done(group)
        elif task is self.train_task:
            self._on_train_done(task.result())
        elif task is self.publish_task:
            self.publish_task = None
            self.logger.log(self.step, task.result(), advance=0)
            if self.publish_wanted is not None:
                self.publish_task = asyncio.create_task(self._publish())
        else:
            self.side_tasks.discard(task)
            task.result()

    async def drain(self) -> None:
        """Wait for publication and checkpoints; book generated-but-untrained samples as interrupted."""
        while self.publish_task is not None or self.side_tasks:
            waiting = self.side_tasks | ({self.publish_task} if self.publish_task else set())
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                self._dispatch(task)

    async def stop(self) -> None:
        """Cancel in-flight groups; their generated samples are booked ``interrupted``."""
        for task in list(self.group_tasks):
            task.cancel()
        await asyncio.gather(*self.group_tasks, return_exceptions=True)
        self.group_tasks.clear()
        left = self.pending_samples
        self.acc.add_dropped("interrupted", left)
        self.pending_samples = 0
        self.ready.clear()
        self.acc.check(0)
