"""Sync mode: the groups admitted for one step are generated together, so a run does not depend on timing.

A rollout engine batches whatever requests it holds at each decode step, and a row's logits depend (in the
last bits) on the other rows of its batch: measured on the torch engine, tiny ZAYA on CPU, the same seeded
request gave the same tokens but bit-different log-probs in 19 of 32 cases when the requests of one set
arrived a few event-loop turns apart. With one call per group the batches follow the order in which Ray
delivers calls, so two runs with one seed drift apart after the first RL step.

``JointGeneration`` collects the generation requests of the ``expected`` groups admitted together (in sync
mode: one step's), then sends them at once, in group-id order (``WorkerSet.generate_together``: one call per
worker, a fixed split); each worker hands all its requests to the engine before its first decode step
(``RolloutWorker.generate_groups``). A group whose problem could not be generated (it failed, or took longer
than ``pipeline.generate_timeout_s`` and its level was retired) calls ``skip``, before anything else, so the
others never wait for it; the group admitted in its place later is generated on its own (logged).

Async mode does not use it: there generation overlaps training and weight updates by design, so the batches
(and the policy version of each token) depend on timing anyway (docs/concepts.md §3).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


class JointGeneration:
    """Send the generation requests of ``expected`` groups in one batch once all have arrived.

    Args:
        send: ``list of request tuples -> awaitable list of results`` (``WorkerSet.generate_together``).
        expected: groups that will call ``generate`` or ``skip``.
    """

    def __init__(self, send: Callable[[list[Any]], Awaitable[list[Any]]], expected: int) -> None:
        self.send = send
        self.expected = expected
        self._items: list[tuple[int, Any, asyncio.Future]] = []
        self._task: asyncio.Task | None = None

    async def generate(self, group_id: int, request: Any) -> Any:
        """``request``'s result, once every expected group has arrived and the batch came back."""
        fut = asyncio.get_running_loop().create_future()
        self._items.append((group_id, request, fut))
        self._maybe_send()
        try:
            return await fut
        except asyncio.CancelledError:  # the run stops: stop the batch once nobody waits for it
            if self._task is not None and all(f.cancelled() for _, _, f in self._items):
                self._task.cancel()
            raise

    def skip(self) -> None:
        """One expected group will not generate (its problem failed)."""
        self.expected -= 1
        self._maybe_send()

    def _maybe_send(self) -> None:
        if self._task is None and self._items and len(self._items) >= self.expected:
            self._task = asyncio.ensure_future(self._send())

    async def _send(self) -> None:
        items = sorted(self._items, key=lambda item: item[0])
        try:
            results = await self.send([request for _, request, _ in items])
        except Exception as e:  # noqa: BLE001 - every waiting group fails with the cause
            for _, _, fut in items:
                if not fut.done():
                    fut.set_exception(e)
            return
        for (_, _, fut), result in zip(items, results, strict=True):
            if not fut.done():
                fut.set_result(result)
