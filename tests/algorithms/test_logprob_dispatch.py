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
    """cut-cross-entropy 25.1's arithmetic: an fp32 log-sum-exp of exact products, but the target logit summed
    from products rounded to the inputs' dtype (``indexed_dot.py``: ``(e * c).to(tl.float32)``)."""
    calls.append({"reduction": reduction, "filter_eps": filter_eps, "dtype": e.dtype})

    class _NLL(torch.autograd.Function):  # the kernel's backward is the exact (softmax − onehot) one
        @staticmethod
        def forward(ctx, e, c):
            ctx.save_for_backward(e, c)
            lse = torch.logsumexp(e.double() @ c.double().T, -1)
            return (lse - (e * c[targets]).double().sum(-1)).float()

        @staticmethod
        def backward(ctx, g):
            e, c = ctx.saved_tensors
            with torch.enable_grad():
                ed, cd = e.detach().double().requires_grad_(True), c.detach().double().requires_grad_(True)
                F.cross_entropy(ed @ cd.T, targets, reduction="none").backward(g.double())
            return ed.grad.to(e.dtype), cd.grad.to(c.dtype)

    return _NLL.apply(e, c)


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


def test_cce_target_logit_is_made_exact_in_bf16(kernels):
    """The kernel's bf16-rounded products would leave ~1e-2 nats at H = 2048; the adapter removes them."""
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(64, 2048, generator=g).bfloat16()
    weight = (torch.randn(50, 2048, generator=g) * 0.05).bfloat16()
    targets = torch.randint(0, 50, (64,), generator=g)
    exact = torch.log_softmax(hidden.double() @ weight.double().T, -1).gather(-1, targets[:, None])[:, 0]
    raw = -fake_cce(hidden, weight, targets, reduction="none").double()
    assert (raw - exact).abs().max() > 3e-3  # what the kernel alone returns
    ours = fused_logprobs.cce_logprobs(hidden, weight, None, targets, 1.0).double()
    assert (ours - exact).abs().max() < 1e-4
    shift = fused_logprobs._exact_target_logit_shift  # its row chunks (one here) must not change the sums
    torch.testing.assert_close(shift(hidden, weight, targets, rows=7), shift(hidden, weight, targets), rtol=0, atol=0)


def test_cce_adapter_refuses_a_bias_and_a_missing_kernel(kernels, monkeypatch):
    h, w, t = torch.randn(3, 4), torch.randn(6, 4), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="no lm_head bias"):
        fused_logprobs.cce_logprobs(h, w, torch.zeros(6), t, 1.0)
    monkeypatch.setattr(fused_logprobs, "load_kernel", lambda name: (None, "liger-kernel is not importable (x)"))
    with pytest.raises(RuntimeError, match="not importable"):
        fused_logprobs.liger_logprobs(h, w, None, t, 1.0)


def test_config_choices_and_contradictions_fail_at_load():
    from typing import get_args

    from zaya_rl.config import config_from_dict
    from zaya_rl.config.schema import TrainerConfig

    assert get_args(TrainerConfig.model_fields["logprob_impl"].annotation) == IMPLS
    with pytest.raises(ValueError, match="trainer.logprob_impl: cce is a CUDA kernel, but trainer.device is cpu"):
        config_from_dict({"trainer": {"device": "cpu", "logprob_impl": "cce"}})
    with pytest.raises(ValueError, match="trainer.packing: always needs trainer.backend torch"):
        config_from_dict({"trainer": {"backend": "deepspeed", "num_gpus": 2, "packing": "always"}})
    assert config_from_dict({}).trainer.logprob_impl == "auto"


def test_trainer_start_names_the_kernel_and_layout():
    from zaya_rl.models.policy import build_preset
    from zaya_rl.trainer.step import LossSettings, describe_kernels

    model, _ = build_preset("tiny-zaya")
    settings = LossSettings(temperature=1.0, delta=0.1, tis_cap=2.0, aggregation="token-mean", max_len=8,
                            logprob_chunk_size=8, router_replay=False, grad_clip=1.0, micro_batch_size=2, packing="auto")
    info = describe_kernels(model, settings)
    assert info["logprob_impl"].startswith("chunked (cce runs on CUDA only")
    assert info["micro_batches"] == "packed where it costs less than padding (2 separator slots between sequences)"
    model.config.attention_bias = True  # what a checkpoint with q/k biases would say
    assert "attention_bias=True" in describe_kernels(model, settings)["micro_batches"]
    import dataclasses

    with pytest.raises(ValueError, match="trainer.packing=always: ZAYA with attention_bias=True"):
        describe_kernels(model, dataclasses.replace(settings, packing="always"))


