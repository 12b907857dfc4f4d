"""Build the configured rollout engine (``rollout.engine``) and the tokenizer the worker needs.

A registry of builders keyed by the config's ``Literal``: ``torch`` (transformers, CPU or GPU), ``vllm``
(``zaya_rl.rollout.vllm_build``, GPU), ``fake`` (scripted: echoes the prompt's last digits, for
orchestrator plumbing tests that need no model). Heavy imports happen inside each builder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zaya_rl.config import RunConfig
from zaya_rl.rollout.base import RolloutEngine


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _torch(cfg: RunConfig) -> tuple[RolloutEngine, Any]:
    import torch

    from zaya_rl.models.policy import build_model_and_tokenizer
    from zaya_rl.rollout.torch_engine import TorchEngine

    torch.set_num_threads(cfg.rollout.torch_threads)
    model, tokenizer = build_model_and_tokenizer(cfg.model, device=_device(cfg.rollout.device))
    engine = TorchEngine(
        model,
        tokenizer,
        max_batch_size=cfg.rollout.max_batch_size,
        record_routing=cfg.rollout.record_routing,
        seed=cfg.seed,
    )
    return engine, tokenizer


def _fake(cfg: RunConfig) -> tuple[RolloutEngine, Any]:
    from zaya_rl.models.tokenizer import build_byte_tokenizer
    from zaya_rl.rollout.fake import ScriptedEngine

    tokenizer = build_byte_tokenizer()
    digits = set(tokenizer.encode("0123456789", add_special_tokens=False))

    def script(prompt_ids: list[int]) -> list[int]:
        # The prompt's last run of digits, then end of sequence: deterministic, sometimes right.
        tail = [t for t in prompt_ids if t in digits][-2:]
        return [*tail, tokenizer.eos_token_id]

    return ScriptedEngine(script, tokenizer=tokenizer), tokenizer


def _vllm(cfg: RunConfig) -> tuple[RolloutEngine, Any]:
    from zaya_rl.rollout.vllm_build import build

    return build(cfg)


ENGINE_BUILDERS: dict[str, Callable[[RunConfig], tuple[RolloutEngine, Any]]] = {
    "torch": _torch,
    "fake": _fake,
    "vllm": _vllm,
}


def build_engine(cfg: RunConfig) -> tuple[RolloutEngine, Any]:
    """``(engine, tokenizer)`` for ``cfg.rollout.engine``."""
    return ENGINE_BUILDERS[cfg.rollout.engine](cfg)
