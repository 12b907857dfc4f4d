"""Markovian tails: the last τ generated tokens of a candidate, sampled C at a time, decoded to text.

research/algorithms.md §8.2: the next round conditions only on bounded tails of the previous round, so an
aggregation prompt's prefill is at most |x| + C·τ + template tokens however long the candidates reasoned.

- ``last_tokens``: a token-exact slice, the last τ generated tokens (the whole candidate if shorter).
  Unfinished candidates (finish reason ``length``) contribute like finished ones. A trailing stop token
  (end of turn) is not text and is dropped before slicing, so a finished candidate's tail holds τ tokens
  of its text.
- ``sample_tails``: C tails for one prompt from distinct candidates (without replacement), from a seeded
  ``random.Random``.
- ``decode_tail``: the slice as text. A cut can fall inside a multi-byte UTF-8 character (the byte-level
  tokenizer cuts between bytes; BPE tokenizers between byte-fallback tokens); the orphaned bytes decode
  to U+FFFD and are dropped. Lossy decoding (U+FFFD, 3 bytes, for each invalid byte) or a
  non-canonical tokenisation can make the text re-encode to more than τ tokens; it is then cut from the
  front until it fits, so the prompt bound holds under the policy's own tokenizer.

Run ``python -m pytest tests/rsa/test_tails.py -q``.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

_REPLACEMENT = "\ufffd"
#: A UTF-8 character is at most 4 bytes, so a cut orphans at most 3 of its bytes (each one U+FFFD).
_MAX_ORPHAN_BYTES = 3


class TailTokenizer(Protocol):
    def decode(self, token_ids: list[int], skip_special_tokens: bool = ...) -> str: ...

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...


@dataclass(frozen=True)
class Tail:
    """One sampled tail.

    Attributes:
        source: index of the candidate (in the previous round) it was cut from.
        token_ids: its last ``τ`` generated tokens (all of them if fewer), trailing stop token excluded.
        truncated: whether tokens were cut off at the front (the candidate was longer than τ).
    """

    source: int
    token_ids: list[int]
    truncated: bool


def last_tokens(token_ids: Sequence[int], tau: int, stop_token_ids: Collection[int] = ()) -> tuple[list[int], bool]:
    """The last ``tau`` tokens of a candidate's generated ``token_ids`` and whether the front was cut.

    A final token in ``stop_token_ids`` (end of turn) is dropped first. ``token_ids`` may be a list or a
    1-D integer array; only the slice is converted.
    """
    if tau < 1:
        raise ValueError(f"tail length tau must be >= 1, got {tau}")
    end = len(token_ids)
    if end and int(token_ids[end - 1]) in stop_token_ids:
        end -= 1
    start = max(0, end - tau)
    return [int(t) for t in token_ids[start:end]], start > 0


def sample_tails(
    candidates_token_ids: Sequence[Sequence[int]],
    C: int,
    tau: int,
    rng: random.Random,
    *,
    stop_token_ids: Collection[int] = (),
) -> list[Tail]:
    """Draw the tails of one aggregation prompt: ``C`` distinct candidates, uniformly without replacement.

    Args:
        candidates_token_ids: the previous round's generated token ids, one list per candidate.
        C: tails per prompt (RSA's K); at most the number of candidates.
        tau: tail length τ in tokens.
        rng: seeded generator; the draw consumes it (one ``rng.sample`` call).
        stop_token_ids: end-of-turn ids dropped from the end of a candidate before slicing.

    Returns:
        ``C`` tails in draw order (the order they appear in the prompt).
    """
    n = len(candidates_token_ids)
    if not 1 <= C <= n:
        raise ValueError(f"sample_tails: C must be in [1, {n}] (the number of candidates), got {C}")
    tails = []
    for source in rng.sample(range(n), C):
        ids, truncated = last_tokens(candidates_token_ids[source], tau, stop_token_ids)
        tails.append(Tail(source=source, token_ids=ids, truncated=truncated))
    return tails


def _drop_orphans(text: str) -> str:
    """Remove the U+FFFD that a front cut inside a multi-byte character decodes to."""
    n = 0
    while n < _MAX_ORPHAN_BYTES and n < len(text) and text[n] == _REPLACEMENT:
        n += 1
    return text[n:]


def decode_tail(tokenizer: TailTokenizer, tail: Tail, tau: int) -> str:
    """Text of ``tail``, re-encoding to at most ``tau`` tokens under ``tokenizer`` (module docstring)."""
    text = tokenizer.decode(list(tail.token_ids), skip_special_tokens=True)
    if tail.truncated:
        text = _drop_orphans(text)
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) <= tau:
        return text
    # Slice the re-encoding, shrinking the slice by the overshoot until the text fits. ``keep`` falls on
    # every pass, so this ends; one pass suffices for byte-level tokenizers.
    keep = tau
    while keep > 0:
        text = _drop_orphans(tokenizer.decode(ids[-keep:], skip_special_tokens=True))
        over = len(tokenizer.encode(text, add_special_tokens=False)) - tau
        if over <= 0:
            return text
        keep -= over
    return ""
