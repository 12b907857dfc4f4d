"""Streaming LZ77 canary: loops are flagged, healthy prose and code are not (research/algorithms.md §7).

Loops of period P (a multiple of the 512-byte chunk) are flagged exactly ``P/512 + patience − 1`` chunks in:
the first period is new text, every later chunk is a match in the 32 KiB window. A 40 KB period is beyond the
window and is (by design, documented) missed.

Run: python -m pytest tests/test_canary.py -q
"""

import importlib
import random
import statistics

import pytest

from zaya_rl.canary import CompressibilityCanary

NOUNS = "function sequence integral matrix polynomial group graph vertex eigenvalue derivative series limit bound prime divisor residue field ring subspace operator norm measure expectation variance triangle angle root coefficient interval partition permutation lattice".split()
ADJS = "continuous bounded convex finite compact symmetric positive monotone linear orthogonal invertible connected even odd rational unique minimal".split()
VERBS = [
    "satisfies",
    "implies",
    "bounds",
    "divides",
    "converges to",
    "dominates",
    "contains",
    "maps onto",
    "generates",
]
OPENERS = [
    "Suppose that",
    "Note that",
    "It follows that",
    "Hence",
    "By the previous lemma,",
    "Recall that",
    "Observe that",
    "In particular,",
    "Therefore",
    "We claim that",
    "Moreover,",
]
SYMBOLS = [
    "\\alpha",
    "\\beta",
    "\\gamma",
    "\\delta",
    "\\lambda",
    "\\mu",
    "\\sigma",
    "\\theta",
    *"abcdefghkmnpqrstuvwxyz",
]


def _formula(rng: random.Random) -> str:
    a, b = (
        rng.choice(SYMBOLS) + (f"_{{{rng.randint(0, 20)}}}" if rng.random() < 0.5 else "") for _ in range(2)
    )
    n, m = rng.randint(2, 999), rng.randint(2, 99)
    return rng.choice(
        [
            f"${a}^{{{m}}} + {b} = {n}$",
            f"$\\frac{{{a}}}{{{b}}} \\le {n}/{m}$",
            f"$\\sum_{{k=1}}^{{{n}}} {a}_k = {m}{b}$",
            f"${a} \\equiv {n} \\pmod{{{m}}}$",
            f"$\\int_0^{{{m}}} {a}(t)\\,dt = {n}$",
        ]
    )


def math_prose(n_bytes: int, seed: int = 0) -> str:
    """Procedural LaTeX-flavoured maths prose (healthy: no repeated passages), at least ``n_bytes`` long."""
    rng = random.Random(seed)
    parts, size = [], 0
    while size < n_bytes:
        words = [
            rng.choice(OPENERS),
            "the",
            rng.choice(ADJS),
            rng.choice(NOUNS),
            _formula(rng),
            rng.choice(VERBS),
        ]
        words += ["every", rng.choice(ADJS), rng.choice(NOUNS)]
        if rng.random() < 0.6:
            words += ["whenever", _formula(rng)]
        s = " ".join(words) + rng.choice([". ", ". ", "; ", ".\n\n"])
        parts.append(s)
        size += len(s.encode())
    return "".join(parts)


