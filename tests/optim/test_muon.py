"""Momentum-free Muon against torch.optim.Muon(momentum=0) and against exact Newton–Schulz maths.

Run: python -m pytest tests/optim/test_muon.py -q
"""

import pytest
import torch

from zaya_rl.optim import muon as muon_module
from zaya_rl.optim.muon import NS_COEFFICIENTS, Muon, batches, newton_schulz

SHAPES_2D = [(32, 32), (16, 40), (48, 24), (5, 32), (60, 17)]


def _grads(shapes, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(*s, generator=g) for s in shapes] for _ in range(steps)]


def _run(opt, params, grads):
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = g.clone()
        opt.step()


@pytest.mark.parametrize("adjust", ["match_rms_adamw", "original"])
@pytest.mark.parametrize("nesterov", [True, False])
def test_matches_torch_muon_momentum_zero_on_2d(adjust, nesterov):
    init = [torch.randn(*s) for s in SHAPES_2D]
    ours = [torch.nn.Parameter(x.clone()) for x in init]
    ref = [torch.nn.Parameter(x.clone()) for x in init]
    grads = _grads(SHAPES_2D, steps=4)
    _run(Muon(ours, lr=0.02, weight_decay=0.1, adjust_lr_fn=adjust), ours, grads)
    torch_muon = torch.optim.Muon(
        ref, lr=0.02, weight_decay=0.1, momentum=0.0, nesterov=nesterov, adjust_lr_fn=adjust
    )
    _run(torch_muon, ref, grads)
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
        assert not torch.equal(a, torch.zeros_like(a))


def test_keeps_no_state():
    params = [torch.nn.Parameter(torch.randn(8, 4)), torch.nn.Parameter(torch.randn(3, 8, 4))]
    opt = Muon(params, lr=0.01)
    _run(opt, params, _grads([(8, 4), (3, 8, 4)], steps=2))
    assert len(opt.state) == 0
    assert opt.state_dict()["state"] == {}


def test_expert_stack_is_per_expert_torch_muon():
    e, a, b = 4, 12, 20
    init = torch.randn(e, a, b)
    stacked = torch.nn.Parameter(init.clone())
    slices = [torch.nn.Parameter(init[i].clone()) for i in range(e)]
    grads = _grads([(e, a, b)], steps=3)
    _run(Muon([stacked], lr=0.02, weight_decay=0.05), [stacked], grads)
    ref = torch.optim.Muon(slices, lr=0.02, weight_decay=0.05, momentum=0.0, adjust_lr_fn="match_rms_adamw")
    _run(ref, slices, [[g[0][i] for i in range(e)] for g in grads])
    torch.testing.assert_close(
        stacked.detach(), torch.stack([s.detach() for s in slices]), rtol=1e-6, atol=1e-7
    )


def test_expert_stack_is_not_flattened():
    # orthogonalising [E·A, B] would mix experts; per-expert NS output rows of expert 0 must not depend on expert 1
    g = torch.randn(2, 8, 16)
    out = newton_schulz(g, dtype=torch.float64)
    g2 = g.clone()
    g2[1] *= 100
    assert torch.equal(newton_schulz(g2, dtype=torch.float64)[0], out[0])


def test_split_gate_up_is_two_separate_matrices():
    e, i, h = 3, 8, 24
    init = torch.randn(e, 2 * i, h)
    fused = torch.nn.Parameter(init.clone())
    halves = [torch.nn.Parameter(init[x, k * i : (k + 1) * i].clone()) for x in range(e) for k in range(2)]
    grads = _grads([(e, 2 * i, h)], steps=3)
    _run(Muon([{"params": [fused], "split_halves": True}], lr=0.02, weight_decay=0.1), [fused], grads)
    ref = torch.optim.Muon(halves, lr=0.02, weight_decay=0.1, momentum=0.0, adjust_lr_fn="match_rms_adamw")
    _run(ref, halves, [[g[0][x, k * i : (k + 1) * i] for x in range(e) for k in range(2)] for g in grads])
    expected = torch.stack(
        [torch.cat([halves[2 * x].detach(), halves[2 * x + 1].detach()]) for x in range(e)]
    )
    torch.testing.assert_close(fused.detach(), expected, rtol=1e-6, atol=1e-7)
    # and it differs from orthogonalising the fused [2I, H] matrix
    whole = torch.nn.Parameter(init.clone())
    _run(Muon([whole], lr=0.02, weight_decay=0.1), [whole], grads)
    assert not torch.allclose(whole, fused)


