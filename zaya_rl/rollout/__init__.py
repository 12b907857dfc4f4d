"""Rollout engines: token ids in, token ids + behaviour log-probs + versions + routed experts out.

- ``zaya_rl.rollout.base``: the ``RolloutEngine`` interface and the request/result records.
- ``zaya_rl.rollout.torch_engine.TorchEngine``: transformers model, continuous batching, in-flight weight
  updates, router recording by hooks (CPU and GPU).
- ``zaya_rl.rollout.fake.ScriptedEngine``: scripted completions for orchestrator tests (no torch).

Engines are imported from their modules, so importing this package stays light (no torch).
"""

from zaya_rl.rollout.base import (
    NO_ROUTE,
    CanarySpec,
    GenerationRequest,
    GenerationResult,
    RolloutEngine,
    SamplingParams,
    run_requests,
)

__all__ = [
    "NO_ROUTE",
    "CanarySpec",
    "GenerationRequest",
    "GenerationResult",
    "RolloutEngine",
    "SamplingParams",
    "run_requests",
]