def loop(period_bytes: int, total_bytes: int, seed: int = 1) -> str:
    """Healthy text of exactly ``period_bytes`` (ASCII), repeated to ``total_bytes``: a degenerate rollout."""
    unit = math_prose(period_bytes, seed)[:period_bytes]
    return (unit * (total_bytes // period_bytes + 1))[:total_bytes]


def _longest_run_below(ratios, threshold):
    best = run = 0
    for r in ratios:
        run = run + 1 if r < threshold else 0
        best = max(best, run)
    return best


@pytest.mark.parametrize("period", [512, 2048, 20 * 1024])
def test_loops_within_the_window_are_flagged_on_schedule(period):
    c = CompressibilityCanary(threshold=0.10, patience=8, chunk_bytes=512)
    assert c.feed(loop(period, period + 32 * 1024))
    assert c.flagged_at_chunk == period // 512 + 8 - 1
    assert statistics.median(c.ratios[period // 512 :]) < 0.03  # measured 0.021-0.025 in algorithms.md §7


def test_short_sentence_loop_is_flagged_within_patience_chunks():
    sentence = "The answer is 42 because the previous step shows the answer is 42, so we repeat. "
    c = CompressibilityCanary()
    c.feed(sentence * 400)
    assert c.flagged and c.flagged_at_chunk <= 8
    assert statistics.median(c.ratios) < 0.03


def test_loop_beyond_the_32k_window_is_not_flagged():
    """Documented limit: DEFLATE only matches within 32 KiB, so a 40 KB period looks like new text."""
    c = CompressibilityCanary()
    c.feed(loop(40 * 1024, 120 * 1024))
    assert not c.flagged
    assert statistics.median(c.ratios) > 0.2


def test_healthy_math_prose_is_not_flagged():
    c = CompressibilityCanary()
    c.feed(math_prose(200_000))
    assert not c.flagged
    assert min(c.ratios) > 0.15 and statistics.median(c.ratios) > 0.2


STDLIB_MODULES = [
    "argparse",
    "inspect",
    "typing",
    "dataclasses",
    "textwrap",
    "json.decoder",
    "subprocess",
    "pathlib",
    "functools",
    "enum",
]


@pytest.mark.parametrize("module", STDLIB_MODULES)
def test_healthy_python_code_is_not_flagged(module):
    with open(importlib.import_module(module).__file__, encoding="utf-8") as f:
        source = f.read()
    c = CompressibilityCanary()
    c.feed(source)
    assert not c.flagged
    assert _longest_run_below(c.ratios, 0.10) < 8  # measured max 5 (functools) on Python 3.11


def test_prose_then_loop_is_flagged_after_onset():
    prose = math_prose(16 * 1024, seed=3)[: 16 * 1024]
    c = CompressibilityCanary()
    c.feed(prose)
    assert not c.flagged
    c.feed(loop(1024, 16 * 1024, seed=4))
    assert c.flagged and 32 + 2 + 7 - 1 <= c.flagged_at_chunk <= 32 + 2 + 7 + 1


def test_streaming_in_tiny_deltas_equals_one_feed_and_flag_is_sticky():
    text = math_prose(8 * 1024, seed=5) + "loop forever " * 2000 + math_prose(8 * 1024, seed=6)
    whole = CompressibilityCanary()
    whole.feed(text)
    streamed = CompressibilityCanary()
    rng = random.Random(0)
    i = 0
    while i < len(text):
        n = rng.randint(1, 12)  # token-sized deltas
        streamed.feed(text[i : i + n])
        i += n
    assert streamed.ratios == whole.ratios
    assert whole.flagged and streamed.flagged  # healthy text after the loop does not clear the flag
    assert streamed.flagged_at_chunk == whole.flagged_at_chunk


def test_multibyte_text_is_measured_in_bytes():
    c = CompressibilityCanary(chunk_bytes=64)
    c.feed("αβγδ" * 40)  # 320 bytes of 2-byte characters
    assert len(c.ratios) == 5


class _CountingCompressor:
    """Wraps a zlib compressobj and counts the bytes it is given."""

    def __init__(self, inner):
        self.inner, self.bytes_in, self.compress_calls = inner, 0, 0

    def compress(self, data):
        self.bytes_in += len(data)
        self.compress_calls += 1
        return self.inner.compress(data)

    def flush(self, mode):
        return self.inner.flush(mode)


def test_constant_work_per_byte_no_recompression():
    c = CompressibilityCanary(chunk_bytes=512)
    counter = _CountingCompressor(c._z)
    c._z = counter
    text = math_prose(300_000, seed=7)[:300_000]
    for i in range(0, len(text), 7):
        c.feed(text[i : i + 7])
    # every byte goes through the compressor exactly once: O(1) amortised per token
    assert counter.bytes_in == len(c.ratios) * 512 == (300_000 // 512) * 512
    assert counter.compress_calls == len(c.ratios)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="threshold"):
        CompressibilityCanary(threshold=1.5)
    with pytest.raises(ValueError, match="patience"):
        CompressibilityCanary(patience=0)
