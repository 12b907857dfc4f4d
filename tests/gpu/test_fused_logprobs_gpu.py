"""Fused log-prob kernels (cut-cross-entropy, Liger-Kernel) against the chunked reference on CUDA.

Tolerances, and why:
- values, fp32 logits over the same bf16 inputs (CCE vs chunked ``fp32=True``): both accumulate the GEMM in
  fp32 and differ only in summation order, atol 1e-3 on log-probs. With T != 1 the kernel sees bf16(h / T),
  one more rounding of its input (up to 2^-8 relative per element, a few 1e-3 on a logit of std 3): that case
  is held to 1e-3 against the reference run on the same bf16(h / T), and to 5e-2 against the plain one.
- values, bf16 logits (Liger vs chunked ``fp32=False``) and fp32 weights (Liger vs chunked): at most twice the
  reference's own max distance to float64 + 1e-3 (Liger rounds bf16(h / T) before its GEMM, the reference
  rounds only the logits).
- gradients: relative Frobenius error to the reference <= 5e-2 in bf16 and <= 1e-4 in fp32. Why 5e-2: CCE adds
  its K partial gradients (K = V / its vocabulary block for grad_h, N / its row block for grad_W) into a bf16
  buffer with atomics, each addition rounding with unit roundoff u = 2^-8 of the running sum: about
  (u/sqrt(3))·sqrt(K/2) relative for random-sign partials, 2.6e-2 at K = 256 (the reference makes one
  fp32-accumulated GEMM per block and rounds once). Liger accumulates grad_W in fp32; same bound.

Run on the GPU machine: ``python -m pytest tests/gpu/test_fused_logprobs_gpu.py -q`` (needs the kernel wheels,
``benchmarks/gpu/make_extra_wheels.sh``; each test skips, naming the import error, when its package is absent).
"""

from __future__ import annotations

import pytest
import torch

from zaya_rl.algorithms.fused_logprobs import load_kernel, resolve_impl
from zaya_rl.algorithms.logprobs import token_logprobs

N, H, V = 1024, 256, 32768


def _need(name: str) -> None:
    fn, why = load_kernel(name)
    if fn is None:
        pytest.skip(why)


