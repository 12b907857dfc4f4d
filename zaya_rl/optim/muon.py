"""Momentum-free Muon: orthogonalised gradient steps for hidden matrices and stacked MoE experts.

Per matrix W (algorithms.md §5; torch.optim.Muon, KellerJordan/Muon, Moonlight arXiv 2502.16982):

    O = NS_k(G)                                   # Newton–Schulz quintic, k = 5, in bfloat16 like torch
    W ← (1 − γλ)·W − AdjustLR(γ, shape)·O         # decoupled weight decay with the *unadjusted* lr γ
    AdjustLR: match_rms_adamw γ·0.2·sqrt(max(A, B))  |  original γ·sqrt(max(1, A/B))

This is torch.optim.Muon with momentum = 0 (the buffer then equals the gradient, so nesterov is moot)
without the unused momentum buffer: the optimizer keeps **no state**. Why momentum-free for async RL
(inferred, algorithms.md §5): momentum keeps applying gradients of batches drawn from older behaviour
policies, extra off-policyness that the DPPO mask cannot see.

Beyond torch.optim.Muon (which only takes 2-D parameters):
- a 3-D parameter ``[E, A, B]`` (a stack of MoE experts) is E independent ``[A, B]`` matrices,
  orthogonalised batched over dim 0, never flattened to ``[E·A, B]`` (that would orthogonalise across
  experts);
- a group with ``split_halves=True`` (fused ``gate_up_proj [E, 2I, H]``) orthogonalises the gate and up
  halves ``[I, H]`` separately, as one would fused QKV; AdjustLR then uses the half's shape.

Batched (the usual "batched Muon" trick: the same maths, fewer kernel launches): ``muon_group_step``
gathers the group's matrices of equal shape — 2-D parameters, experts of 3-D stacks, split halves alike —
into one ``[N, A, B]`` batch, orthogonalises it in one Newton–Schulz call (each matrix is normalised and
iterated on its own, so each result is the per-parameter one) and applies the update with one
``torch._foreach_add_`` (one AdjustLR per batch: equal shapes, equal AdjustLR). A batch holds at most
``NS_BATCH_ELEMENTS`` elements. Where launches dominate (``benchmarks/muon_step.py --hidden 32 --heads 2
--kv-heads 2 --head-dim 16 --router-hidden 16 --moe-intermediate 32 --layers 30 --steps 20``, 2-core CPU) a step
took 0.64-0.78x torch.optim.Muon's time batched, 1.26-1.36x one matrix at a time; at real sizes on a CPU the
bf16 products dominate and batching gains 0-4%.

Test: ``python -m pytest tests/optim/test_muon.py -q``; speed: ``benchmarks/muon_step.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable
from typing import Any

import torch
from torch import Tensor

#: Newton–Schulz quintic coefficients (a, b, c), Keller Jordan's; torch.optim.Muon's defaults.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
#: Floor of the Frobenius norm in NS's normalisation, so an all-zero gradient gives a zero update, not NaN.
NS_EPS = 1e-7
#: Most gradient elements orthogonalised in one batched Newton–Schulz call; a larger parameter goes alone.
#: A batch's transient is about 8 bytes per element for fp32 parameters (bf16 batch, bf16 NS iterates, the
#: update cast to fp32): 2**26 elements ≈ 0.5 GB. Uncapped, ZAYA1-8B's 40 gate_up stacks ``[16, 4096, 2048]``
#: (134M elements each) would form one batch of 5.4G elements, tens of GB.
NS_BATCH_ELEMENTS = 2**26


def newton_schulz(
    grads: Tensor,
    steps: int = 5,
    coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    eps: float = NS_EPS,
    dtype: torch.dtype = torch.bfloat16,
) -> Tensor:
    """Batched Newton–Schulz orthogonalisation NS_k of ``grads`` ``[N, A, B]`` (algorithms.md §5).

    Each matrix is scaled to Frobenius norm <= 1 (so spectral norm <= 1), then X ← aX + (bXXᵀ + c(XXᵀ)²)X
    k times, on the wide orientation (transposed when A > B). Each singular value σ maps through
    p(σ) = aσ + bσ³ + cσ⁵ k times, landing in a band around 1 (≈[0.68, 1.13] for σ ∈ [0.05, 1], k = 5)
    rather than exactly 1; the singular vectors are kept. Same operations as torch.optim.Muon's
    ``_zeropower_via_newtonschulz`` (bf16), batched.

    Args:
        grads: ``[N, A, B]`` matrices.
        steps: k.
        coefficients: (a, b, c).
        eps: floor of the Frobenius norm.
        dtype: compute dtype (bfloat16 as torch; float64 for exactness tests).

    Returns:
        ``[N, A, B]`` in ``dtype``.
    """
    if grads.ndim != 3:
        raise ValueError(f"newton_schulz takes a batch of matrices [N, A, B], got shape {tuple(grads.shape)}")
    a, b, c = coefficients
    x = grads.to(dtype)
    transposed = grads.shape[-2] > grads.shape[-1]
    if transposed:
        x = x.mT
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.mT
        x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.mT if transposed else x


def adjust_lr_match_rms_adamw(lr: float, rows: int, cols: int) -> float:
    """Moonlight's scaling γ·0.2·sqrt(max(A, B)): update RMS ≈ 0.2, so AdamW's lr and wd carry over."""
    return lr * 0.2 * math.sqrt(max(rows, cols))


def adjust_lr_original(lr: float, rows: int, cols: int) -> float:
    """Keller Jordan's scaling γ·sqrt(max(1, A/B))."""
    return lr * math.sqrt(max(1.0, rows / cols))


