"""The real ``Orchestrator`` with in-process actors: a scripted engine behind the real ``RolloutWorker``
and ``WorkerSet``, a real ``Scorer`` (verifiers in ``VerifierPool`` worker processes), ``test_ttc``'s
recording trainer and logger. No Ray, no model; a run of a few steps takes seconds.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Coroutine
from typing import Any

from test_ttc import TOK, InProc, Logger, Trainer

from zaya_rl.pipeline.accounting import Accounting
from zaya_rl.pipeline.actors import ActorSet, WorkerSet
from zaya_rl.pipeline.orchestrator import Orchestrator
from zaya_rl.pipeline.rollout_worker import RolloutWorker
from zaya_rl.pipeline.scorer import Scorer
from zaya_rl.pipeline.setup import make_sampler
from zaya_rl.rollout.fake import ScriptedEngine

#: Bound on one in-process run (a few seconds on an idle machine).
RUN_TIMEOUT_S = 120


def inproc_orchestrator(cfg, answer: Callable[[str], str], trainer: Trainer | None = None):
    """``(orchestrator, scorer)``; every completion is ``answer(prompt text)``. Close ``scorer.pool`` after."""
    worker = RolloutWorker(cfg.model_dump(mode="json"), 0)
    worker.engine = ScriptedEngine(
        lambda ids: [*TOK.encode(answer(TOK.decode(ids)), add_special_tokens=False), TOK.eos_token_id], tokenizer=TOK)
    scorer = Scorer(cfg.model_dump(mode="json"))
    trainer = trainer or Trainer()
    acc = Accounting()
    actors = ActorSet(trainer=InProc(trainer), workers=WorkerSet([InProc(worker)], acc, trainer=InProc(trainer)),
                      scorers=[InProc(scorer)])
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