def test_grad_filter_reaches_cut_cross_entropy_and_nothing_else(kernels, monkeypatch):
    """trainer.logprob_grad_filter → token_logprobs(grad_filter=True) → CCE's filter_eps="high"; other kernels refuse."""
    g = torch.Generator().manual_seed(1)
    hidden, weight, targets = torch.randn(6, 8, generator=g), torch.randn(40, 8, generator=g), torch.arange(6)
    monkeypatch.setattr(logprobs, "resolve_impl", lambda *a, **k: ("cce", ""))
    token_logprobs(hidden, weight, targets, 0.7, impl="cce", grad_filter=True)
    assert calls[-1]["filter_eps"] == "high"
    token_logprobs(hidden, weight, targets, 0.7, impl="cce")
    assert calls[-1]["filter_eps"] is None
    for name in ("chunked", "liger"):
        monkeypatch.setattr(logprobs, "resolve_impl", lambda *a, name=name, **k: (name, ""))
        with pytest.raises(ValueError, match=f"grad_filter is cut-cross-entropy's gradient filtering; impl=auto resolved to {name}"):
            token_logprobs(hidden, weight, targets, 0.7, grad_filter=True)


def test_grad_filter_contradictions_fail_at_load_and_at_trainer_start(monkeypatch):
    import dataclasses

    from zaya_rl.config import config_from_dict
    from zaya_rl.models.policy import build_preset
    from zaya_rl.trainer import step
    from zaya_rl.trainer.step import LossSettings, describe_kernels

    for trainer in ({"device": "cuda", "logprob_impl": "chunked"}, {"device": "cuda", "logprob_impl": "liger"},
                    {"device": "cpu"}):
        with pytest.raises(ValueError, match="trainer.logprob_grad_filter: true is cut-cross-entropy's"):
            config_from_dict({"trainer": {**trainer, "logprob_grad_filter": True}})
    assert config_from_dict({"trainer": {"device": "cuda", "logprob_grad_filter": True}}).trainer.logprob_grad_filter
    assert not config_from_dict({}).trainer.logprob_grad_filter

    model, _ = build_preset("tiny-zaya")  # on this CPU auto resolves to chunked
    settings = LossSettings(temperature=1.0, delta=0.1, tis_cap=2.0, aggregation="token-mean", max_len=8,
                            logprob_chunk_size=8, router_replay=False, grad_clip=1.0, micro_batch_size=2,
                            logprob_grad_filter=True)
    with pytest.raises(ValueError, match="the log-prob kernel here is chunked \\(cce runs on CUDA only"):
        describe_kernels(model, settings)
    monkeypatch.setattr(step, "resolve_impl", lambda *a, **k: ("cce", ""))
    assert describe_kernels(model, settings)["logprob_impl"] == "cce with gradient filtering"
    assert describe_kernels(model, dataclasses.replace(settings, logprob_grad_filter=False))["logprob_impl"] == "cce"


def test_the_trainer_step_hands_grad_filter_to_the_kernel(monkeypatch):
    """trainer.logprob_grad_filter → LossSettings → sequence_logprobs → token_logprobs(grad_filter=True)."""
    import dataclasses

    from zaya_rl.models.policy import build_preset
    from zaya_rl.trainer import step
    from zaya_rl.trainer.batch import TrainSample, collate

    model, _ = build_preset("tiny-zaya")
    mb = collate([TrainSample([1, 2, 3], [4, 5], [-0.5, -0.7], 1.0), TrainSample([6, 7], [8], [-0.2], -1.0)], pad_id=0)
    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs.get("grad_filter"))
        return token_logprobs(*args, **{**kwargs, "grad_filter": False})  # the CPU runs the chunked reference

    monkeypatch.setattr(step, "token_logprobs", spy)
    settings = step.LossSettings(temperature=1.0, delta=0.1, tis_cap=2.0, aggregation="token-mean", max_len=8,
                                 logprob_chunk_size=8, router_replay=False, grad_clip=1.0, micro_batch_size=2,
                                 logprob_grad_filter=True)
    step.sequence_logprobs(model, mb, settings=settings)
    step.sequence_logprobs(model, mb, settings=dataclasses.replace(settings, logprob_grad_filter=False))
    assert seen == [True, False]