def _quintic_k(s, k=5):
    a, b, c = NS_COEFFICIENTS
    for _ in range(k):
        s = a * s + b * s**3 + c * s**5
    return s


@pytest.mark.parametrize("shape", [(6, 10), (10, 6)])
def test_newton_schulz_float64_singular_values_land_in_band(shape):
    """NS acts on singular values by the scalar quintic; for σ ∈ [0.05, 1] five steps land in [0.68, 1.14]."""
    torch.manual_seed(0)
    m, n = shape
    r = min(m, n)
    u, _ = torch.linalg.qr(torch.randn(m, r, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, r, dtype=torch.float64))
    s = torch.tensor(
        [0.9, 0.4, 0.2, 0.12, 0.08, 0.055], dtype=torch.float64
    )  # ‖s‖ ≈ 1.017: σ/‖s‖ ∈ [0.054, 0.89]
    g = 7.0 * u @ torch.diag(s) @ v.T
    out = newton_schulz(g[None], dtype=torch.float64)[0]
    sigma = s / s.norm()  # NS divides by the Frobenius norm
    expected = _quintic_k(sigma)
    torch.testing.assert_close(out, u @ torch.diag(expected) @ v.T, rtol=1e-10, atol=1e-10)
    got = torch.linalg.svdvals(out)
    assert got.min() > 0.68 and got.max() < 1.14


def test_quintic_band_claims_of_the_research_note():
    s = torch.linspace(0.05, 1, 100_001, dtype=torch.float64)
    y = _quintic_k(s)
    assert 0.68 < y.min() < 0.69 and 1.13 < y.max() < 1.14  # note says [0.68, 1.13]; measured max 1.1344
    assert _quintic_k(torch.tensor(1.0, dtype=torch.float64)).item() == pytest.approx(0.6964, abs=1e-4)


def test_zero_gradient_is_pure_weight_decay_with_unadjusted_lr():
    p = torch.nn.Parameter(torch.randn(16, 8))
    before = p.detach().clone()
    p.grad = torch.zeros_like(p)
    Muon([p], lr=0.1, weight_decay=0.5).step()
    torch.testing.assert_close(p.detach(), before * (1 - 0.1 * 0.5))


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="2-D matrices or 3-D expert stacks"):
        Muon([torch.nn.Parameter(torch.randn(4))])
    with pytest.raises(ValueError, match="split_halves needs an even dim -2"):
        Muon([{"params": [torch.nn.Parameter(torch.randn(2, 5, 4))], "split_halves": True}])
    with pytest.raises(ValueError, match="adjust_lr_fn"):
        Muon([torch.nn.Parameter(torch.randn(4, 4))], adjust_lr_fn="sqrt")
    with pytest.raises(ValueError, match=r"\[N, A, B\]"):
        newton_schulz(torch.randn(4, 4))


# Batched Newton–Schulz: every same-shaped matrix of a group in one call, per-matrix maths unchanged.
# (name, shape, dtype, has grad). Matrix shapes repeat: (16, 24) from 2-D params and a 3-D stack, (24, 16),
# (8, 8); (16, 24) in bf16 (two params) batches apart; split halves (8, 24) from 3-D stacks and a 2-D param.
BATCHED_GROUP = [
    ("a0", (16, 24), torch.float32, True),
    ("a1", (16, 24), torch.float32, True),
    ("experts", (3, 16, 24), torch.float32, True),
    ("a2", (16, 24), torch.float32, True),
    ("b0", (24, 16), torch.float32, True),
    ("frozen", (16, 24), torch.float32, False),
    ("b1", (24, 16), torch.float32, True),
    ("c0", (8, 8), torch.float32, True),
    ("a_bf16", (16, 24), torch.bfloat16, True),
    ("c1", (8, 8), torch.float32, True),
    ("a_bf16_2", (16, 24), torch.bfloat16, True),
]
BATCHED_SPLIT = [
    ("gate_up0", (2, 16, 24), torch.float32, True),
    ("gate_up_2d", (16, 24), torch.float32, True),
    ("gate_up1", (2, 16, 24), torch.float32, True),
]


