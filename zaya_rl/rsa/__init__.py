"""Markovian Recursive Self-Aggregation (research/algorithms.md §8; DESIGN.md §4).

- ``prompts``: ``build_aggregation_messages`` — the aggregation prompt as chat messages (reused by the
  RL pipeline for aggregation-prompt groups).
- ``tails``: ``sample_tails`` (C of the last-τ-token tails, without replacement) and ``decode_tail``.
- ``vote``: ``majority_vote`` over normalised extracted answers, seeded tie-break.
- ``algorithm``: ``MarkovianRSA`` — the rounds, on any ``RolloutEngine``.
- ``report``: the per-round table; ``commands``: ``zaya-rl rsa eval``.

Nothing here imports torch; the evaluation command loads the model inside its handler.
"""

from zaya_rl.rsa.prompts import build_aggregation_messages
from zaya_rl.rsa.tails import Tail, decode_tail, last_tokens, sample_tails
from zaya_rl.rsa.vote import Vote, majority_vote, normalize_answer

__all__ = [
    "Tail",
    "Vote",
    "build_aggregation_messages",
    "decode_tail",
    "last_tokens",
    "majority_vote",
    "normalize_answer",
    "sample_tails",
]
