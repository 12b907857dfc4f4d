"""ZAYA's expert selection with the skip class, as a pure function (no vLLM import).

transformers ``ZayaRouter.forward``: the router MLP gives logits over E + 1 classes (E experts and class E,
*skip*: the token bypasses the experts); ``p = softmax(logits)`` in the model dtype; the choice is
``topk(p.float() + balancing_biases, k)`` (the biases steer the choice only); the gate weight is ``p`` at
the choice. A chosen skip is then rewritten to expert 0 with weight 0, so the expert kernel never sees
index E and the token's expert output is 0.

Router replay (research/algorithms.md §6) records the choice *before* that rewrite, so that "skip" and
"expert 0" stay distinguishable: ``zaya_route`` returns both.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class ZayaRouting(NamedTuple):
    """One MoE layer's routing of T tokens (K = top-k).

    Attributes:
        chosen: ``[T, K]`` long, the selected classes in 0..E (E = skip): what router replay records.
        weights: ``[T, K]`` float32 gate weights, 0 where ``chosen == E``.
        expert_ids: ``[T, K]`` int32 expert indices for the expert kernel (skip rewritten to 0).
    """

    chosen: torch.Tensor
    weights: torch.Tensor
    expert_ids: torch.Tensor


def zaya_route(probs: torch.Tensor, balancing_biases: torch.Tensor, top_k: int) -> ZayaRouting:
    """Route T tokens from their router probabilities.

    Args:
        probs: ``[T, E + 1]`` softmax of the router logits, in the model dtype (as transformers keeps them).
        balancing_biases: ``[E + 1]`` float32 buffer added before the top-k (skip bias: -1 at init).
        top_k: K (ZAYA1: 1).
    """
    num_experts = probs.shape[-1] - 1
    chosen = torch.topk(probs.float() + balancing_biases, top_k, dim=-1).indices
    weights = probs.gather(1, chosen).float()
    skip = chosen == num_experts
    return ZayaRouting(chosen, weights.masked_fill(skip, 0.0), chosen.masked_fill(skip, 0).to(torch.int32))
