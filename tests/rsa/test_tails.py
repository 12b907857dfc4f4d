"""Tails: token-exact last-τ slices, draws without replacement, UTF-8-safe decoding within τ tokens.

``python -m pytest tests/rsa/test_tails.py -q``.
"""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from zaya_rl.rsa.tails import Tail, decode_tail, last_tokens, sample_tails

EOS = 258


def test_last_tokens_exact_whole_and_stop_dropped():
    ids = list(range(100, 130))  # 30 tokens
    assert last_tokens(ids, 8) == (list(range(122, 130)), True)
    assert last_tokens(ids, 30) == (ids, False)
    assert last_tokens(ids, 50) == (ids, False)
    # A final stop token is not text: the tail is the last 8 tokens before it.
    assert last_tokens([*ids, EOS], 8, {EOS}) == (list(range(122, 130)), True)
    assert last_tokens([*ids[:5], EOS], 8, {EOS}) == (ids[:5], False)
    assert last_tokens([], 4) == ([], False)
    # Arrays (how Candidate stores ids) slice the same way, to plain ints.
    got = last_tokens(np.asarray([*ids, EOS], dtype=np.int32), 8, {EOS})
    assert got == (list(range(122, 130)), True) and type(got[0][0]) is int
    with pytest.raises(ValueError, match="tau"):
        last_tokens(ids, 0)


def test_sample_tails_without_replacement_and_exact():
    cands = [[i] * (3 + 4 * i) for i in range(6)]  # candidate i has 3 + 4i tokens, all equal to i
    rng = random.Random(0)
    for _ in range(300):
        tails = sample_tails(cands, 4, 10, rng)
        sources = [t.source for t in tails]
        assert len(set(sources)) == 4
        for t in tails:
            n = len(cands[t.source])
            assert t.token_ids == [t.source] * min(10, n) and t.truncated == (n > 10)


def test_sample_tails_uniform_over_candidates():
    rng = random.Random(1)
    counts = Counter(t.source for _ in range(3000) for t in sample_tails([[1]] * 5, 2, 4, rng))
    for s in range(5):  # expected 3000 * 2 / 5 = 1200 each; 5 sigma is ~110
        assert abs(counts[s] - 1200) < 110


def test_sample_tails_deterministic_and_validated():
    cands = [[i, i + 1, i + 2] for i in range(8)]
    a = sample_tails(cands, 3, 2, random.Random(7))
    assert a == sample_tails(cands, 3, 2, random.Random(7))
    assert [t.source for t in a] == random.Random(7).sample(range(8), 3)  # the documented draw
    with pytest.raises(ValueError, match="C must be in"):
        sample_tails(cands, 9, 2, random.Random(0))
    with pytest.raises(ValueError, match="C must be in"):
        sample_tails(cands, 0, 2, random.Random(0))


def _tail(tok, text: str, tau: int) -> Tail:
    ids, truncated = last_tokens(tok.encode(text, add_special_tokens=False), tau)
    return Tail(source=0, token_ids=ids, truncated=truncated)


@pytest.mark.parametrize(
    ("text", "tau", "expected"),
    [
        ("é" * 10, 5, "éé"),  # 20 bytes; the cut leaves 1 orphan continuation byte
        ("é" * 10, 4, "éé"),  # cut on a character boundary
        ("ab€€", 5, "€"),  # € is 3 bytes: 2 orphans dropped
        ("x😀😀", 7, "😀"),  # 4-byte character: 3 orphans dropped
        ("plain ascii tail", 5, " tail"),
        ("short", 10, "short"),  # whole candidate
    ],
)
def test_decode_tail_cut_inside_utf8(tok, text, tau, expected):
    out = decode_tail(tok, _tail(tok, text, tau), tau)
    assert out == expected and "\ufffd" not in out
    assert len(tok.encode(out, add_special_tokens=False)) <= tau


def test_decode_tail_invalid_bytes_stay_within_tau(tok):
    # Invalid UTF-8 (a random model emits it) decodes to U+FFFD, 3 bytes when re-encoded: cut to fit.
    ids = [0xFF] * 40 + list(b"end")
    tail = Tail(source=0, token_ids=ids[-20:], truncated=True)
    out = decode_tail(tok, tail, 20)
    assert out.endswith("end") and len(tok.encode(out, add_special_tokens=False)) <= 20


def test_decode_tail_random_bytes_property(tok):
    rng = random.Random(0)
    for _ in range(200):
        ids = [rng.randrange(256) for _ in range(rng.randrange(1, 80))]
        tau = rng.randrange(1, 40)
        sliced, truncated = last_tokens(ids, tau)
        out = decode_tail(tok, Tail(0, sliced, truncated), tau)
        assert len(tok.encode(out, add_special_tokens=False)) <= tau
        valid = bytes(sliced).decode("utf-8", errors="ignore")
        if "\ufffd" not in out and not truncated:  # untouched valid text comes back verbatim
            assert out == valid
