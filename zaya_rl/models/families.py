"""Which checkpoints router replay applies to, known from ``config.json`` alone (no torch import).

Router replay (R3, ``models.router_replay``) needs MoE routers of a family in ``ROUTER_FAMILIES``; a dense
model has none, and another MoE family is not supported. ``replay_unsupported_reason`` reads a checkpoint's
``model_type`` so that ``algorithm.router_replay: true`` on such a model fails before any actor starts
(``pipeline.setup.preflight``); the presets are all MoE.
"""

from __future__ import annotations

import json
from pathlib import Path

#: HF ``model_type`` -> the router class that ``router_replay.ROUTER_FAMILIES`` replays.
REPLAY_MODEL_TYPES = {"zaya": "ZayaRouter", "qwen3_moe": "Qwen3MoeTopKRouter"}


def replay_unsupported_reason(checkpoint: str | Path) -> str | None:
    """None when router replay applies to the checkpoint folder's model, else why not (for an error)."""
    cfg = json.loads((Path(checkpoint) / "config.json").read_text())
    model_type = cfg.get("model_type")
    if model_type in REPLAY_MODEL_TYPES:
        return None
    kind = "an MoE family without replay support" if _looks_moe(cfg) else "a dense model (no MoE router)"
    return (f"{checkpoint} is {model_type!r}, {kind}; router replay supports {sorted(REPLAY_MODEL_TYPES)}. "
            "Set algorithm.router_replay=false (rollout.record_routing=false saves recording too)")


def _looks_moe(cfg: dict) -> bool:
    return any(k in cfg for k in ("num_experts", "num_local_experts", "n_routed_experts"))