#: AdjustLR by name (``optim.muon_adjust_lr``).
ADJUST_LR: dict[str, Callable[[float, int, int], float]] = {
    "match_rms_adamw": adjust_lr_match_rms_adamw,
    "original": adjust_lr_original,
}

#: Defaults of a Muon parameter group (see ``Muon``).
MUON_DEFAULTS: dict[str, Any] = {
    "lr": 1e-3,
    "weight_decay": 0.0,
    "ns_steps": 5,
    "ns_coefficients": NS_COEFFICIENTS,
    "ns_eps": NS_EPS,
    "adjust_lr_fn": "match_rms_adamw",
    "split_halves": False,
    # Newton–Schulz compute dtype. bfloat16 is torch's choice (fast on GPUs, exact parity with
    # torch.optim.Muon); CPUs without bf16 matrix units run it ~10x slower than float32.
    "ns_dtype": "bfloat16",
}

#: ``ns_dtype`` names accepted in a group.
NS_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}


def check_muon_group(group: dict[str, Any]) -> None:
    """Raise ValueError for a Muon group that cannot be stepped (bad shape, option or value)."""
    if group["ns_dtype"] not in NS_DTYPES:
        raise ValueError(f"ns_dtype {group['ns_dtype']!r} is not one of {sorted(NS_DTYPES)}")
    if group["adjust_lr_fn"] not in ADJUST_LR:
        raise ValueError(f"adjust_lr_fn {group['adjust_lr_fn']!r} is not one of {sorted(ADJUST_LR)}")
    if group["lr"] < 0 or group["weight_decay"] < 0 or group["ns_steps"] < 1:
        raise ValueError(
            f"Muon needs lr >= 0, weight_decay >= 0, ns_steps >= 1; got {group['lr']}, {group['weight_decay']}, {group['ns_steps']}"
        )
    for p in group["params"]:
        if p.ndim not in (2, 3) or torch.is_complex(p):
            raise ValueError(
                f"Muon takes real 2-D matrices or 3-D expert stacks [E, A, B]; got {p.dtype} {tuple(p.shape)}"
            )
        if group["split_halves"] and p.shape[-2] % 2:
            raise ValueError(f"split_halves needs an even dim -2 (fused [.., 2I, H]); got {tuple(p.shape)}")


