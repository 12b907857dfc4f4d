"""Parallelism around the model (STYLE rule 9): DeepSpeed ZeRO-2/3 with our Muon + AdamW, or nothing.

``wrap_for_training(model, optim_cfg, trainer_cfg, dtype=...)`` returns a ``TrainingSetup``. The torch
backend is a no-op wrapper (``MuonAdamW`` from ``build_optimizer``). The deepspeed backend hands the
model to ``deepspeed.initialize`` with ZeRO stage ``trainer.zero_stage``; ``zaya_rl.models`` holds no
DeepSpeed code.

**Our Muon under ZeRO (exact).** A custom optimizer under ZeRO sees flat partitions, on which
Newton–Schulz is meaningless. DeepSpeed 0.19.8's own Muon orthogonalises the *full* gradient before
partitioning (ZeRO-1/2: ``stage_1_and_2.get_flat_partition``; ZeRO-3: gathered, with
``reduce_scatter: false``) by calling ``original_muon.muon_update(grad, momentum, ..., is_expert_group=,
num_heads=)``, then steps each Muon partition as ``p ← (1 − lr·wd)·p − lr·update``. We use that path and
replace the update rule:

1. Every parameter is tagged from *our* partition (``optim.partition``), not DeepSpeed's
   ``set_optimizer_flags`` (which would send ZAYA's 3-D conv kernels to Muon): ``use_muon``, plus a
   ``MuonSpec`` (shape, split-halves, NS settings, AdjustLR) in ``is_expert_group`` and ``muon_num_heads``
   — the two per-parameter attributes DeepSpeed forwards to ``muon_update`` at its call sites (ZeRO-3
   passes only the latter, one ZeRO-2 path only the former).
2. ``muon_update`` is replaced (``install_muon_hook``; DeepSpeed imports it at each call) by a dispatcher:
   for a ``MuonSpec`` it returns ``orthogonalised_update(grad, group) · AdjustLR(1, A, B)`` — per expert
   for 3-D stacks, gate/up halves separately, our NS coefficients and dtype — and ignores the momentum
   buffer (momentum-free). Since AdjustLR is linear in lr, DeepSpeed's ``p − lr·update`` is exactly our
   ``W ← (1 − γλ)W − AdjustLR(γ, A, B)·O``.
3. AdamW groups keep their per-group weight decay (vectors: 0) through DeepSpeed's Muon param-group
   split, and step with ``torch.optim.AdamW`` (``torch_adam``), elementwise and therefore exact on flat
   partitions.

**Deviations (documented, not hidden).** (a) DeepSpeed still allocates its Muon momentum buffer (one
fp32 copy of the Muon partitions; never read by our rule). (b) ``optim.grad_clip`` is not applied when
Muon is on: DeepSpeed clips by the norm of its partitions, where Muon groups already hold updates of
norm ≈ 0.2·sqrt(A·B) per matrix, so its clip would shrink every step by a factor unrelated to the
gradient. Muon's update does not depend on the gradient's scale, so only the AdamW-trained parameters
(embeddings, norms, biases) lose clipping; with ``optim.muon: false`` DeepSpeed's clip equals ours.
(c) A non-finite gradient is caught by DeepSpeed's overflow check (``check_grad_overflow``), which skips
the step on every rank.

Test: ``python -m pytest tests/trainer/test_parallel.py -q`` (the production config's ZeRO-3 path on one gloo
rank against the torch step; ``-m slow``: two ranks, ZeRO-2, Qwen3-MoE, bf16); on GPUs
``tests/gpu/test_deepspeed_gpu.py``. Both run ``tests/trainer/ds_equivalence.py``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from zaya_rl.optim.build import build_optimizer, resolve_ns_dtype
from zaya_rl.optim.muon import ADJUST_LR, MUON_DEFAULTS, orthogonalised_update
from zaya_rl.optim.partition import ParamGroupSpec


@dataclass(frozen=True, eq=False)
class MuonSpec:
    """Our Muon rule for one parameter, carried to DeepSpeed's ``muon_update`` call sites (truthy)."""

    shape: tuple[int, ...]
    group: dict[str, Any] = field(repr=False)

    def update(self, grad: torch.Tensor) -> torch.Tensor:
        """``orthogonalised_update(grad) · AdjustLR(1, A, B)``, shaped and typed like ``grad``."""
        update, rows, cols = orthogonalised_update(grad.reshape(self.shape), self.group)
        scale = ADJUST_LR[self.group["adjust_lr_fn"]](1.0, rows, cols)
        return (update * scale).to(grad.dtype).reshape(grad.shape)


