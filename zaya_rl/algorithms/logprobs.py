"""Log-probabilities of target tokens without ever materialising the full ``[tokens × vocab]`` logits.

    logp_n = log_softmax((h_n Wᵀ + b) / T)[y_n]       (T: the sampling temperature; b: lm_head bias, if any)

ZAYA's vocabulary has 262,272 entries: the logits of 4,096 tokens alone are 4.3 GB in fp32, and autograd
would keep them, their log-softmax and their gradient. ``token_logprobs`` processes ``chunk_size`` rows at a
time inside one ``torch.autograd.Function``: the forward keeps only the per-row log-sum-exp, and the backward
*recomputes* the logits, block by block of the vocabulary, to form the gradient,

    ∂logp_n/∂z_{n,v} = (1[v = y_n] − softmax(z_n)_v) / T,   z_n = h_n Wᵀ + b,   G = grad_out ⊙ (onehot − softmax) / T
    ∂L/∂W[b] = G[:, b]ᵀ h   (one GEMM per vocabulary block b: each row of ∂L/∂W is written once)
    ∂L/∂h   = Σ_b G[:, b] W[b]   (accumulated in a small [N, H] fp32 buffer)
    ∂L/∂bias[b] = Σ_n G[n, b]

so peak extra memory is one block of ``chunk_size × V`` logits (rows in forward, vocabulary columns in
backward) plus W's gradient, which naive autograd needs too. Chunking under plain autograd would not help:
every chunk's graph would stay alive until backward. The price is one extra GEMM (the recompute), so the
GEMM-bound lower bound of the time ratio to naive is 4/3; measured on an H100 (2026-12-06, bf16 + fp32 logits,
H=2048) it was 2.20× at 8,192 tokens and 3.69× at 16,384 (the elementwise passes over each fp32 block are
not free). This path is the CPU implementation and the reference; on CUDA ``impl="auto"`` runs a fused
Triton kernel instead (``zaya_rl.algorithms.fused_logprobs``: cut-cross-entropy or Liger-Kernel), which
keeps the softmax in on-chip memory.

Temperature: logits are divided by T as the sampler did (vLLM ``processed_logprobs``; algorithms.md §2,
research/vllm_ray.md §2), so these log-probs compare with the behaviour log-probs of the rollout engine.

Test: ``python -m pytest tests/algorithms/test_logprobs.py -q``; memory/time: ``benchmarks/logprobs_memory.py``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from zaya_rl.algorithms.fused_logprobs import FUSED, resolve_impl


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Softmax/accumulation dtype: at least float32 (bf16 → float32, float64 stays)."""
    return torch.promote_types(dtype, torch.float32)


def _scaled_logits(
    h: Tensor,
    w_t: Tensor,
    logit_dtype: torch.dtype,
    inv_t: float,
    bias: Tensor | None = None,
    lse: Tensor | None = None,
) -> Tensor:
    """``(h @ w_t + bias) / T`` (minus ``lse`` per row if given) as a ``[rows, cols]`` block in the softmax dtype.

    fp32 logits: the scale and the shift ride in the GEMM (``addmm`` alpha/beta), no extra pass over the
    block; on CUDA bf16/fp16 operands stay on tensor cores with an fp32 result (cuBLAS accumulates in fp32,
    nothing is copied), elsewhere they are upcast. bf16 logits (``fp32=False``, like a bf16 lm_head) are
    rounded first (with the bias added in the GEMM, as ``nn.Linear`` does), then scaled and shifted in fp32.
    """
    acc = _acc_dtype(logit_dtype)
    if logit_dtype != acc:
        z = h @ w_t if bias is None else torch.addmm(bias.to(h.dtype), h, w_t)
        z = z.to(acc).mul_(inv_t)
        return z if lse is None else z.sub_(lse[:, None])
    if bias is not None:  # (hW + b)/T: the bias row rides in the GEMM, the lse shift is one in-place pass
        shift, beta = bias.to(acc)[None, :] * inv_t, 1.0
    elif lse is not None:
        shift, beta = -lse[:, None], 1.0
    else:
        shift, beta = torch.zeros((), dtype=acc, device=h.device), 0.0
    if h.dtype == acc:
        z = torch.addmm(shift, h, w_t.to(acc), beta=beta, alpha=inv_t)
    elif h.is_cuda:
        z = torch.addmm(shift.expand(h.shape[0], w_t.shape[1]), h, w_t, beta=beta, alpha=inv_t, out_dtype=acc)
    else:
        z = torch.addmm(shift, h.to(acc), w_t.to(acc), beta=beta, alpha=inv_t)
    return z.sub_(lse[:, None]) if bias is not None and lse is not None else z


