"""The rollout-engine interface shared by the torch, vLLM and scripted-fake engines.

An engine turns token ids into token ids. It knows nothing about prompts, chat templates or rewards
(the rollout worker does the tokenisation; nanochat's engine makes the same cut). Every generated token
comes back with the three things asynchronous RL needs from the sampler:

- the behaviour log-probability of the sampled token under the exact distribution it was drawn from
  (temperature applied, top-p renormalised: vLLM's ``processed_logprobs``),
- the policy version whose weights produced it (a sequence may span an in-flight weight update),
- the routed experts of every MoE layer at every input position (router replay, research/algorithms.md §6).

The API is ``async`` because the production engine (vLLM ``AsyncLLM``) is: many ``generate`` calls are
in flight at once, and ``update_weights`` may arrive between two decode steps of those sequences.
``run_requests`` drives an engine from synchronous code (evaluation, RSA, tests).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

FinishReason = Literal["stop", "length", "degenerate", "abort"]

#: Sentinel in ``GenerationResult.routed_experts`` for an (input position, layer) with no recorded route.
#: Never expert 0: a zero would silently replay as a real expert (google/tunix#2046).
NO_ROUTE = -1


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one request.

    Attributes:
        max_new_tokens: generation budget in tokens (the Dr-GRPO L_max of the loss when it is the largest).
        temperature: softmax temperature; 0 means greedy (behaviour log-probs are then those of T=1).
        top_p: nucleus mass; the behaviour distribution is renormalised over the kept tokens.
        stop_token_ids: generation stops after emitting any of these (the token is kept).
        seed: per-request sampling seed, for reproducible sampling; None draws from the engine's stream.
    """

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop_token_ids: tuple[int, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"SamplingParams.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"SamplingParams.temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"SamplingParams.top_p must be in (0, 1], got {self.top_p}")


@dataclass(frozen=True)
class CanarySpec:
    """Streaming compressibility-canary settings for one request (``zaya_rl.canary``)."""

    threshold: float = 0.10
    patience: int = 8
    chunk_bytes: int = 512


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to complete.

    Attributes:
        request_id: unique id; results and aborts refer to it.
        prompt_ids: prompt token ids (chat template already applied).
        params: sampling parameters.
        canary: when set, the engine feeds the decoded text to a streaming canary and stops the sequence
            with finish reason ``degenerate`` once it flags.
    """

    request_id: str
    prompt_ids: Sequence[int]
    params: SamplingParams
    canary: CanarySpec | None = None


@dataclass
class GenerationResult:
    """The completion of one request.

    Attributes:
        request_id: the request's id.
        prompt_ids: the prompt token ids, ``[P]``.
        token_ids: generated token ids, ``[G]``.
        logprobs: behaviour log-prob of each generated token, ``[G]`` (processed: temperature/top-p applied).
        versions: policy version that sampled each generated token, ``[G]``.
        finish_reason: "stop" (a stop token), "length" (budget), "degenerate" (canary), "abort".
        routed_experts: int16 ``[P + G - 1, num_moe_layers, top_k]``: row i is the routing of input
            position i of ``prompt + generated[:-1]`` (the last token is never fed back); ``NO_ROUTE``
            where nothing was recorded. None for dense models or when recording is off.
        canary_ratios: marginal compression ratio of each completed canary chunk.
    """

    request_id: str
    prompt_ids: list[int]
    token_ids: list[int]
    logprobs: list[float]
    versions: list[int]
    finish_reason: FinishReason
    routed_experts: np.ndarray | None = None
    canary_ratios: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not len(self.token_ids) == len(self.logprobs) == len(self.versions):
            raise ValueError(
                f"GenerationResult {self.request_id}: token_ids ({len(self.token_ids)}), logprobs "
                f"({len(self.logprobs)}) and versions ({len(self.versions)}) must have equal lengths"
            )

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


WeightsLike = Mapping[str, "object"] | Iterable[tuple[str, "object"]]


class RolloutEngine(ABC):
    """Asynchronous token-in/token-out generation with in-flight weight updates.

    Implementations: ``zaya_rl.rollout.torch_engine.TorchEngine`` (CPU, GPU fallback, any HF model),
    ``zaya_rl.rollout.vllm_engine.VLLMEngine`` (production GPU path) and
    ``zaya_rl.rollout.fake.ScriptedEngine`` (orchestrator tests).
    """

    @property
    @abstractmethod
    def version(self) -> int:
        """The policy version that new tokens are sampled with."""

    @abstractmethod
    async def generate(self, request: GenerationRequest) -> GenerationResult:
        """Complete one request. Many calls may be in flight at once; the engine batches them."""

    @abstractmethod
    async def update_weights(self, weights: WeightsLike, version: int) -> None:
        """Load new weights between two decode steps; unfinished sequences continue with their cache.

        Tokens sampled after the call returns carry ``version``. ``weights`` maps HF parameter names to
        tensors (a full or partial state dict).
        """

    @abstractmethod
    async def abort(self, request_id: str) -> None:
        """Stop a request; its ``generate`` call returns the partial result with reason ``abort``."""

    async def close(self) -> None:  # noqa: B027 - optional hook, engines without resources skip it
        """Release the engine's resources."""

    def describe(self) -> dict[str, str]:
        """What runs the rollouts, for the run log (engines add how they were configured and why)."""
        return {"engine": type(self).__name__}


def run_requests(engine: RolloutEngine, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
    """Run ``requests`` concurrently on ``engine`` from synchronous code; results in request order."""

    async def _all() -> list[GenerationResult]:
        return list(await asyncio.gather(*(engine.generate(r) for r in requests)))

    return asyncio.run(_all())
