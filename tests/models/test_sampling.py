"""python -m pytest tests/models/test_sampling.py -q"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zaya_rl.models.sampling import sample_tokens

PROBS = [0.5, 0.3, 0.15, 0.05]


def _one(probs, temperature, top_p, u):
    logits = torch.tensor([probs]).log()
    tok, lp = sample_tokens(logits, torch.tensor([temperature]), torch.tensor([top_p]), torch.tensor([u]))
    return int(tok), float(lp)


@pytest.mark.parametrize(
    ("temperature", "top_p", "u", "token", "logprob"),
    [
        # top-p 0.7 keeps {0, 1} (mass before token 2 is 0.8 >= 0.7); renormalised q' = [0.625, 0.375].
        (1.0, 0.7, 0.1, 0, math.log(0.625)),  # target 0.1 * 0.8 = 0.08 < 0.5
        (1.0, 0.7, 0.7, 1, math.log(0.375)),  # target 0.56 in (0.5, 0.8]
        (1.0, 0.7, 0.999, 1, math.log(0.375)),  # never beyond the kept support
        # top-p 0.45: the mass before token 1 is 0.5 >= 0.45, so only token 0 is kept (q' = 1).
        (1.0, 0.45, 0.9, 0, 0.0),
        # T = 2: q ∝ sqrt(p) = [.70711, .54772, .38730, .22361] / 1.86574; u = 0.99 lands on the last token.
        (2.0, 1.0, 0.99, 3, math.log(0.22361 / 1.86574)),
        # T = 0: greedy with T = 1 log-probs, whatever top_p says.
        (0.0, 0.3, 0.99, 0, math.log(0.5)),
    ],
)
def test_hand_computed(temperature, top_p, u, token, logprob):
    got_tok, got_lp = _one(PROBS, temperature, top_p, u)
    assert got_tok == token
    assert got_lp == pytest.approx(logprob, abs=1e-4)


def _naive_kept(logits: torch.Tensor, temperature: float, top_p: float) -> dict[int, float]:
    """Reference: token -> renormalised log-prob over the nucleus, by a Python loop."""
    q = torch.softmax(logits.double() / temperature, dim=-1).tolist()
    kept, mass = {}, 0.0
    for i in sorted(range(len(q)), key=lambda i: -q[i]):
        if mass >= top_p:
            break
        kept[i] = q[i]
        mass += q[i]
    return {i: math.log(p / mass) for i, p in kept.items()}


def test_logprobs_sum_to_one_over_the_kept_support():
    torch.manual_seed(0)
    logits = torch.randn(1, 50) * 2
    ref = _naive_kept(logits[0], 0.8, 0.6)
    seen = {}
    for u in torch.linspace(0, 0.9999, 2000):
        tok, lp = sample_tokens(logits, torch.tensor([0.8]), torch.tensor([0.6]), u[None])
        seen[int(tok)] = float(lp)
    assert set(seen) == set(ref)
    assert sum(math.exp(v) for v in seen.values()) == pytest.approx(1.0, abs=1e-5)
    for t, v in seen.items():
        assert v == pytest.approx(ref[t], abs=1e-5)


def test_full_support_is_exactly_log_softmax():
    torch.manual_seed(1)
    logits = torch.randn(4, 30)
    temperature = torch.tensor([1.0, 0.7, 1.3, 0.5])
    tok, lp = sample_tokens(logits, temperature, torch.ones(4), torch.rand(4))
    expected = torch.log_softmax(logits / temperature[:, None], dim=-1).gather(1, tok[:, None]).squeeze(1)
    assert torch.equal(lp, expected)


def test_rows_are_independent():
    torch.manual_seed(2)
    logits = torch.randn(3, 20)
    t, p, u = torch.tensor([0.0, 1.0, 0.6]), torch.tensor([1.0, 0.9, 0.5]), torch.tensor([0.3, 0.6, 0.9])
    tok, lp = sample_tokens(logits, t, p, u)
    for i in range(3):
        ti, li = sample_tokens(logits[i : i + 1], t[i : i + 1], p[i : i + 1], u[i : i + 1])
        assert int(ti) == int(tok[i]) and float(li) == pytest.approx(float(lp[i]), abs=1e-6)


@pytest.mark.parametrize(("u", "token"), [(0.1, 0), (0.6, 1), (0.9, 2), (0.97, 3)])
def test_without_truncation_samples_in_vocabulary_order(u, token):
    """top_p=None (no row truncates): inverse CDF over [0.5, 0.3, 0.15, 0.05] in vocabulary order, no sort;
    cumulative mass 0.5, 0.8, 0.95, 1.0."""
    logits = torch.tensor([PROBS]).log()
    tok, lp = sample_tokens(logits, torch.tensor([1.0]), None, torch.tensor([u]))
    assert int(tok) == token and float(lp) == pytest.approx(math.log(PROBS[token]), abs=1e-6)


def test_without_truncation_logprobs_are_log_softmax_and_greedy_still_works():
    torch.manual_seed(1)
    logits = torch.randn(6, 40) * 3
    temperature = torch.tensor([0.7, 1.0, 1.3, 0.0, 2.0, 0.5])
    tok, lp = sample_tokens(logits, temperature, None, torch.rand(6))
    scaled = torch.log_softmax(logits / torch.where(temperature > 0, temperature, 1.0)[:, None], dim=-1)
    assert torch.equal(lp, scaled.gather(1, tok[:, None]).squeeze(1))  # bit for bit
    assert int(tok[3]) == int(logits[3].argmax())


def test_seeded_uniforms_are_a_pure_function_of_seed_and_counter_and_uniform():
    from zaya_rl.models.sampling import seeded_uniforms

    seeds = np.array([0, 1, 2**63 + 5, 7], dtype=np.uint64)
    counters = np.array([0, 0, 3, 2**40], dtype=np.uint64)
    u = seeded_uniforms(seeds, counters)
    assert ((0 <= u) & (u < 1)).all() and len(set(u.tolist())) == 4
    # row-wise: the same (seed, counter) gives the same draw wherever it sits in the batch
    assert seeded_uniforms(seeds[::-1].copy(), counters[::-1].copy()).tolist() == u[::-1].tolist()
    # 200k draws of one stream: flat histogram (chi-square, 20 bins, 19 d.o.f.: p < 1e-6 above 61.3) and no
    # lag-1 correlation (standard error 1 / sqrt(n) = 0.0022)
    n = 200_000
    x = seeded_uniforms(np.full(n, 12345, dtype=np.uint64), np.arange(n, dtype=np.uint64))
    counts = np.histogram(x, bins=20, range=(0, 1))[0]
    assert ((counts - n / 20) ** 2 / (n / 20)).sum() < 61.3
    assert abs(np.corrcoef(x[:-1], x[1:])[0, 1]) < 0.011
    # neighbouring seeds give unrelated streams
    y = seeded_uniforms(np.full(n, 12346, dtype=np.uint64), np.arange(n, dtype=np.uint64))
    assert abs(np.corrcoef(x, y)[0, 1]) < 0.011
