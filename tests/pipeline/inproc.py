"""The real ``Orchestrator`` with in-process actors, for pipeline tests that need no Ray and no model.

The orchestrator runs unchanged on its asyncio loop; the actors are plain objects behind a ``.remote``
shim: a scripted rollout engine through the real ``RolloutWorker`` and ``WorkerSet``, a trainer that
records its batches (optionally taking ``train_s`` seconds per step), and as the scorer either

* ``Scorer`` here (``run_orchestrator``): the environments' own generators and verifiers, called in
  process, optionally with timing jitter; or
* the real ``zaya_rl.pipeline.scorer.Scorer`` (``inproc_orchestrator``): verifiers in ``VerifierPool``
  worker processes, with their timeouts and failure statuses.

A run of a few steps takes seconds.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Callable, Coroutine
from typing import Any

from environments.base import Problem
from environments.registry import get_spec
from zaya_rl.models.tokenizer import build_byte_tokenizer
from zaya_rl.pipeline.accounting import Accounting
from zaya_rl.pipeline.actors import ActorSet, WorkerSet
from zaya_rl.pipeline.orchestrator import Orchestrator
from zaya_rl.pipeline.records import Group
from zaya_rl.pipeline.rollout_worker import RolloutWorker
from zaya_rl.pipeline.scorer import Scorer as PoolScorer
from zaya_rl.pipeline.setup import make_sampler
from zaya_rl.rollout.fake import ScriptedEngine

TOK = build_byte_tokenizer()
#: Bound on one in-process run (a few seconds on an idle machine).
RUN_TIMEOUT_S = 120


class _Method:
    def __init__(self, fn):
        self.fn = fn

    def remote(self, *args, **kwargs):
        async def call():  # like Ray: awaitable arguments (object refs) are resolved first
            args2 = [await a if isinstance(a, asyncio.Future) else a for a in args]
            out = self.fn(*args2, **kwargs)
            return await out if inspect.isawaitable(out) else out

        return asyncio.ensure_future(call())


class InProc:
    """``handle.method.remote(...)`` on a plain object, returning an awaitable."""

    def __init__(self, obj):
        self.obj = obj

    def __getattr__(self, name):
        return _Method(getattr(self.obj, name))


class Scorer:
    """The environments' generators and verifiers; ``jitter`` (a ``random.Random``) delays every call by up
    to 5 ms, so calls finish in a different order from run to run (as actor calls do)."""

    def __init__(self, jitter=None):
        self.score_calls: list[tuple[dict, list[str]]] = []
        self.jitter = jitter

    async def _wait(self):
        await asyncio.sleep(self.jitter.uniform(0.0, 0.005) if self.jitter else 0.0)

    async def make_problem(self, draw):
        await self._wait()
        return get_spec(draw["env"]).create(**draw["kwargs"]).generate(draw["seed"], draw["difficulty"]).to_dict()

    async def score(self, problem, responses):
        await self._wait()
        self.score_calls.append((problem, responses))
        env = get_spec(problem["env"]).create()
        return [env.verify(Problem.from_dict(problem), r).to_dict() for r in responses]


class Trainer:
    def __init__(self, train_s: float = 0.0):
        self.batches = []
        self.train_s = train_s

    async def train_step(self, samples):
        self.batches.append(samples)
        await asyncio.sleep(self.train_s)
        return {"train/loss": 0.0, "train/skipped": 0.0}

    def get_weights(self, version=0):
        return {}


class Logger:
    def __init__(self):
        self.records = []

    def log(self, step, metrics, advance=1):
        self.records.append({"step": step, **metrics})

    def log_table(self, *args, **kwargs):
        pass


def _actors(cfg, engine: ScriptedEngine, trainer: Trainer, scorer) -> tuple[ActorSet, Accounting]:
    worker = RolloutWorker(cfg.model_dump(mode="json"), 0)
    worker.engine = engine
    acc = Accounting()
    return ActorSet(trainer=InProc(trainer), workers=WorkerSet([InProc(worker)], acc, trainer=InProc(trainer)),
                    scorers=[InProc(scorer)]), acc


def run_orchestrator(cfg, steps, script, *, token_delay=0.0, train_s=0.0, jitter=None):
    """Run ``steps`` optimizer steps; returns ``(orch, groups, scorer, trainer, logger)``, ``groups`` being
    every group the orchestrator finalised, in the order it did (``scorer.jitter``: ``jitter``)."""
    scorer, trainer, logger = Scorer(jitter), Trainer(train_s), Logger()
    actors, acc = _actors(cfg, ScriptedEngine(script, tokenizer=TOK, token_delay=token_delay), trainer, scorer)
    orch = Orchestrator(cfg, actors, make_sampler(cfg), logger, acc)
    groups: list[Group] = []
    done = orch._on_group_done
    orch._on_group_done = lambda g: (groups.append(g), done(g))[-1]
    asyncio.run(orch.run(steps))
    return orch, groups, scorer, trainer, logger


def inproc_orchestrator(cfg, answer: Callable[[str], str], trainer: Trainer | None = None):
    """``(orchestrator, scorer)`` with the real ``Scorer``; every completion is ``answer(prompt text)``.
    Close ``scorer.pool`` after."""
    engine = ScriptedEngine(
        lambda ids: [*TOK.encode(answer(TOK.decode(ids)), add_special_tokens=False), TOK.eos_token_id], tokenizer=TOK)
    scorer = PoolScorer(cfg.model_dump(mode="json"))
    actors, acc = _actors(cfg, engine, trainer or Trainer(), scorer)
    return Orchestrator(cfg, actors, make_sampler(cfg), Logger(), acc), scorer


def run_bounded(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` on a fresh event loop; a hang fails after ``RUN_TIMEOUT_S`` instead of blocking the suite."""
    async def bounded():
        return await asyncio.wait_for(coro, RUN_TIMEOUT_S)

    return asyncio.run(bounded())


def arithmetic_answer(prompt: str) -> str:
    """The right answer to the last ``a+b=``/``a-b=`` of an arithmetic prompt (``Answer: ?`` to any other)."""
    ops = re.findall(r"(\d+)([+-])(\d+)=", prompt)
    if not ops:
        return "Answer: ?"
    a, op, b = ops[-1]
    return f"Answer: {int(a) + int(b) if op == '+' else int(a) - int(b)}"