def zaya_muon_update(grad: torch.Tensor, momentum: Any, *args: Any, is_expert_group: Any = False,
                     num_heads: Any = None, **kwargs: Any) -> torch.Tensor:
    """Drop-in for ``deepspeed...original_muon.muon_update``: our rule for tagged params, else DeepSpeed's."""
    spec = num_heads if isinstance(num_heads, MuonSpec) else is_expert_group
    if not isinstance(spec, MuonSpec):
        return _DEEPSPEED_MUON_UPDATE[0](grad, momentum, *args, is_expert_group=is_expert_group,
                                         num_heads=num_heads, **kwargs)
    if not bool(torch.isfinite(grad).all()):
        return grad  # let DeepSpeed's overflow check see the non-finite gradient and skip the step
    return spec.update(grad)


#: DeepSpeed's original ``muon_update`` (set by ``install_muon_hook``).
_DEEPSPEED_MUON_UPDATE: list[Any] = []


def install_muon_hook() -> None:
    """Replace DeepSpeed's ``muon_update`` by ``zaya_muon_update`` (idempotent, process-wide)."""
    from deepspeed.runtime.zero.muon import original_muon

    if original_muon.muon_update is not zaya_muon_update:
        _DEEPSPEED_MUON_UPDATE[:] = [original_muon.muon_update]
        original_muon.muon_update = zaya_muon_update


def tag_parameters(groups: Sequence[ParamGroupSpec], optimizer_defaults: dict[str, Any]) -> None:
    """Set ``use_muon`` and the ``MuonSpec`` attributes from our partition (module docstring, step 1)."""
    for g in groups:
        muon = g.algorithm == "muon"
        opts = {**optimizer_defaults, **g.options} if muon else {}
        for p in g.params:
            p.use_muon = muon
            spec = MuonSpec(tuple(p.shape), opts) if muon else None
            p.is_expert_group = spec if muon else False
            p.muon_num_heads = spec


def deepspeed_config(optim_cfg: Any, trainer_cfg: Any, dtype: str) -> dict[str, Any]:
    """The DeepSpeed config dict (pure; ``tests/trainer/test_parallel.py`` checks it)."""
    common = {"lr": optim_cfg.lr, "weight_decay": optim_cfg.weight_decay, "betas": list(optim_cfg.betas),
              "eps": optim_cfg.eps, "torch_adam": True}
    if optim_cfg.muon:
        optimizer = {"type": "Muon", "params": {**common, "momentum": 0.0}}
    else:
        optimizer = {"type": "AdamW", "params": common}
    zero: dict[str, Any] = {"stage": trainer_cfg.zero_stage}
    if trainer_cfg.zero_stage == 3 and optim_cfg.muon:
        zero["reduce_scatter"] = False  # DeepSpeed: "Muon and reduce scatter cannot be used together"
    return {
        "train_micro_batch_size_per_gpu": 1,  # required key; micro-batching is ours (trainer.batch)
        "gradient_accumulation_steps": 1,
        # backward() only accumulates; step() reduces and updates: any number of micro-batches per step.
        "managed_gradient_accumulation": False,
        "optimizer": optimizer,
        "zero_optimization": zero,
        "gradient_clipping": 0.0 if optim_cfg.muon else optim_cfg.grad_clip,  # deviation (b)
        "bf16": {"enabled": dtype == "bfloat16", "check_grad_overflow": True},
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }


