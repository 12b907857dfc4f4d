"""Fused linear + log-softmax kernels on CUDA behind ``token_logprobs`` (``trainer.logprob_impl``).

Both kernels compute a per-token cross-entropy without ever writing the ``[N, V]`` logits to global memory,
and the log-prob is its negative: ``log p(y_n) = −CE_n`` with ``reduction="none"``. The temperature enters as
``(h Wᵀ + b) / T = (h / T) Wᵀ + b / T``: the hidden states (and the bias) are scaled before the kernel, so the
gradient reaches ``h`` through that scale by autograd. With T != 1 the kernel's input is bf16(h / T), one more
rounding of the hidden state (unit roundoff 2⁻⁸, as the bf16 rounding the last norm already applies). Both take the per-token upstream gradient in their
backward (``grad_out`` per row), which the policy loss needs (every token has its own weight A·w·v).

- ``cce``: Apple's cut-cross-entropy (Wijmans et al., arXiv 2411.09009), ``linear_cross_entropy(e, c, targets,
  reduction="none", filter_eps=None)``. Its Triton kernels multiply bf16/fp16 operands with an fp32
  accumulator and never round the logits, so the log-probs are those of an **fp32 head** (``fp32=True``); with
  ``fp32=False`` they are more exact than asked (a bf16 head would round the logits); its target logit sums
  products rounded to bf16, which ``cce_logprobs`` corrects (``_exact_target_logit_shift``). ``filter_eps=None``
  keeps the gradient exact (CCE's default skips vocabulary blocks whose softmax is below bf16 resolution).
  What it cannot do: an output bias (no ``bias`` argument in 25.1), fp32 weights (its backward asserts
  bf16/fp16). Its gradients are accumulated in the weights' dtype with atomics (not bitwise reproducible).
- ``liger``: Liger-Kernel's fused linear cross-entropy (``liger_fused_linear_cross_entropy``), chunked cuBLAS
  GEMMs + a Triton softmax kernel; for ``reduction="none"`` its backward recomputes the chunk logits and folds
  the per-token gradient in before the weight-gradient GEMM (0.8.5). Logits are in the weights' dtype, so it
  matches ``fp32=False`` (a bf16 head) or fp32 weights, not an fp32 head over bf16 weights. It takes a bias.
  The weight gradient is accumulated in fp32 (``accum_dtype``), as the chunked reference's GEMMs do.

Which one runs: ``resolve_impl``. The packages are optional (``pip install 'zaya-rl[gpu]'``); importing
this module imports neither, and a missing or broken install is a reason, not a crash, for ``auto``.

Tests: ``tests/algorithms/test_logprob_dispatch.py`` (CPU: dispatch, fallback, the adapters against a stand-in
kernel), ``tests/gpu/test_fused_logprobs_gpu.py`` (values and gradients against the chunked reference).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor

#: ``trainer.logprob_impl`` choices.
IMPLS = ("auto", "chunked", "cce", "liger")
#: Fused kernels in the order ``auto`` tries them, with the package that provides each.
PACKAGES = {"cce": "cut-cross-entropy", "liger": "liger-kernel"}


@functools.cache
def load_kernel(name: str) -> tuple[Callable | None, str]:
    """The entry point of fused kernel ``name`` and ``""``, or None and why it cannot be imported."""
    try:
        if name == "cce":
            from cut_cross_entropy import linear_cross_entropy as fn
        elif name == "liger":
            from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy as fn
        else:
            raise ValueError(f"unknown fused kernel {name!r}; choose one of {sorted(PACKAGES)}")
    except Exception as e:  # missing package or triton, or a Triton/torch version it does not import under
        return None, f"{PACKAGES[name]} is not importable ({type(e).__name__}: {e})"
    return fn, ""


def unsupported(name: str, *, device: torch.device, weight_dtype: torch.dtype, fp32: bool, has_bias: bool) -> str:
    """Why fused kernel ``name`` cannot compute exactly what the chunked reference defines ("" if it can)."""
    if device.type != "cuda":
        return f"{name} runs on CUDA only (the head is on {device})"
    low = weight_dtype in (torch.bfloat16, torch.float16)
    if name == "cce" and has_bias:
        return "cut-cross-entropy takes no lm_head bias"
    if name == "cce" and not low:
        return f"cut-cross-entropy's backward needs bf16/fp16 weights, not {weight_dtype}"
    if name == "liger" and fp32 and low:
        return "liger computes logits in the weights' dtype, not the fp32 head that model.fp32_lm_head asks for"
    return load_kernel(name)[1]


def resolve_impl(
    impl: str, *, device: torch.device, weight_dtype: torch.dtype, fp32: bool, has_bias: bool
) -> tuple[str, str]:
    """The implementation ``token_logprobs`` runs for ``impl``, and why ``auto`` passed over the fused ones.

    Raises:
        ValueError: an unknown ``impl``, or an explicit fused one that cannot run here (with the reason).
    """
    if impl not in IMPLS:
        raise ValueError(f"trainer.logprob_impl: unknown {impl!r}; choose one of {list(IMPLS)}")
    if impl == "chunked":
        return "chunked", ""
    names = list(PACKAGES) if impl == "auto" else [impl]
    reasons = [unsupported(n, device=device, weight_dtype=weight_dtype, fp32=fp32, has_bias=has_bias) for n in names]
    for name, why in zip(names, reasons, strict=True):
        if not why:
            return name, ""
    if impl != "auto":
        raise ValueError(f"trainer.logprob_impl={impl}: {reasons[0]}")
    return "chunked", "; ".join(reasons)


def _scaled(hidden: Tensor, weight: Tensor, bias: Tensor | None, inv_t: float) -> tuple[Tensor, Tensor | None]:
    """``h / T`` in the weights' dtype and ``b / T``: the kernels see ``(h/T) Wᵀ + b/T = (h Wᵀ + b) / T``."""
    h = hidden.to(weight.dtype)
    if inv_t == 1.0:
        return h, bias
    return h * inv_t, None if bias is None else bias * inv_t