def matrix_shape(grad: Tensor, split_halves: bool) -> tuple[int, int]:
    """(rows, cols) of each matrix Muon orthogonalises in ``grad`` (``[A, B]`` or ``[E, A, B]``)."""
    rows, cols = grad.shape[-2], grad.shape[-1]
    return (rows // 2 if split_halves else rows), cols


def orthogonalised_updates(
    grads: list[Tensor], group: dict[str, Any], out_dtype: torch.dtype | None = None
) -> tuple[list[Tensor], int, int]:
    """NS of every matrix of ``grads`` (all of one matrix shape) in one batched call (module docstring).

    Args:
        grads: ``[A, B]`` / ``[E, A, B]`` gradients whose matrices (halves if ``split_halves``) share a shape.
        group: the Muon param group (NS settings, ``split_halves``).
        out_dtype: dtype of the updates (one cast of the whole batch); None keeps the NS dtype.

    Returns:
        the updates shaped like ``grads`` and the (rows, cols) of each matrix.
    """
    rows, cols = matrix_shape(grads[0], group["split_halves"])
    dtype = NS_DTYPES[group["ns_dtype"]]
    # row-major layout: [E, 2I, H] → [2E, I, H] puts expert e's gate at 2e and up at 2e + 1. cat casts into
    # an NS-dtype batch (no full-precision copy); a lone gradient is only cast (a no-op if already in dtype)
    mats = [g.reshape(-1, rows, cols) for g in grads]
    if len(mats) == 1:
        batch = mats[0].to(dtype)
    else:
        batch = torch.cat(mats, out=mats[0].new_empty((sum(len(m) for m in mats), rows, cols), dtype=dtype))
    update = newton_schulz(batch, group["ns_steps"], group["ns_coefficients"], group["ns_eps"], dtype=dtype)
    parts = update.to(out_dtype or dtype).split([g.numel() // (rows * cols) for g in grads])
    return [u.reshape(g.shape) for u, g in zip(parts, grads, strict=True)], rows, cols


def orthogonalised_update(grad: Tensor, group: dict[str, Any]) -> tuple[Tensor, int, int]:
    """``orthogonalised_updates`` of one gradient (the DeepSpeed path steps parameters one at a time)."""
    (update,), rows, cols = orthogonalised_updates([grad], group)
    return update, rows, cols


def batches(keys: list[Hashable], sizes: list[int], cap: int) -> list[list[int]]:
    """Indices of equal ``keys`` grouped (first-seen order), cut into runs of total ``sizes`` <= ``cap``.

    A single index whose size exceeds ``cap`` forms a batch alone.
    """
    by_key: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        by_key.setdefault(key, []).append(i)
    out: list[list[int]] = []
    for indices in by_key.values():
        run: list[int] = []
        total = 0
        for i in indices:
            if run and total + sizes[i] > cap:
                out.append(run)
                run, total = [], 0
            run.append(i)
            total += sizes[i]
        out.append(run)
    return out


@torch.no_grad()
def muon_group_step(group: dict[str, Any]) -> None:
    """One momentum-free Muon step of each parameter with a gradient in ``group``, batched by matrix shape."""
    lr, wd = group["lr"], group["weight_decay"]
    params = [p for p in group["params"] if p.grad is not None]
    if any(p.grad.is_sparse for p in params):
        raise RuntimeError("Muon does not support sparse gradients")
    keys = [(matrix_shape(p.grad, group["split_halves"]), p.device, p.grad.dtype) for p in params]
    for batch in batches(keys, [p.numel() for p in params], NS_BATCH_ELEMENTS):
        ps = [params[i] for i in batch]
        # updates in the parameters' dtype (= the gradients'): _foreach_add_'s fused path needs one dtype
        updates, rows, cols = orthogonalised_updates([p.grad for p in ps], group, out_dtype=ps[0].dtype)
        if wd:
            # one p.mul_ each, as torch.optim.Muon: CPU's _foreach_mul_ rounds a Python-float factor to a bf16
            # parameter's dtype (0.998 -> 0.996, torch 2.13), and a CPU-tensor factor is not portable to CUDA
            for p in ps:
                p.mul_(1 - lr * wd)
        torch._foreach_add_(ps, updates, alpha=-ADJUST_LR[group["adjust_lr_fn"]](lr, rows, cols))


class Muon(torch.optim.Optimizer):
    """Momentum-free Muon with no optimizer state (module docstring).

    Args:
        params: 2-D matrices and/or 3-D expert stacks ``[E, A, B]``, or param-group dicts.
        lr: γ (before AdjustLR).
        weight_decay: λ of the decoupled decay W ← (1 − γλ)W.
        ns_steps: Newton–Schulz iterations k.
        ns_coefficients: (a, b, c).
        ns_eps: floor of the Frobenius norm in NS.
        adjust_lr_fn: ``match_rms_adamw`` or ``original``.
        split_halves: orthogonalise the two halves of dim -2 separately (fused ``gate_up_proj``); usually set
            per param group.
        ns_dtype: Newton–Schulz compute dtype name (``bfloat16`` as torch; ``float32`` is faster on CPUs).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = MUON_DEFAULTS["lr"],
        weight_decay: float = MUON_DEFAULTS["weight_decay"],
        ns_steps: int = MUON_DEFAULTS["ns_steps"],
        ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
        ns_eps: float = NS_EPS,
        adjust_lr_fn: str = MUON_DEFAULTS["adjust_lr_fn"],
        split_halves: bool = False,
        ns_dtype: str = MUON_DEFAULTS["ns_dtype"],
    ) -> None:
        defaults = dict(
            ns_dtype=ns_dtype,
            lr=lr,
            weight_decay=weight_decay,
            ns_steps=ns_steps,
            ns_coefficients=ns_coefficients,
            ns_eps=ns_eps,
            adjust_lr_fn=adjust_lr_fn,
            split_halves=split_halves,
        )
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (also used by the constructor) and validate it."""
        super().add_param_group(param_group)
        check_muon_group(self.param_groups[-1])

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Apply one step to every parameter with a gradient; returns the closure's loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            muon_group_step(group)
        return loss
