"""Build the run's optimizer from ``OptimConfig`` (``zaya_rl.config.schema``) and a model.

    optimizer, groups = build_optimizer(model, cfg.optim)
    print(describe_partition(groups))

Gradient clipping (``optim.grad_clip``) and the warm-up schedule (``optim.warmup_steps``) belong to the
train step, not to the optimizer; both work on the returned ``torch.optim.Optimizer`` as usual.

Test: ``python -m pytest tests/optim/test_build.py -q``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from zaya_rl.optim.muon_adamw import MuonAdamW
from zaya_rl.optim.partition import ParamGroupSpec, partition_parameters

if TYPE_CHECKING:  # the schema is torch-free; importing it here only for the annotation keeps that visible
    from zaya_rl.config.schema import OptimConfig


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> tuple[MuonAdamW, list[ParamGroupSpec]]:
    """A ``MuonAdamW`` over the trainable parameters of ``model``, partitioned as ``partition_parameters``.

    Args:
        model: the policy (``ZayaForCausalLM``, ``Qwen3MoeForCausalLM`` or another HF causal LM).
        cfg: the ``optim`` config section.

    Returns:
        The optimizer and its parameter groups (``describe_partition`` prints them).
    """
    groups = partition_parameters(model, muon=cfg.muon, split_gate_up=cfg.split_gate_up)
    if not groups:
        raise ValueError("build_optimizer: the model has no trainable parameters")
    optimizer = MuonAdamW(
        [g.as_param_group() for g in groups],
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        adjust_lr_fn=cfg.muon_adjust_lr,
        ns_steps=cfg.ns_steps,
        betas=cfg.betas,
        eps=cfg.eps,
        ns_dtype=resolve_ns_dtype(cfg.ns_dtype, model),
    )
    return optimizer, groups


def resolve_ns_dtype(name: str, model: nn.Module) -> str:
    """``optim.ns_dtype`` for ``model``'s device (both trainer backends): ``auto`` is bfloat16 on accelerators
    (torch's choice), float32 on CPU (bf16 matmuls are slow there)."""
    if name != "auto":
        return name
    device = next(model.parameters()).device
    return "float32" if device.type == "cpu" else "bfloat16"