def _matrices(x, split):
    """The matrices Muon orthogonalises separately in ``x`` (halves of dim -2 with ``split``)."""
    rows = x.shape[-2] // 2 if split else x.shape[-2]
    return list(x.reshape(-1, rows, x.shape[-1]).unbind())


def _batched_vs_torch(weight_decay, steps=3):
    """Step BATCHED_GROUP + BATCHED_SPLIT with ours, each matrix alone with torch.optim.Muon(momentum=0)."""
    specs = [(*s, False) for s in BATCHED_GROUP] + [(*s, True) for s in BATCHED_SPLIT]
    g = torch.Generator().manual_seed(1)
    init = [torch.randn(shape, generator=g).to(dtype) for _, shape, dtype, _, _ in specs]
    grads = [
        [torch.randn(shape, generator=g).to(dtype) for _, shape, dtype, _, _ in specs] for _ in range(steps)
    ]
    ours = [torch.nn.Parameter(x.clone()) for x in init]
    ref = [
        [torch.nn.Parameter(m.clone()) for m in _matrices(x, s[-1])] for x, s in zip(init, specs, strict=True)
    ]
    n = len(BATCHED_GROUP)
    opt = Muon(
        [{"params": ours[:n]}, {"params": ours[n:], "split_halves": True}], lr=0.02, weight_decay=weight_decay
    )
    torch_muon = torch.optim.Muon(
        [m for ms in ref for m in ms], lr=0.02, weight_decay=weight_decay, momentum=0.0,
        adjust_lr_fn="match_rms_adamw",
    )  # fmt: skip
    for step_grads in grads:
        for p, ms, grad, (*_, has_grad, split) in zip(ours, ref, step_grads, specs, strict=True):
            if has_grad:
                p.grad = grad.clone()
                for m, gm in zip(ms, _matrices(grad, split), strict=True):
                    m.grad = gm.clone()
        opt.step()
        torch_muon.step()
    for p, ms, x, (name, *_, has_grad, split) in zip(ours, ref, init, specs, strict=True):
        expected = torch.stack([m.detach() for m in ms])
        torch.testing.assert_close(torch.stack(_matrices(p.detach(), split)), expected, rtol=1e-6, atol=1e-7)
        assert torch.equal(p.detach(), x) != has_grad, name  # stepped iff it had a gradient


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_batched_group_equals_torch_muon_per_matrix(weight_decay):
    _batched_vs_torch(weight_decay)


def _count_ns_calls(monkeypatch):
    calls = []

    def counting(grads, *args, **kwargs):
        calls.append(tuple(grads.shape))
        return newton_schulz(grads, *args, **kwargs)

    monkeypatch.setattr(muon_module, "newton_schulz", counting)
    return calls


def test_batch_cap_splits_batches_with_the_same_result(monkeypatch):
    calls = _count_ns_calls(monkeypatch)
    monkeypatch.setattr(muon_module, "NS_BATCH_ELEMENTS", 2 * 16 * 24)  # the 3-D stack [3, 16, 24] goes alone
    _batched_vs_torch(weight_decay=0.1, steps=1)
    # keys in first-seen order: (16, 24) fp32: a0 + a1 | experts | a2; (24, 16): b0 + b1; (8, 8): c0 + c1;
    # (16, 24) bf16: a_bf16 + a_bf16_2; split group (8, 24): gate_up0 (at the cap) | gate_up_2d | gate_up1
    assert calls == [(2, 16, 24), (3, 16, 24), (1, 16, 24), (2, 24, 16), (2, 8, 8), (2, 16, 24),
                     (4, 8, 24), (2, 8, 24), (4, 8, 24)]  # fmt: skip


def test_same_shaped_matrices_share_one_newton_schulz_call(monkeypatch):
    calls = _count_ns_calls(monkeypatch)
    params = [torch.nn.Parameter(torch.randn(12, 20)) for _ in range(6)]
    for p in params:
        p.grad = torch.randn(12, 20)
    Muon(params, lr=0.02).step()
    assert calls == [(6, 12, 20)]


def test_batches_groups_equal_keys_and_caps_their_size():
    keys, sizes = ["a", "b", "a", "a", "b", "a"], [3, 1, 3, 5, 1, 9]
    assert batches(keys, sizes, cap=6) == [[0, 2], [3], [5], [1, 4]]
    assert batches(keys, sizes, cap=100) == [[0, 2, 3, 5], [1, 4]]