@dataclass
class TrainingSetup:
    """What the trainer actor trains with.

    Attributes:
        model: the HF policy (DeepSpeed: inside ``engine.module``, a ``LossHost``).
        optimizer: holds the param groups whose ``lr`` the warm-up schedule sets (DeepSpeed: the ZeRO
            optimizer).
        groups: our parameter partition.
        engine: the ``DeepSpeedEngine`` (None for the torch backend).
        zero_stage: 0 for the torch backend.
        rank: data-parallel rank; world_size: data-parallel ranks.
    """

    model: nn.Module
    optimizer: Any
    groups: list[ParamGroupSpec]
    engine: Any = None
    zero_stage: int = 0
    rank: int = 0
    world_size: int = 1

    def named_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Full parameters in checkpoint order (ZeRO-3: gathered one at a time; every rank must iterate)."""
        for name, p in self.model.named_parameters():
            with _gathered(p, self.zero_stage):
                yield name, p.data


def _gathered(p: nn.Parameter, zero_stage: int) -> Any:
    if zero_stage != 3:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters([p], modifier_rank=None)


def _torch_backend(model: nn.Module, optim_cfg: Any, trainer_cfg: Any, dtype: str) -> TrainingSetup:
    if trainer_cfg.compile:
        from zaya_rl.trainer.compile import compile_layers

        compile_layers(model)
    optimizer, groups = build_optimizer(model, optim_cfg)
    return TrainingSetup(model=model, optimizer=optimizer, groups=groups)


class LossHost(nn.Module):
    """The module DeepSpeed wraps: its forward is one micro-batch's loss (``trainer.step._micro_batch_loss``).

    Why: the loss reads the output-embedding weight outside ``lm_head.forward`` (chunked log-probs,
    ``token_logprobs``). ZeRO-3 gathers a parameter only inside the forward of a module that owns or
    registered it, so the weight is registered as an *external parameter* of this host, whose forward spans
    the whole loss (and whose backward its gradient).
    """

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, mb: Any, *, num_sequences: int, num_tokens: int, settings: Any, replay_stats: Any = None) -> Any:
        from zaya_rl.trainer.step import _micro_batch_loss

        return _micro_batch_loss(self.policy, mb, num_sequences=num_sequences, num_tokens=num_tokens,
                                 settings=settings, replay_stats=replay_stats)


def _deepspeed_backend(model: nn.Module, optim_cfg: Any, trainer_cfg: Any, dtype: str) -> TrainingSetup:
    import deepspeed

    from zaya_rl.optim.partition import partition_parameters

    groups = partition_parameters(model, muon=optim_cfg.muon, split_gate_up=optim_cfg.split_gate_up)
    defaults = {**MUON_DEFAULTS, "ns_steps": optim_cfg.ns_steps, "adjust_lr_fn": optim_cfg.muon_adjust_lr,
                "ns_dtype": resolve_ns_dtype(optim_cfg.ns_dtype, model)}
    tag_parameters(groups, defaults)
    install_muon_hook()
    params = [{"params": g.params, "name": g.name.replace("/", "_"),
               **{k: v for k, v in g.options.items() if k == "weight_decay"}} for g in groups]
    host = LossHost(model)
    original_flags = deepspeed.set_optimizer_flags
    deepspeed.set_optimizer_flags = lambda config, model: None  # keep our tags (step 1)
    try:
        engine, optimizer, _, _ = deepspeed.initialize(
            model=host, model_parameters=params, config=deepspeed_config(optim_cfg, trainer_cfg, dtype)
        )
    finally:
        deepspeed.set_optimizer_flags = original_flags
    if trainer_cfg.zero_stage == 3:
        deepspeed.zero.register_external_parameter(host, model.get_output_embeddings().weight)
    import torch.distributed as dist

    return TrainingSetup(model=model, optimizer=optimizer, groups=groups, engine=engine,
                         zero_stage=trainer_cfg.zero_stage, rank=dist.get_rank(), world_size=dist.get_world_size())


#: ``trainer.backend`` -> wrapper.
BACKENDS = {"torch": _torch_backend, "deepspeed": _deepspeed_backend}


def wrap_for_training(model: nn.Module, optim_cfg: Any, trainer_cfg: Any, *, dtype: str = "float32") -> TrainingSetup:
    """Wrap ``model`` for ``trainer.backend`` (module docstring). DeepSpeed needs ``init_distributed`` first."""
    return BACKENDS[trainer_cfg.backend](model, optim_cfg, trainer_cfg, dtype)


def init_distributed(rank: int, world_size: int, master_addr: str, master_port: int, backend: str) -> None:
    """Set the rendezvous environment and start DeepSpeed's process group (``nccl`` on GPUs, ``gloo`` on CPU)."""
    import deepspeed

    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": "0",
                       "MASTER_ADDR": master_addr, "MASTER_PORT": str(master_port)})
    if backend == "gloo":
        # On CPUs DeepSpeed would JIT-compile its shared-memory all-reduce (``deepspeed_shm_comm``) here: 85-330 s
        # of C++ build on each fresh machine (measured) for a speed-up of CPU collectives only. Plain gloo is
        # exact without it; ``deepspeed.ops`` keeps this dict for the process, so the edit holds.
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False)