def cce_logprobs(
    hidden: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor, inv_t: float, *, grad_filter: bool = False
) -> Tensor:
    """log p(targets) ``[N]`` float32 by cut-cross-entropy; ``grad_filter`` turns on CCE's gradient filtering
    (faster backward, gradient entries below bf16 resolution dropped; the benchmark measures it)."""
    if bias is not None:
        raise ValueError("cut-cross-entropy takes no lm_head bias; use logprob_impl chunked or liger")
    fn, why = load_kernel("cce")
    if fn is None:
        raise RuntimeError(why)
    h, _ = _scaled(hidden, weight, None, inv_t)
    nll = fn(h, weight, targets, reduction="none", filter_eps="high" if grad_filter else None)
    return _exact_target_logit_shift(h, weight, targets) - nll.float()


def _exact_target_logit_shift(h: Tensor, weight: Tensor, targets: Tensor, rows: int | None = None) -> Tensor:
    """``h·W[y]`` summed from exact products minus the same from products rounded to the inputs' dtype.

    Why: cut-cross-entropy 25.1 takes its log-sum-exp from an fp32-accumulating ``tl.dot`` but its target logit
    from ``(e * c).to(tl.float32)`` (``indexed_dot.py``), i.e. every product of the dot rounded to bf16 first
    (unit roundoff 2⁻⁸ each, random signs): off by ~2⁻⁸·sqrt(H/3) typical products, ~0.01 nats at H = 2048 and
    logits of a few units. Adding this difference makes
    ``−nll`` the fp32-head log-prob. Value only: the kernel's backward already uses exact logits.
    """
    # [rows, H] float32 temporaries of at most 2^24 elements (64 MB) each: one chunk for a micro-batch of ~29k tokens
    # at H = 576, so a few kernels per call instead of a few per 1,024 tokens (each launch is host time on a GPU)
    rows = rows or max(1024, (1 << 24) // max(h.shape[1], 1))
    out = torch.empty(h.shape[0], dtype=torch.float32, device=h.device)
    with torch.no_grad():
        for s in range(0, h.shape[0], rows):
            e, c = h[s : s + rows], weight[targets[s : s + rows]]
            out[s : s + rows] = (e.float() * c.float()).sum(-1) - (e * c).float().sum(-1)
    return out


def liger_logprobs(hidden: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor, inv_t: float) -> Tensor:
    """log p(targets) ``[N]`` float32 by Liger-Kernel's fused linear cross-entropy."""
    fn, why = load_kernel("liger")
    if fn is None:
        raise RuntimeError(why)
    h, b = _scaled(hidden, weight, bias, inv_t)
    nll = fn(h, weight, targets, bias=b, reduction="none", accum_dtype=torch.float32)
    return nll.float().neg()


#: Fused implementation name -> ``(hidden [N, H], weight [V, H], bias [V] | None, targets [N], 1/T) -> [N]``.
FUSED: dict[str, Callable[..., Tensor]] = {"cce": cce_logprobs, "liger": liger_logprobs}
