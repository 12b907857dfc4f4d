"""Chunked token log-probs against naive float64 log_softmax (values and gradients), and its memory claim.

Run: python -m pytest tests/algorithms/test_logprobs.py -q
"""

import pytest
import torch

from zaya_rl.algorithms.logprobs import token_logprobs


def _inputs(n=37, h=8, v=50, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=g, dtype=dtype)
    weight = torch.randn(v, h, generator=g, dtype=dtype)
    targets = torch.randint(0, v, (n,), generator=g)
    return hidden, weight, targets


def _naive(hidden, weight, targets, temperature):
    logits = hidden @ weight.T / temperature
    return torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None]).squeeze(-1)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("chunk_size", [1, 8, 1000])
def test_values_and_gradients_match_naive_float64(temperature, chunk_size):
    hidden, weight, targets = _inputs()
    upstream = torch.randn(hidden.shape[0], dtype=torch.float64)
    grads = []
    for fn in (
        lambda h, w: token_logprobs(h, w, targets, temperature=temperature, chunk_size=chunk_size),
        lambda h, w: _naive(h, w, targets, temperature),
    ):
        h, w = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
        out = fn(h, w)
        (out * upstream).sum().backward()
        grads.append((out.detach(), h.grad, w.grad))
    (o1, gh1, gw1), (o2, gh2, gw2) = grads
    torch.testing.assert_close(o1, o2, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(gh1, gh2, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(gw1, gw2, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("chunk_size", [1, 8, 1000])
def test_lm_head_bias_values_and_gradients_match_naive_float64(chunk_size):
    """(h Wᵀ + b) / T: the bias (ZAYA's ``lm_head_bias``) is part of the logits and gets its gradient."""
    hidden, weight, targets = _inputs()
    bias = torch.randn(weight.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    upstream = torch.randn(hidden.shape[0], dtype=torch.float64)
    grads = []
    for fn in (
        lambda h, w, b: token_logprobs(h, w, targets, temperature=0.7, chunk_size=chunk_size, bias=b),
        lambda h, w, b: torch.log_softmax((h @ w.T + b) / 0.7, -1).gather(-1, targets[:, None]).squeeze(-1),
    ):
        h, w, b = (x.clone().requires_grad_(True) for x in (hidden, weight, bias))
        out = fn(h, w, b)
        (out * upstream).sum().backward()
        grads.append((out.detach(), h.grad, w.grad, b.grad))
    for ours, ref in zip(*grads, strict=True):
        torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-9)
    assert torch.autograd.gradcheck(
        lambda h, w, b: token_logprobs(h, w, targets[:6], temperature=0.5, chunk_size=4, bias=b),
        tuple(x.clone().requires_grad_(True) for x in (hidden[:6], weight, bias)),
    )


def test_lm_head_bias_in_bf16_logits_is_added_before_rounding():
    """fp32=False (a bf16 head): logits = bf16(h Wᵀ + b), as ``nn.Linear`` in bf16 computes them."""
    hidden, weight, targets = _inputs(n=16, h=32, v=300, dtype=torch.float32)
    bias = torch.randn(300, generator=torch.Generator().manual_seed(2))
    h, w, b = hidden.bfloat16(), weight.bfloat16(), bias.bfloat16()
    ref = torch.log_softmax(torch.nn.functional.linear(h, w, b).float(), -1).gather(-1, targets[:, None])[:, 0]
    torch.testing.assert_close(token_logprobs(h, w, targets, bias=b, chunk_size=5), ref, rtol=0, atol=1e-6)


def test_batched_shape_and_one_input_needing_grad():
    hidden, weight, targets = _inputs(n=24)
    h3 = hidden.reshape(4, 6, 8).requires_grad_(True)
    out = token_logprobs(h3, weight, targets.reshape(4, 6), chunk_size=5)
    assert out.shape == (4, 6) and out.dtype == torch.float64
    out.sum().backward()
    h2 = hidden.clone().requires_grad_(True)
    _naive(h2, weight, targets, 1.0).sum().backward()
    torch.testing.assert_close(h3.grad.reshape(24, 8), h2.grad)


def test_gradcheck():
    hidden, weight, targets = _inputs(n=6, h=3, v=7)
    hidden.requires_grad_(True)
    weight.requires_grad_(True)

    def fn(h, w):
        return token_logprobs(h, w, targets, temperature=0.5, chunk_size=4)

    assert torch.autograd.gradcheck(fn, (hidden, weight))


def test_bf16_with_fp32_upcast_is_close_to_fp32():
    hidden, weight, targets = _inputs(n=16, h=32, v=300, dtype=torch.float32)
    ref = _naive(hidden, weight, targets, 1.0)
    fp32 = token_logprobs(hidden.bfloat16(), weight.bfloat16(), targets, fp32=True)
    bf16 = token_logprobs(hidden.bfloat16(), weight.bfloat16(), targets)
    assert (fp32 - ref).abs().max() < 0.2  # only the bf16 rounding of the inputs remains
    assert (fp32 - ref).abs().max() <= (bf16 - ref).abs().max()
    h = hidden.bfloat16().requires_grad_(True)
    w = weight.bfloat16().requires_grad_(True)
    token_logprobs(h, w, targets, fp32=True, chunk_size=3).sum().backward()
    assert h.grad.dtype == torch.bfloat16 and w.grad.dtype == torch.bfloat16
    assert fp32.dtype == torch.float32 and bf16.dtype == torch.float32


def test_autograd_keeps_no_logits():
    """The graph must hold O(N·H + V·H) saved tensors, never the [N, V] logits."""
    n, h, v = 64, 4, 500
    hidden, weight, targets = _inputs(n=n, h=h, v=v)
    hidden.requires_grad_(True)
    saved = []

    def pack(x):
        saved.append(x.numel())
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        token_logprobs(hidden, weight, targets, chunk_size=16)
    assert saved and max(saved) <= v * h and sum(saved) <= n * h + v * h + 2 * n
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        _naive(hidden, weight, targets, 1.0)
    assert max(saved) >= n * v  # the naive graph does keep them (sanity of the hook)


def test_argument_errors():
    hidden, weight, targets = _inputs(n=4)
    with pytest.raises(ValueError, match="temperature"):
        token_logprobs(hidden, weight, targets, temperature=0.0)
    with pytest.raises(ValueError, match="targets must lie in"):
        token_logprobs(hidden, weight, targets + 50)
    with pytest.raises(ValueError, match="targets"):
        token_logprobs(hidden, weight, targets[:3])
    with pytest.raises(ValueError, match="lm_head_weight"):
        token_logprobs(hidden, weight[:, :5], targets)
    with pytest.raises(ValueError, match="chunk_size"):
        token_logprobs(hidden, weight, targets, chunk_size=0)
    with pytest.raises(ValueError, match="bias must be"):
        token_logprobs(hidden, weight, targets, bias=torch.zeros(3, dtype=weight.dtype))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (bf16 GEMM with fp32 output)")
def test_cuda_bf16_fp32_logits_are_as_accurate_as_naive_autograd():
    """bf16 operands, fp32 logits (out_dtype GEMMs): values exact to fp32, gradients as good as autograd's."""
    hidden, weight, targets = (x.cuda() for x in _inputs(n=300, h=64, v=5000, dtype=torch.float32))
    hidden, weight = hidden.bfloat16(), weight.bfloat16()  # every variant sees the same bf16 inputs
    upstream = torch.randn(300, device="cuda", dtype=torch.float64)

    def run(fn, dtype):
        h = hidden.detach().to(dtype).requires_grad_(True)  # fresh leaves for every variant
        w = weight.detach().to(dtype).requires_grad_(True)
        out = fn(h, w)
        (out * upstream.to(out.dtype)).sum().backward()
        return out.double(), h.grad.double(), w.grad.double()

    ours = run(
        lambda h, w: token_logprobs(h, w, targets, temperature=0.8, chunk_size=64, fp32=True, impl="chunked"),
        torch.bfloat16,
    )
    autograd = run(
        lambda h, w: torch.log_softmax((h @ w.T).float() / 0.8, -1).gather(-1, targets[:, None]).squeeze(-1),
        torch.bfloat16,
    )
    exact = run(lambda h, w: _naive(h, w, targets, 0.8), torch.float64)
    torch.testing.assert_close(ours[0], exact[0], rtol=0, atol=1e-4)
    for k in (1, 2):  # gradients carry bf16 rounding only: no worse than naive autograd's (with margin)
        assert (ours[k] - exact[k]).abs().max() <= 1.5 * (autograd[k] - exact[k]).abs().max() + 1e-6
