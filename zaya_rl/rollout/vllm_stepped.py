"""``SteppedLLM``: the part of ``AsyncLLM``'s API that ``VLLMEngine`` uses, over an in-process ``LLMEngine``.

Why it exists. ``AsyncLLM`` always runs vLLM's engine core in a child process. On the lent GPU machine the
multiprocess engine was seen to hang at start-up while the in-process one worked
(``VLLM_ENABLE_V1_MULTIPROCESSING=0``; shared/gpu/README.md), and an in-process engine also takes tensors
through ``collective_rpc`` directly (research/vllm_ray.md §1b). ``rollout.vllm.frontend: stepped`` selects
this class.

How it runs: like ``TorchEngine``, a background task in the caller's event loop calls ``engine.step()``
(one scheduler iteration: prefill/decode of every running request, synchronous on the GPU) and then
yields to the loop, so ``abort``, new requests and weight updates run between two steps, never during
one. Outputs (DELTA) go to one queue per request, ``stream_interval`` tokens at a time: a step's delta is
merged into the request's held output, and the consumer is woken once the held output has that many tokens
or is final (vLLM's ``--stream-interval``, done here so that versions are still booked every step). Waking
every consumer after every step cost 12.6 us a token of asyncio and stream Python on the 2-core dev CPU, 7.1 us
once per 16 tokens (``benchmarks/stepped_stream.py``), paid in the thread that steps the engine.
``pause_generation(mode="keep")`` simply stops stepping: running requests stay in vLLM's scheduler with their KV
cache and continue on ``resume_generation``.

Per-token versions work as in vLLM >= 0.32, on any vLLM: ``update_weight_version(label)`` sets the label,
every token is booked under the label current when its step ran (labels change only while paused, between
steps), and a request's final output carries ``weight_versions`` spans ``(version, start, end)``
(``zaya_rl.rollout.vllm_versions.WeightVersionSpans`` reads them). Booking at step time, not when a
consumer takes the output from its queue, matters: an update can run between a step and the consumers.

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


@dataclass(frozen=True)
class Span:
    """Output tokens ``start .. end - 1`` of a request were sampled with the weights labelled ``version``."""

    version: str
    start: int
    end: int


@dataclass
class _Completion:
    """Stand-in for vLLM's ``CompletionOutput`` in a synthetic abort output."""

    token_ids: list[int] = field(default_factory=list)
    logprobs: list = field(default_factory=list)
    finish_reason: str = "abort"
    routed_experts: np.ndarray | None = None
    weight_versions: list[Span] = field(default_factory=list)


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
        stream_interval: new tokens per consumer wake-up (a final output always wakes it); 1: every step.
    """

    def __init__(self, engine: Any, stream_interval: int = 1) -> None:
        if stream_interval < 1:
            raise ValueError(f"SteppedLLM.stream_interval must be >= 1, got {stream_interval}")
        self.engine = engine
        self.stream_interval = stream_interval
        self._queues: dict[str, asyncio.Queue] = {}
        self._held: dict[str, Any] = {}  # request id -> output not yet handed to its consumer
        self._paused = False
        self._resumed = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._label = "default"
        self._spans: dict[str, list[Span]] = {}

    @classmethod
    def from_engine_args(cls, engine_args: Any, stream_interval: int = 1) -> SteppedLLM:
        """Build the in-process engine from ``vllm.engine.arg_utils.EngineArgs``."""
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # from_engine_args reads it and would override
        from vllm.v1.engine.llm_engine import LLMEngine

        return cls(LLMEngine.from_engine_args(engine_args, enable_multiprocessing=False), stream_interval)

    async def generate(self, prompt: Any, sampling_params: Any, request_id: str) -> AsyncIterator[Any]:
        queue: asyncio.Queue = asyncio.Queue()
        self._queues[request_id] = queue
        self._spans[request_id] = []
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
            self._spans.pop(request_id, None)
            self._held.pop(request_id, None)

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
                    if out.request_id in self._queues:
                        self._book(out)
                        self._deliver(out)
                await asyncio.sleep(0)  # abort / add / pause / weight updates run between steps
        except Exception as exc:  # a failed step fails every waiting request, with the cause
            self._held.clear()
            for queue in self._queues.values():
                queue.put_nowait(exc)

    def _deliver(self, out: Any) -> None:
        """Merge ``out`` into the request's held output; hand it over once final or ``stream_interval`` long."""
        rid = out.request_id
        held = self._held.pop(rid, None)
        if held is not None:
            out = _merged(held, out)
        if out.finished or len(out.outputs[0].token_ids) >= self.stream_interval:
            self._queues[rid].put_nowait(out)
            return
        if held is None:  # own the lists that later deltas extend (vLLM's may be shared)
            c = out.outputs[0]
            c.token_ids = list(c.token_ids)
            c.logprobs = None if c.logprobs is None else list(c.logprobs)
        self._held[rid] = out

    def _book(self, out: Any) -> None:
        """Book the step's new tokens under the current label; a final output gets the request's spans."""
        spans = self._spans[out.request_id]
        completion = out.outputs[0]
        n = len(completion.token_ids)
        if n:
            end = spans[-1].end if spans else 0
            if spans and spans[-1].version == self._label:
                spans[-1] = Span(self._label, spans[-1].start, end + n)
            else:
                spans.append(Span(self._label, end, end + n))
        if out.finished:
            completion.weight_versions = list(spans)

    async def update_weight_version(self, label: str) -> None:
        """Tokens of steps run from now on carry ``label`` (call it while paused, as with vLLM)."""
        self._label = label

    async def abort(self, request_id: str) -> None:
        queue = self._queues.get(request_id)
        routes = self._routes_so_far(request_id)
        self.engine.abort_request([request_id])
        if queue is not None:
            spans = list(self._spans.get(request_id, ()))
            self._deliver(_Output(request_id, [_Completion(routed_experts=routes, weight_versions=spans)]))

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


def _merged(held: Any, new: Any) -> Any:
    """``new`` carrying ``held``'s tokens and log-probs before its own (two DELTA outputs of one request).

    Everything else (``finished``, finish reason, routed experts, versions) is ``new``'s: only a request's last
    output has them. ``held``'s lists (owned by ``SteppedLLM._deliver``) are extended in place and become
    ``new``'s, so holding k steps costs O(k) copies, not O(k^2)."""
    h, n = held.outputs[0], new.outputs[0]
    h.token_ids.extend(n.token_ids)
    n.token_ids = h.token_ids
    if h.logprobs is None or n.logprobs is None:
        n.logprobs = None  # tokens without log-probs: the consumer's check (sampled_logprobs) names the request
    else:
        h.logprobs.extend(n.logprobs)
        n.logprobs = h.logprobs
    return new
