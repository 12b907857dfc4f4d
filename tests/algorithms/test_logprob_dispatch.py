"""Which log-prob implementation runs (``trainer.logprob_impl``), the fallback, and the fused adapters' maths.

The fused kernels need CUDA; here they are replaced by stand-ins with their documented call signatures that
compute the per-token cross-entropy with plain torch, so the adapters' temperature, bias, sign and gradient
plumbing are checked against naive ``log_softmax`` on CPU. The kernels themselves are compared with the
chunked reference in ``tests/gpu/test_fused_logprobs_gpu.py``.

Run: python -m pytest tests/algorithms/test_logprob_dispatch.py -q
"""

import pytest
import torch
import torch.nn.functional as F

from zaya_rl.algorithms import fused_logprobs, logprobs
from zaya_rl.algorithms.fused_logprobs import IMPLS, resolve_impl
from zaya_rl.algorithms.logprobs import token_logprobs

CUDA, CPU = torch.device("cuda"), torch.device("cpu")
BF16, F32 = torch.bfloat16, torch.float32


def _ce(e, c, targets, bias=None):
    logits = e.double() @ c.double().T + (0 if bias is None else bias.double())
    return F.cross_entropy(logits, targets, reduction="none").float()


calls = []


def fake_cce(e, c, targets, ignore_index=-100, softcap=None, reduction="mean", shift=False, filter_eps="high"):
    calls.append({"reduction": reduction, "filter_eps": filter_eps, "dtype": e.dtype})
    return _ce(e, c, targets)


def fake_liger(input, weight, target, bias=None, reduction="mean", accum_dtype=None, **_):
    calls.append({"reduction": reduction, "accum_dtype": accum_dtype, "dtype": input.dtype})
    return _ce(input, weight, target, bias)


@pytest.fixture
def kernels(monkeypatch):
    """Both fused kernels 'installed' as the stand-ins above."""
    table = {"cce": (fake_cce, ""), "liger": (fake_liger, "")}
    monkeypatch.setattr(fused_logprobs, "load_kernel", lambda name: table[name])
    calls.clear()
    return table


def _resolve(impl, device=CUDA, dtype=BF16, fp32=True, bias=False):
    return resolve_impl(impl, device=device, weight_dtype=dtype, fp32=fp32, has_bias=bias)


def test_cpu_always_runs_chunked_and_an_explicit_fused_choice_says_why(kernels):
    name, why = _resolve("auto", device=CPU)
    assert name == "chunked" and "CUDA" in why
    assert _resolve("chunked") == ("chunked", "")
    with pytest.raises(ValueError, match="logprob_impl=cce: cce runs on CUDA only"):
        _resolve("cce", device=CPU)
    with pytest.raises(ValueError, match="unknown 'flash'"):
        _resolve("flash")
    assert IMPLS == ("auto", "chunked", "cce", "liger")


def test_auto_on_cuda_picks_the_kernel_that_computes_exactly_the_reference(kernels):
    assert _resolve("auto") == ("cce", "")  # bf16 weights, fp32 head: cut-cross-entropy's fp32 accumulator
    assert _resolve("auto", fp32=False) == ("cce", "")
    # a bias: CCE cannot; Liger can, but only where its logits' dtype is what was asked for
    assert _resolve("auto", bias=True, fp32=False) == ("liger", "")
    name, why = _resolve("auto", bias=True, fp32=True)
    assert name == "chunked" and "no lm_head bias" in why and "fp32 head" in why
    assert _resolve("auto", dtype=F32) == ("liger", "")  # fp32 weights: CCE's backward needs bf16
    with pytest.raises(ValueError, match="logprob_impl=liger: liger computes logits in the weights' dtype"):
        _resolve("liger", fp32=True)
    with pytest.raises(ValueError, match="no lm_head bias"):
        _resolve("cce", bias=True)


def test_missing_packages_fall_back_to_chunked_with_the_import_error(monkeypatch):
    monkeypatch.setattr(
        fused_logprobs, "load_kernel", lambda name: (None, f"{name} is not importable (ModuleNotFoundError: triton)")
    )
    name, why = _resolve("auto", fp32=False)
    assert name == "chunked" and why.count("not importable") == 2
    with pytest.raises(ValueError, match="ModuleNotFoundError"):
        _resolve("cce")


def test_real_loader_reports_an_absent_package_instead_of_raising():
    try:
        import cut_cross_entropy  # noqa: F401
    except Exception:
        fn, why = fused_logprobs.load_kernel("cce")
        assert fn is None and why.startswith("cut-cross-entropy is not importable (")
    else:
        pytest.skip("cut-cross-entropy is installed here")


@pytest.mark.parametrize("impl", ["cce", "liger"])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_fused_adapters_match_naive_log_softmax_values_and_gradients(kernels, monkeypatch, impl, temperature):
    """token_logprobs → adapter → kernel: log p = −CE of (h/T) Wᵀ (+ b/T), gradients through the scale."""
    monkeypatch.setattr(logprobs, "resolve_impl", lambda *a, **k: (impl, ""))
    g = torch.Generator().manual_seed(0)
    hidden, weight = torch.randn(2, 5, 8, generator=g), torch.randn(40, 8, generator=g)
    bias = torch.randn(40, generator=g) if impl == "liger" else None
    targets = torch.randint(0, 40, (2, 5), generator=g)
    upstream = torch.randn(2, 5, generator=g)
    results = []
    for fn in (
        lambda h, w, b: token_logprobs(h, w, targets, temperature, bias=b, impl=impl),
        lambda h, w, b: torch.log_softmax((h.double() @ w.double().T + (0 if b is None else b.double())) / temperature, -1)
        .gather(-1, targets[..., None])
        .squeeze(-1),
    ):
        leaves = [x.clone().requires_grad_(True) if x is not None else None for x in (hidden, weight, bias)]
        out = fn(*leaves)
        (out * upstream).sum().backward()
        results.append([out.detach().float()] + [x.grad.float() for x in leaves if x is not None])
    for ours, ref in zip(*results, strict=True):
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    assert calls[-1]["reduction"] == "none"  # per-token losses, per-token upstream gradient
    if impl == "cce":
        assert calls[-1]["filter_eps"] is None  # exact gradient, no softmax filtering
    else:
        assert calls[-1]["accum_dtype"] == torch.float32
    assert results[0][0].shape == (2, 5)


def test_cce_adapter_refuses_a_bias_and_a_missing_kernel(kernels, monkeypatch):
    h, w, t = torch.randn(3, 4), torch.randn(6, 4), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="no lm_head bias"):
        fused_logprobs.cce_logprobs(h, w, torch.zeros(6), t, 1.0)
    monkeypatch.setattr(fused_logprobs, "load_kernel", lambda name: (None, "liger-kernel is not importable (x)"))
    with pytest.raises(RuntimeError, match="not importable"):
        fused_logprobs.liger_logprobs(h, w, None, t, 1.0)