def _mm(a: Tensor, b: Tensor, out_dtype: torch.dtype) -> Tensor:
    """a @ b with an ``out_dtype`` result (fp32 output of bf16 operands on CUDA, upcast elsewhere)."""
    if a.dtype == b.dtype == out_dtype:
        return a @ b
    if a.is_cuda:
        return torch.mm(a, b, out_dtype=out_dtype)
    return a.to(out_dtype) @ b.to(out_dtype)


class _ChunkedTokenLogprobs(torch.autograd.Function):
    """Autograd function: forward over row chunks, backward over vocabulary blocks (module docstring)."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, inv_temperature, chunk_size, fp32):
        acc = _acc_dtype(weight.dtype)
        logit_dtype = acc if fp32 else weight.dtype
        h = hidden.to(weight.dtype)
        # off CUDA an fp32 result needs fp32 operands: upcast W once per call, not once per chunk
        w = weight.to(logit_dtype) if fp32 and not weight.is_cuda else weight
        out = torch.empty(h.shape[0], dtype=acc, device=h.device)
        lse = torch.empty_like(out)
        for s in range(0, h.shape[0], chunk_size):
            z = _scaled_logits(h[s : s + chunk_size], w.T, logit_dtype, inv_temperature, bias)
            out[s : s + chunk_size] = z.gather(1, targets[s : s + chunk_size, None]).squeeze(1)
            lse[s : s + chunk_size] = torch.logsumexp(z, dim=-1)
        out.sub_(lse)
        ctx.save_for_backward(hidden, weight, bias, targets, lse)
        ctx.inv_temperature, ctx.chunk_size, ctx.logit_dtype = inv_temperature, chunk_size, logit_dtype
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        hidden, weight, bias, targets, lse = ctx.saved_tensors
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        need_b = bias is not None and ctx.needs_input_grad[2]
        n, vocab = hidden.shape[0], weight.shape[0]
        h = hidden.to(weight.dtype)
        # vocabulary blocks of the same budget as the forward's row chunks: chunk_size·V logits
        block = max(1, ctx.chunk_size * vocab // max(n, 1))
        coef = grad_out.to(lse.dtype) * ctx.inv_temperature
        grad_h = torch.zeros(hidden.shape, dtype=lse.dtype, device=hidden.device) if need_h else None
        grad_w = torch.empty_like(weight) if need_w else None
        grad_b = torch.empty_like(bias) if need_b else None
        for v0 in range(0, vocab, block):
            w_b = weight[v0 : v0 + block]
            b_b = None if bias is None else bias[v0 : v0 + block]
            # [N, block] in place: softmax → −softmax·g/T → (onehot − softmax)·g/T
            g = (
                _scaled_logits(h, w_b.T, ctx.logit_dtype, ctx.inv_temperature, b_b, lse)
                .exp_()
                .mul_(-coef[:, None])
            )
            in_block = (targets >= v0) & (targets < v0 + w_b.shape[0])  # no host sync: add 0 elsewhere
            local = (targets - v0).clamp(0, w_b.shape[0] - 1)
            g.scatter_add_(1, local[:, None], (coef * in_block)[:, None])
            if need_b:  # ∂L/∂b_v = Σ_n G[n, v], summed in the softmax dtype
                grad_b[v0 : v0 + block] = g.sum(dim=0)
            g = g.to(weight.dtype)
            if need_w:  # each row block of ∂L/∂W is one GEMM over all N rows: written once, no accumulator
                grad_w[v0 : v0 + block] = g.T @ h
            if need_h:
                grad_h += _mm(g, w_b, grad_h.dtype)
        grad_h = None if grad_h is None else grad_h.to(hidden.dtype)
        return grad_h, grad_w, grad_b, None, None, None, None


def token_logprobs(
    hidden: Tensor,
    lm_head_weight: Tensor,
    targets: Tensor,
    temperature: float = 1.0,
    chunk_size: int = 1024,
    fp32: bool = False,
    *,
    bias: Tensor | None = None,
    impl: str = "auto",
    grad_filter: bool = False,
    check_targets: bool = True,
) -> Tensor:
    """log_softmax((hidden @ Wᵀ + b) / T)[target] per row, never materialising ``[N, V]`` logits;
    differentiable in hidden, W and b.

    Args:
        hidden: ``[N, H]`` or ``[B, T, H]`` final hidden states (after the last norm).
        lm_head_weight: ``[V, H]`` output projection (the tied embedding for ZAYA).
        targets: ``[N]`` or ``[B, T]`` token ids to score, in [0, V).
        temperature: sampling temperature T > 0.
        chunk_size: rows per forward chunk of the chunked implementation; its backward blocks of the vocabulary
            hold as many logits, so peak extra memory ≈ chunk_size·V·4 bytes (+ W's gradient).
        fp32: float32 logits for bf16/fp16 models (on CUDA a bf16 GEMM with fp32 output, no copy; elsewhere W
            is upcast once per call).
        bias: ``[V]`` output bias (``lm_head.bias``; ZAYA's ``lm_head_bias``), or None.
        impl: ``chunked`` (this module, any device: the reference), ``cce`` / ``liger`` (fused Triton kernels on
            CUDA, ``zaya_rl.algorithms.fused_logprobs``), or ``auto`` (the first fused kernel that computes
            exactly these log-probs on this device, else chunked). An explicit fused choice that cannot fails
            with the reason.
        grad_filter: cut-cross-entropy's gradient filtering (``trainer.logprob_grad_filter``); an error with any
            other implementation.
        check_targets: check that every target lies in [0, V) (a ``ValueError``); on a GPU the check waits
            for the device, so a caller that checked the ids on the host passes False.

    Returns:
        log-probs shaped like ``targets``, float32 (float64 for float64 inputs).
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if hidden.shape[:-1] != targets.shape:
        raise ValueError(f"hidden {tuple(hidden.shape)} must be targets {tuple(targets.shape)} + [H]")
    if lm_head_weight.ndim != 2 or lm_head_weight.shape[1] != hidden.shape[-1]:
        raise ValueError(
            f"lm_head_weight must be [V, H={hidden.shape[-1]}], got {tuple(lm_head_weight.shape)}"
        )
    if bias is not None and bias.shape != lm_head_weight.shape[:1]:
        raise ValueError(f"bias must be [V={lm_head_weight.shape[0]}], got {tuple(bias.shape)}")
    flat_targets = targets.reshape(-1).long()
    if (
        check_targets
        and flat_targets.numel()
        and not 0 <= int(flat_targets.min()) <= int(flat_targets.max()) < lm_head_weight.shape[0]
    ):
        raise ValueError(
            f"targets must lie in [0, {lm_head_weight.shape[0]}), got [{int(flat_targets.min())}, {int(flat_targets.max())}]"
        )
    flat_hidden = hidden.reshape(-1, hidden.shape[-1])
    name, _ = resolve_impl(
        impl, device=lm_head_weight.device, weight_dtype=lm_head_weight.dtype, fp32=fp32, has_bias=bias is not None
    )
    if grad_filter and name != "cce":
        raise ValueError(f"grad_filter is cut-cross-entropy's gradient filtering; impl={impl} resolved to {name}")
    if name == "chunked" or flat_targets.numel() == 0:
        out = _ChunkedTokenLogprobs.apply(
            flat_hidden, lm_head_weight, bias, flat_targets, 1.0 / temperature, chunk_size, fp32
        )
    else:
        kw = {"grad_filter": True} if grad_filter else {}
        out = FUSED[name](flat_hidden, lm_head_weight, bias, flat_targets, 1.0 / temperature, **kw)
    return out.reshape(targets.shape)
