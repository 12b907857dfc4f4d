"""``ScriptedEngine``: a rollout engine whose completions are a function of the prompt, for orchestrator tests.

No model and no torch: the completion is ``script(prompt_ids)``, emitted one token at a time (with an
optional per-token delay) so that weight updates, aborts and lag accounting interleave with generation
exactly as with a real engine. Each token carries the engine's current version, so a sequence that spans
an ``update_weights`` records both versions. Stop tokens, ``max_new_tokens`` and the canary (given a
tokenizer) behave as in ``TorchEngine``; a script that runs out without a stop token finishes with
reason ``stop`` (it stands for a model that ended its answer).

Run ``python -m pytest tests/rollout/test_fake.py -q``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from zaya_rl.models.detokenize import CanaryFeed
from zaya_rl.rollout.base import FinishReason, GenerationRequest, GenerationResult, RolloutEngine, WeightsLike


def default_logprob(prompt_ids: Sequence[int], position: int, token: int) -> float:
    """A plausible, deterministic behaviour log-prob in [-0.5, -0.1]."""
    return -0.1 * (1 + token % 5)


class ScriptedEngine(RolloutEngine):
    """Scripted rollout engine (see the module docstring).

    Args:
        script: ``prompt_ids -> completion token ids``.
        logprob: ``(prompt_ids, position, token) -> behaviour log-prob``.
        token_delay: seconds to wait before each token (0: only yield to the event loop).
        tokenizer: needed only for requests with a canary (to detokenize).
        routing: ``(num_layers, top_k, num_experts)`` to return deterministic ``routed_experts``
            (``(position + layer + slot) % num_experts``); None returns no routes (dense model).
        version: initial policy version.
    """

    def __init__(
        self,
        script: Callable[[list[int]], Sequence[int]],
        *,
        logprob: Callable[[Sequence[int], int, int], float] = default_logprob,
        token_delay: float = 0.0,
        tokenizer=None,
        routing: tuple[int, int, int] | None = None,
        version: int = 0,
    ) -> None:
        if token_delay < 0:
            raise ValueError(f"ScriptedEngine.token_delay must be >= 0, got {token_delay}")
        self.script = script
        self.logprob = logprob
        self.token_delay = token_delay
        self.tokenizer = tokenizer
        self.routing = routing
        self._version = version
        #: ``(version, parameter names)`` of every ``update_weights`` call, in order.
        self.weight_updates: list[tuple[int, list[str]]] = []
        #: Request ids in the order ``generate`` was called.
        self.requests_seen: list[str] = []
        self._aborted: set[str] = set()
        self._live: set[str] = set()
        self._closed = False

    @property
    def version(self) -> int:
        return self._version

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        if self._closed:
            raise RuntimeError("ScriptedEngine is closed")
        if request.canary is not None and self.tokenizer is None:
            raise ValueError(
                f"request {request.request_id!r} has a canary but the ScriptedEngine has no tokenizer"
            )
        rid, prompt, p = request.request_id, list(request.prompt_ids), request.params
        self.requests_seen.append(rid)
        self._live.add(rid)
        c = request.canary
        canary = None if c is None else CanaryFeed(self.tokenizer, c.threshold, c.patience, c.chunk_bytes)
        tokens, logprobs, versions = [], [], []
        reason: FinishReason | None = None
        try:
            for token in list(self.script(prompt))[: p.max_new_tokens]:
                await asyncio.sleep(self.token_delay)
                if rid in self._aborted:
                    reason = "abort"
                    break
                tokens.append(int(token))
                logprobs.append(float(self.logprob(prompt, len(tokens) - 1, int(token))))
                versions.append(self._version)
                reason = self._finish_reason(
                    canary, int(token), len(tokens), p.stop_token_ids, p.max_new_tokens
                )
                if reason is not None:
                    break
            reason = reason or "stop"
        finally:
            self._live.discard(rid)
            self._aborted.discard(rid)
        return GenerationResult(
            request_id=rid,
            prompt_ids=prompt,
            token_ids=tokens,
            logprobs=logprobs,
            versions=versions,
            finish_reason=reason,
            routed_experts=self._routes(len(prompt) + max(len(tokens), 1) - 1),
            canary_ratios=canary.ratios if canary is not None else [],
        )

    @staticmethod
    def _finish_reason(
        canary: CanaryFeed | None, token: int, n: int, stop_ids: Sequence[int], max_new: int
    ) -> FinishReason | None:
        if canary is not None and canary.push(token):
            return "degenerate"
        if token in stop_ids:
            return "stop"
        return "length" if n >= max_new else None

    def _routes(self, rows: int) -> np.ndarray | None:
        if self.routing is None:
            return None
        layers, top_k, experts = self.routing
        grid = (
            np.arange(rows)[:, None, None]
            + np.arange(layers)[None, :, None]
            + np.arange(top_k)[None, None, :]
        )
        return (grid % experts).astype(np.int16)

    async def update_weights(self, weights: WeightsLike, version: int) -> None:
        names = list(weights.keys()) if isinstance(weights, Mapping) else [name for name, _ in weights]
        self.weight_updates.append((version, names))
        self._version = version

    async def abort(self, request_id: str) -> None:
        if request_id in self._live:
            self._aborted.add(request_id)

    async def close(self) -> None:
        self._closed = True
        self._aborted |= self._live
