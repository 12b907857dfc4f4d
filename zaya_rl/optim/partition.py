"""Which parameters Muon trains and which AdamW trains (DESIGN.md §4, research/algorithms.md §5 table).

Each trainable parameter gets one *role* from the first matching rule of ``ROLE_RULES``:

| role | rule | optimizer |
| --- | --- | --- |
| embedding | weight of an ``nn.Embedding`` or of the output embedding (tied ``lm_head``) | AdamW |
| expert_gate_up | 3-D direct parameter of an ``experts`` module named ``*gate_up_proj`` | Muon, halves split |
| expert | other 3-D direct parameter of an ``experts`` module (``down_proj [E, H, I]``) | Muon, per expert |
| matrix | any other 2-D parameter (attention, router, dense MLP projections) | Muon |
| vector | 0-/1-D parameters: norm gains, biases, residual scales, ``qk_norm.temp`` | AdamW, no decay |
| other | anything else, e.g. ZAYA's CCA conv1d kernels ``[C, C/g, 2]`` (3-D but not experts) | AdamW |

Experts are recognised by name (``...experts.gate_up_proj``/``...experts.down_proj`` in transformers'
ZAYA and Qwen3-MoE), never by ``ndim == 3`` alone, because ZAYA's conv kernels are 3-D too. Vectors get no
weight decay: their natural value is not 0 (norm gains and scales start at 1). Buffers (ZAYA's router
``balancing_biases``) and frozen parameters are not trained. With ``muon=False`` every role goes to AdamW.

Test: ``python -m pytest tests/optim/test_partition.py -q``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

#: A direct parameter of a module named ``experts`` (transformers' fused MoE experts).
_EXPERT_PARAM = re.compile(r"(^|\.)experts\.[A-Za-z0-9_]+$")


@dataclass(frozen=True)
class ParamInfo:
    """What the role rules look at."""

    name: str
    param: nn.Parameter
    is_embedding: bool


def _is_expert(info: ParamInfo) -> bool:
    return info.param.ndim == 3 and bool(_EXPERT_PARAM.search(info.name))


#: Ordered (role, predicate) rules; the first match wins (module docstring table).
ROLE_RULES: tuple[tuple[str, Callable[[ParamInfo], bool]], ...] = (
    ("embedding", lambda i: i.is_embedding),
    ("expert_gate_up", lambda i: _is_expert(i) and i.name.endswith("gate_up_proj")),
    ("expert", _is_expert),
    ("matrix", lambda i: i.param.ndim == 2),
    ("vector", lambda i: i.param.ndim <= 1),
    ("other", lambda i: True),
)

#: role → (group name, algorithm, per-group options) when Muon is on.
MUON_GROUPS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "matrix": ("muon/matrices", "muon", {}),
    "expert": ("muon/experts", "muon", {}),
    "expert_gate_up": ("muon/experts_gate_up", "muon", {"split_halves": True}),
    "embedding": ("adamw/embeddings", "adamw", {}),
    "vector": ("adamw/vectors", "adamw", {"weight_decay": 0.0}),
    "other": ("adamw/other", "adamw", {}),
}

#: role → group when Muon is off (``optim.muon=False``): AdamW everywhere, still no decay on vectors.
ADAMW_GROUPS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "matrix": ("adamw/matrices", "adamw", {}),
    "expert": ("adamw/matrices", "adamw", {}),
    "expert_gate_up": ("adamw/matrices", "adamw", {}),
    "embedding": ("adamw/embeddings", "adamw", {}),
    "vector": ("adamw/vectors", "adamw", {"weight_decay": 0.0}),
    "other": ("adamw/other", "adamw", {}),
}


@dataclass(frozen=True)
class ParamGroupSpec:
    """One optimizer param group: its name, rule, members and per-group options."""

    name: str
    algorithm: str
    options: dict[str, Any]
    names: list[str] = field(default_factory=list)
    params: list[nn.Parameter] = field(default_factory=list)

    @property
    def numel(self) -> int:
        """Scalars in the group."""
        return sum(p.numel() for p in self.params)

    def as_param_group(self) -> dict[str, Any]:
        """The dict handed to ``MuonAdamW``."""
        return {"params": list(self.params), "algorithm": self.algorithm, "name": self.name, **self.options}


def _embedding_ids(model: nn.Module) -> set[int]:
    ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    get_out = getattr(model, "get_output_embeddings", None)
    out = get_out() if callable(get_out) else None
    if out is not None and getattr(out, "weight", None) is not None:
        ids.add(id(out.weight))
    return ids


def parameter_role(info: ParamInfo) -> str:
    """The role of one parameter (first matching rule of ``ROLE_RULES``)."""
    return next(role for role, rule in ROLE_RULES if rule(info))


def partition_parameters(
    model: nn.Module, *, muon: bool = True, split_gate_up: bool = True
) -> list[ParamGroupSpec]:
    """Split the trainable parameters of ``model`` into optimizer groups (module docstring).

    Args:
        model: a ``ZayaForCausalLM``, ``Qwen3MoeForCausalLM`` or other HF-style causal LM.
        muon: False sends every parameter to AdamW.
        split_gate_up: orthogonalise the gate and up halves of fused expert ``gate_up_proj`` separately;
            False treats each expert's whole ``[2I, H]`` as one matrix.

    Returns:
        Non-empty groups in a fixed order (Muon groups first); tied weights appear once.
    """
    table = MUON_GROUPS if muon else ADAMW_GROUPS
    embeddings = _embedding_ids(model)
    groups: dict[str, ParamGroupSpec] = {}
    for name, param in model.named_parameters():  # deduplicates tied parameters
        if not param.requires_grad:
            continue
        role = parameter_role(ParamInfo(name, param, id(param) in embeddings))
        if role == "expert_gate_up" and not split_gate_up:
            role = "expert"
        group_name, algorithm, options = table[role]
        spec = groups.setdefault(group_name, ParamGroupSpec(group_name, algorithm, dict(options)))
        spec.names.append(name)
        spec.params.append(param)
    order = [spec[0] for spec in table.values()]
    return sorted(groups.values(), key=lambda g: order.index(g.name))


def describe_partition(groups: Sequence[ParamGroupSpec], examples: int = 2) -> str:
    """A printable table: per group its rule, tensor and scalar counts, and a few member names."""
    rows = [("group", "optimizer", "tensors", "params", "examples")]
    for g in groups:
        shown = ", ".join(g.names[:examples]) + (", ..." if len(g.names) > examples else "")
        rows.append((g.name, g.algorithm, str(len(g.params)), f"{g.numel:,}", shown))
    total = sum(g.numel for g in groups)
    rows.append(("total", "", str(sum(len(g.params) for g in groups)), f"{total:,}", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4] for r in rows)
    return "\n".join(line.rstrip() for line in lines)
