"""Rollout-worker actor: a thin async shell around one rollout engine (torch, vLLM or scripted).

Endpoints: ``generate_group`` (G completions of one problem), ``generate_groups`` (several groups in one
call, sync mode), ``update_weights`` (in flight: the engine
applies them between decode steps while other groups keep decoding), ``incarnation`` (changes when Ray
restarts the actor, so the orchestrator can count restarts and re-send the current weights),
``groups_in_flight`` (groups being generated now; fault drills wait for one before a kill).

The worker applies the chat template and decodes completions; the engine sees only token ids. Because
this is an async actor, many ``generate_group`` calls are in flight at once and the engine batches them.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

from zaya_rl.canary import CompressibilityCanary
from zaya_rl.config import RunConfig
from zaya_rl.models.tokenizer import encode_chat
from zaya_rl.pipeline.records import GroupSpec, Rollout
from zaya_rl.rollout.base import CanarySpec, GenerationRequest, GenerationResult, SamplingParams


class RolloutWorker:
    """Ray actor (created with ``ray.remote(RolloutWorker).options(...)`` by ``pipeline.actors``)."""

    def __init__(self, cfg_dict: dict[str, Any], worker_index: int, built: tuple[Any, Any] | None = None) -> None:
        """``built``: an ``(engine, tokenizer)`` pair already made from this config (a benchmark that wraps
        its own engine); by default ``build_engine`` makes them."""
        from zaya_rl.rollout.factory import build_engine

        self.cfg = RunConfig.model_validate(cfg_dict)
        self.index = worker_index
        self._incarnation = f"{worker_index}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.engine, self.tokenizer = built if built is not None else build_engine(self.cfg)
        self._groups_in_flight = 0

    def incarnation(self) -> str:
        return self._incarnation

    def groups_in_flight(self) -> int:
        return self._groups_in_flight

    def describe(self) -> dict[str, str]:
        """The engine and how it was chosen (logged by the driver at start)."""
        return self.engine.describe()

    def pid(self) -> int:
        """Process id (fault drills kill it to test restarts)."""
        return os.getpid()

    async def update_weights(self, weights: Any, version: int) -> int:
        await self.engine.update_weights(weights, version)
        return version

    async def apply_weight_update(self, update: Any) -> dict[str, float]:
        """One policy version from the trainer's ``WeightSender`` (``zaya_rl.weights``); returns timings."""
        apply = getattr(self.engine, "apply_update", None)
        if apply is not None:  # VLLMEngine: pause (keep) -> transfer -> resume
            return await apply(update)
        from zaya_rl.weights.receive import apply_to_engine

        return await apply_to_engine(self.engine, update)

    async def init_weight_receiver(self, init_info: dict[str, Any]) -> None:
        """Join the trainer's NCCL weight-transfer group (``weight_sync.transport: nccl``)."""
        await self.engine.init_weight_receiver(init_info)

    def _canary_spec(self, env_canary: dict[str, Any] | None) -> CanarySpec | None:
        c = self.cfg.canary
        if not (c.enabled and c.stop_generation):
            return None
        env_canary = env_canary or {}
        return CanarySpec(
            threshold=env_canary.get("threshold") or c.threshold,
            patience=env_canary.get("patience") or c.patience,
            chunk_bytes=c.chunk_bytes,
        )

    async def generate_group(
        self,
        spec: GroupSpec,
        n: int,
        params: SamplingParams,
        env_canary: dict[str, Any] | None = None,
    ) -> list[Rollout]:
        """Sample ``n`` completions of ``spec``'s problem; per-sample seeds derive from the group id."""
        return (await self.generate_groups([(spec, n, params, env_canary)]))[0]

    async def generate_groups(
        self, groups: list[tuple[GroupSpec, int, SamplingParams, dict[str, Any] | None]]
    ) -> list[list[Rollout]]:
        """``generate_group`` for several groups at once: every request reaches the engine before its first
        decode step, in the given order, so the engine's batches depend on the list alone, not on when calls
        arrive (sync mode's reproducibility, ``pipeline.lockstep``)."""
        requests = [self._requests(spec, n, params, env_canary) for spec, n, params, env_canary in groups]
        flat = [r for group in requests for r in group]
        self._groups_in_flight += len(groups)
        try:
            results = iter(await asyncio.gather(*(self.engine.generate(r) for r in flat)))
        finally:
            self._groups_in_flight -= len(groups)
        return [
            [self._to_rollout(spec, i, next(results), env_canary) for i in range(len(reqs))]
            for (spec, _, _, env_canary), reqs in zip(groups, requests, strict=True)
        ]

    def _requests(
        self, spec: GroupSpec, n: int, params: SamplingParams, env_canary: dict[str, Any] | None
    ) -> list[GenerationRequest]:
        prompt_ids = encode_chat(self.tokenizer, spec.problem["messages"], system_prompt=self.cfg.data.system_prompt)
        canary = self._canary_spec(env_canary)
        stop = tuple(params.stop_token_ids) or (self.tokenizer.eos_token_id,)
        return [
            GenerationRequest(
                request_id=f"{spec.kind}-{spec.group_id}-{i}",
                prompt_ids=prompt_ids,
                params=SamplingParams(
                    max_new_tokens=params.max_new_tokens,
                    temperature=params.temperature,
                    top_p=params.top_p,
                    stop_token_ids=stop,
                    # (run seed, group id, sample index): never the order requests arrive in
                    seed=None if params.seed is None else params.seed + 7919 * spec.group_id + i,
                ),
                canary=canary,
            )
            for i in range(n)
        ]

    def _to_rollout(
        self, spec: GroupSpec, i: int, res: GenerationResult, env_canary: dict[str, Any] | None
    ) -> Rollout:
        text = self.tokenizer.decode(res.token_ids, skip_special_tokens=True)
        flagged = res.finish_reason == "degenerate"
        c = self.cfg.canary
        if c.enabled and not c.stop_generation:
            # Monitor-only canary: same statistic, computed on the finished text.
            env_canary = env_canary or {}
            canary = CompressibilityCanary(
                env_canary.get("threshold") or c.threshold, env_canary.get("patience") or c.patience, c.chunk_bytes
            )
            flagged = canary.feed(text)
        return Rollout(
            group_id=spec.group_id,
            index=i,
            prompt_ids=list(res.prompt_ids),
            token_ids=list(res.token_ids),
            logprobs=list(res.logprobs),
            versions=list(res.versions),
            finish_reason=res.finish_reason,
            text=text,
            routed_experts=res.routed_experts,
            canary_flagged=flagged,
        )