def _inputs(dtype: torch.dtype, seed: int = 0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    hidden = torch.randn(N, H, device="cuda", generator=g).to(dtype)
    weight = (torch.randn(V, H, device="cuda", generator=g) * 0.2).to(dtype)  # logits with std ~3
    bias = torch.randn(V, device="cuda", generator=g).to(dtype)
    targets = torch.randint(0, V, (N,), device="cuda", generator=g)
    upstream = torch.randn(N, device="cuda", generator=g)
    return hidden, weight, bias, targets, upstream


def _run(fn, hidden, weight, bias, upstream):
    leaves = [x.detach().clone().requires_grad_(True) if x is not None else None for x in (hidden, weight, bias)]
    out = fn(*leaves)
    (out.to(upstream.dtype) * upstream).sum().backward()
    return [out.detach().double()] + [x.grad.double() for x in leaves if x is not None]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@pytest.fixture(autouse=True)
def _no_tf32():
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = old


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_cce_bf16_equals_the_fp32_head_reference(temperature):
    _need("cce")
    hidden, weight, _, targets, upstream = _inputs(torch.bfloat16)
    fused = _run(lambda h, w, b: token_logprobs(h, w, targets, temperature, fp32=True, impl="cce"),
                 hidden, weight, None, upstream)
    # the kernel's input is bf16(h / T); the reference on that same input isolates the kernel's own error
    same_input = (hidden.float() / temperature).to(torch.bfloat16)
    ref_same = _run(lambda h, w, b: token_logprobs(h, w, targets, 1.0, fp32=True, impl="chunked"),
                    same_input, weight, None, upstream)
    torch.testing.assert_close(fused[0], ref_same[0], rtol=0, atol=1e-3)
    ref = _run(lambda h, w, b: token_logprobs(h, w, targets, temperature, fp32=True, impl="chunked"),
               hidden, weight, None, upstream)
    torch.testing.assert_close(fused[0], ref[0], rtol=0, atol=1e-3 if temperature == 1.0 else 5e-2)
    for k in (1, 2):  # grad_h, grad_W
        assert _rel(fused[k], ref[k]) <= 5e-2, (k, _rel(fused[k], ref[k]))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("with_bias", [False, True])
def test_liger_equals_the_chunked_reference(dtype, with_bias):
    _need("liger")
    hidden, weight, bias, targets, upstream = _inputs(dtype)
    bias = bias if with_bias else None
    fused = _run(lambda h, w, b: token_logprobs(h, w, targets, 0.7, bias=b, impl="liger"), hidden, weight, bias, upstream)
    ref = _run(lambda h, w, b: token_logprobs(h, w, targets, 0.7, bias=b, impl="chunked"), hidden, weight, bias, upstream)
    exact = _run(
        lambda h, w, b: torch.log_softmax((h @ w.T + (0 if b is None else b)) / 0.7, -1).gather(-1, targets[:, None])[:, 0],
        *(x.double() if x is not None else None for x in (hidden, weight, bias)), upstream.double(),
    )
    assert (fused[0] - exact[0]).abs().max() <= 2 * (ref[0] - exact[0]).abs().max() + 1e-3
    tol = 5e-2 if dtype == torch.bfloat16 else 1e-4
    for k in range(1, len(ref)):
        assert _rel(fused[k], ref[k]) <= tol, (k, _rel(fused[k], ref[k]))


def test_auto_dispatch_on_cuda():
    _, weight, *_ = _inputs(torch.bfloat16)
    name, why = resolve_impl("auto", device=weight.device, weight_dtype=weight.dtype, fp32=True, has_bias=False)
    assert name == ("cce" if load_kernel("cce")[0] is not None else "chunked"), why
    name, _ = resolve_impl("auto", device=weight.device, weight_dtype=weight.dtype, fp32=True, has_bias=True)
    assert name == "chunked"  # neither kernel gives fp32 logits with a bias


def test_cce_gradient_filter_keeps_the_values_and_drops_only_entries_below_its_threshold():
    """``trainer.logprob_grad_filter``: log-probs as unfiltered; grad_h differs from the reference by no more than
    what the filter may drop, rows i: |g_i| · Σ_{v ≠ y_i, p_iv < eps} p_iv ‖W_v‖ with eps = bf16 eps / 32 = 2⁻¹²
    (CCE skips a block only when every |softmax − onehot| in it is below eps), plus the unfiltered kernel's
    own 5e-2 tolerance. Logits scaled to std ~6, so most of the vocabulary lies below eps, as in a trained model."""
    _need("cce")
    hidden, weight, _, targets, upstream = _inputs(torch.bfloat16)
    weight = weight * 2
    fn = lambda grad_filter: lambda h, w, b: token_logprobs(h, w, targets, 1.0, fp32=True, impl="cce",  # noqa: E731
                                                            grad_filter=grad_filter)
    filtered, plain = _run(fn(True), hidden, weight, None, upstream), _run(fn(False), hidden, weight, None, upstream)
    ref = _run(lambda h, w, b: token_logprobs(h, w, targets, 1.0, fp32=True, impl="chunked"), hidden, weight, None,
               upstream)
    torch.testing.assert_close(filtered[0], plain[0], rtol=0, atol=1e-3)
    eps = torch.finfo(torch.bfloat16).eps / 32
    p = torch.softmax(hidden.double() @ weight.double().T, -1)
    p[torch.arange(N), targets] = 0.0  # the target's entry, p - 1, is never below eps
    small = torch.where(p < eps, p, torch.zeros((), dtype=p.dtype, device=p.device))
    bound = upstream.double().abs() * (small @ weight.double().norm(dim=-1))  # per row
    assert small.sum(-1).mean() > 1e-3  # the filter has something to drop here
    assert float((filtered[1] - ref[1]).norm()) <= float(bound.norm()) + 5e-2 * float(ref[1].norm())
    assert _rel(plain[1], ref[1]) <= 5e-2
