"""Majority vote over extracted answers, with a seeded tie-break (research/algorithms.md §8.2).

Answers come from the environment's verifier (``Score.extracted``), so extraction is the same rule the
reward uses. They are compared as strings after ``normalize_answer`` (outer whitespace stripped, inner
runs of whitespace collapsed). Deliberately no mathematical equivalence: ``1/2`` and ``\\frac{1}{2}`` are
two different votes (as in the RSA harness's string vote); equivalence classes would need the verifier to
compare candidates pairwise, O(N²) calls per round.

Candidates without an answer do not vote. A tie is broken uniformly at random among the tied answers,
taken in sorted order so the outcome depends on the seed and the multiset of answers, not on the order
candidates finished in.

Run ``python -m pytest tests/rsa/test_vote.py -q``.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass


def normalize_answer(answer: str | None) -> str | None:
    """``answer`` with outer whitespace stripped and inner whitespace runs collapsed; None if empty."""
    if answer is None:
        return None
    text = " ".join(answer.split())
    return text or None


@dataclass(frozen=True)
class Vote:
    """Outcome of one vote.

    Attributes:
        answer: the winning normalised answer, or None when no candidate had one.
        votes: how many candidates gave ``answer``.
        voters: how many candidates gave any answer.
        winner: index of the first candidate (input order) that gave ``answer``; None with no answer.
        tied: how many answers shared the top count (1: no tie).
    """

    answer: str | None
    votes: int
    voters: int
    winner: int | None
    tied: int


def majority_vote(answers: Sequence[str | None], rng: random.Random) -> Vote:
    """Most frequent normalised answer; ties broken by ``rng`` (one ``rng.choice`` call, only on a tie).

    Args:
        answers: one extracted answer (or None) per candidate.
        rng: seeded generator for the tie-break.
    """
    normalized = [normalize_answer(a) for a in answers]
    counts = Counter(a for a in normalized if a is not None)
    if not counts:
        return Vote(answer=None, votes=0, voters=0, winner=None, tied=0)
    top = max(counts.values())
    tied = sorted(a for a, c in counts.items() if c == top)
    answer = tied[0] if len(tied) == 1 else rng.choice(tied)
    return Vote(answer=answer, votes=top, voters=sum(counts.values()), winner=normalized.index(answer),
                tied=len(tied))
