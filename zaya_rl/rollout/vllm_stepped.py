"""``SteppedLLM``: the part of ``AsyncLLM``'s API that ``VLLMEngine`` uses, over an in-process ``LLMEngine``.

Why it exists. ``AsyncLLM`` always runs vLLM's engine core in a child process. On the lent GPU machine the
multiprocess engine was seen to hang at start-up while the in-process one worked
(``VLLM_ENABLE_V1_MULTIPROCESSING=0``; shared/gpu/README.md), and an in-process engine also takes tensors
through ``collective_rpc`` directly (research/vllm_ray.md §1b). ``rollout.vllm.frontend: stepped`` selects
this class.

How it runs: like ``TorchEngine``, a background task in the caller's event loop calls ``engine.step()``
(one scheduler iteration: prefill/decode of every running request, synchronous on the GPU) and then
yields to the loop, so ``abort``, new requests and weight updates run between two steps, never during
one. Outputs (DELTA) go to one queue per request. ``pause_generation(mode="keep")`` simply stops stepping:
running requests stay in vLLM's scheduler with their KV cache and continue on ``resume_generation``; no
output can be in flight at a pause, which makes per-token versions exact.

An aborted request gets a final output built here (``LLMEngine`` emits none), carrying the routed
experts recorded so far when vLLM's output processor still holds them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class _Completion:
    """Stand-in for vLLM's ``CompletionOutput`` in a synthetic abort output."""

    token_ids: list[int] = field(default_factory=list)
    logprobs: list = field(default_factory=list)
    finish_reason: str = "abort"
    routed_experts: np.ndarray | None = None


@dataclass
class _Output:
    """Stand-in for vLLM's ``RequestOutput`` (final, aborted)."""

    request_id: str
    outputs: list[_Completion]
    finished: bool = True


class SteppedLLM:
    """In-process vLLM engine with ``AsyncLLM``'s streaming, pause/resume, abort and RPC methods.

    Args:
        engine: a ``vllm.v1.engine.llm_engine.LLMEngine`` built without multiprocessing.
    """

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self._queues: dict[str, asyncio.Queue] = {}
        self._paused = False
        self._resumed = asyncio.Event()
        self._task: asyncio.Task | None = None

    @classmethod
    def from_engine_args(cls, engine_args: Any) -> SteppedLLM:
        """Build the in-process engine from ``vllm.engine.arg_utils.EngineArgs``."""
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # from_engine_args reads it and would override
        from vllm.v1.engine.llm_engine import LLMEngine

        return cls(LLMEngine.from_engine_args(engine_args, enable_multiprocessing=False))

    async def generate(self, prompt: Any, sampling_params: Any, request_id: str) -> AsyncIterator[Any]:
        queue: asyncio.Queue = asyncio.Queue()
        self._queues[request_id] = queue
        self.engine.add_request(request_id, prompt, sampling_params)
        self._kick()
        try:
            while True:
                out = await queue.get()
                if isinstance(out, BaseException):
                    raise out
                yield out
                if out.finished:
                    return
        finally:
            self._queues.pop(request_id, None)

    def _kick(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            while self._queues:
                if self._paused:
                    await self._resumed.wait()
                    continue
                for out in self.engine.step():
                    queue = self._queues.get(out.request_id)
                    if queue is not None:
                        queue.put_nowait(out)
                await asyncio.sleep(0)  # abort / add / pause / weight updates run between steps
        except Exception as exc:  # a failed step fails every waiting request, with the cause
            for queue in self._queues.values():
                queue.put_nowait(exc)

    async def abort(self, request_id: str) -> None:
        queue = self._queues.get(request_id)
        routes = self._routes_so_far(request_id)
        self.engine.abort_request([request_id])
        if queue is not None:
            queue.put_nowait(_Output(request_id, [_Completion(routed_experts=routes)]))

    def _routes_so_far(self, request_id: str) -> np.ndarray | None:
        """Routed experts vLLM's output processor holds for a live request (None if unavailable)."""
        proc = getattr(self.engine, "output_processor", None)
        try:
            states = [proc.request_states[i] for i in proc.external_req_ids.get(request_id, [])]
            chunks = [c for s in states for c in s.routed_experts_chunks]
        except (AttributeError, KeyError):  # internals of another vLLM version: no routes, not an error
            return None
        return np.concatenate(chunks, axis=0) if chunks else None

    async def pause_generation(self, *, mode: str = "keep", clear_cache: bool = False) -> None:
        if mode != "keep":
            raise ValueError(f"SteppedLLM supports pause mode 'keep' only, got {mode!r}")
        self._paused = True
        self._resumed = asyncio.Event()  # fresh: an Event binds to the loop that first waits on it
        if clear_cache:
            # Running requests are recomputed with the new weights on resume (vLLM's keep + clear_cache).
            self.engine.reset_prefix_cache(reset_running_requests=True)

    async def resume_generation(self) -> None:
        self._paused = False
        self._resumed.set()
        if self._queues:
            self._kick()

    async def collective_rpc(
        self, method: Any, timeout: float | None = None, args: tuple = (), kwargs: dict | None = None
    ) -> list[Any]:
        return self.engine.collective_rpc(method, timeout, args, kwargs)

    async def init_weight_transfer_engine(self, request: Any) -> None:
        await self.collective_rpc("init_weight_transfer_engine", kwargs={"init_info": request.init_info})

    async def start_weight_update(self, is_checkpoint_format: bool = True) -> None:
        await self.collective_rpc("start_weight_update", kwargs={"is_checkpoint_format": is_checkpoint_format})

    async def update_weights(self, request: Any) -> None:
        await self.collective_rpc("update_weights", kwargs={"update_info": request.update_info})

    async def finish_weight_update(self) -> None:
        await self.collective_rpc("finish_weight_update")

    def shutdown(self) -> None:
        core = getattr(self.engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
