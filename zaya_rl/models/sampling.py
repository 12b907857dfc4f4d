"""The behaviour distribution of one decode step: temperature, top-p, and the log-prob of the sampled token.

For a row with temperature T > 0 and nucleus mass p (Holtzman et al., arXiv 1904.09751):

    q = softmax(logits / T);  sort q descending;  keep token i iff the mass of the tokens before it < p
    q'(y) = q(y) / sum_{kept} q  for kept y, 0 otherwise;  y ~ q';  behaviour log-prob = log q'(y)

This is vLLM's ``processed_logprobs`` (research/vllm_ray.md §2): the trainer reproduces it as
``log_softmax(logits / T)`` when p = 1, and the DPPO mask and importance ratio (research/algorithms.md
§4) need exactly the distribution the token was drawn from. T = 0 is greedy: argmax, with the T = 1
log-prob (full vocabulary, no top-p), as ``SamplingParams`` documents.

Sampling is by inverse CDF from one uniform per row, drawn by the caller (so per-request seeds work in a
batch): in descending-probability order when some row truncates (top-p needs the sort), in vocabulary order
when none does (``top_p=None``: no ``[B, V]`` sort per decode step; the distribution is the same).
``seeded_uniforms`` gives a seeded request its i-th uniform as a pure function of (seed, i), so a whole
batch draws in one vectorised call and no request's samples depend on what else is in the batch.
Run ``python -m pytest tests/models/test_sampling.py -q``.
"""

from __future__ import annotations

import numpy as np
import torch

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # splitmix64's increment (2^64 / golden ratio)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def seeded_uniforms(seeds: np.ndarray, counters: np.ndarray) -> np.ndarray:
    """U[0, 1) draw number ``counters[i]`` of the stream seeded ``seeds[i]``, for every row at once.

    splitmix64 (Steele, Lea & Flood, OOPSLA 2014) of ``seed * golden + counter``: a counter-based generator,
    so draw n of a stream needs no state and rows never share one. 53 bits -> float64.

    Args:
        seeds: ``[B]`` uint64.
        counters: ``[B]`` uint64, the index of the draw within each stream.

    Returns:
        ``[B]`` float64 in [0, 1).
    """
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps mod 2^64 by design
        z = seeds.astype(np.uint64) * _GOLDEN + (counters.astype(np.uint64) + np.uint64(1)) * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


def sample_tokens(
    logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor | None, uniform: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row and return its behaviour log-prob.

    Args:
        logits: ``[B, V]`` next-token logits (any float dtype; computed in fp32).
        temperature: ``[B]``, >= 0 (0 = greedy).
        top_p: ``[B]`` in (0, 1], or None when every row has top-p 1 (no truncation, no sort).
        uniform: ``[B]`` in [0, 1), the row's random draw.

    Returns:
        ``tokens`` ``[B]`` long and ``logprobs`` ``[B]`` fp32 (log q'(token), see the module docstring).
    """
    logits = logits.float()
    greedy = temperature <= 0
    scaled = logits / torch.where(greedy, 1.0, temperature)[:, None]
    logp = torch.log_softmax(scaled, dim=-1)
    greedy_tok = logp.argmax(dim=-1)
    if top_p is None:
        cum = logp.exp().cumsum(dim=-1)
        pos = torch.searchsorted(cum, uniform[:, None].to(cum.dtype) * cum[:, -1:], right=True)
        tok = torch.where(greedy, greedy_tok, pos.squeeze(1).clamp(max=logits.shape[-1] - 1))
        return tok, logp.gather(1, tok[:, None]).squeeze(1)
    sorted_logp, order = logp.sort(dim=-1, descending=True)
    probs = sorted_logp.exp()
    cum = probs.cumsum(dim=-1)
    keep = (cum - probs) < top_p[:, None]  # the first token always: 0 < p
    n_kept = keep.sum(dim=-1)
    kept_mass = cum.gather(1, (n_kept - 1)[:, None])
    pos = torch.searchsorted(cum, uniform[:, None].to(cum.dtype) * kept_mass, right=True)
    pos = torch.minimum(pos, (n_kept - 1)[:, None])
    # Renormalise only rows that actually truncated, so p = 1 gives log_softmax(logits / T) bit for bit.
    log_kept = torch.where(
        n_kept < logits.shape[-1], torch.logsumexp(sorted_logp.masked_fill(~keep, -torch.inf), dim=-1), 0.0
    )
    sampled_tok = order.gather(1, pos).squeeze(1)
    sampled_lp = sorted_logp.gather(1, pos).squeeze(1) - log_kept
    greedy_lp = logp.gather(1, greedy_tok[:, None]).squeeze(1)
    return torch.where(greedy, greedy_tok, sampled_tok), torch.where(greedy, greedy_lp, sampled_lp)
