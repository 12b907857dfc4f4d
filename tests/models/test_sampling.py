"""python -m pytest tests/models/test_sampling.py -q"""

from __future__ import annotations

import math

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
