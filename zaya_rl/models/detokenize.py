"""Streaming text from token ids: an incremental detokenizer and the per-rollout canary feed.

Decoding a token prefix can end inside a multi-byte UTF-8 character (byte-level tokenizers split
characters across tokens; BPE tokenizers split rare characters), which decodes to U+FFFD. The detokenizer
follows the prefix/read-offset scheme of vLLM's ``detokenize_incrementally``: it re-decodes a short window
of recent tokens and only emits text once it no longer ends in U+FFFD. A window that still ends in U+FFFD
after ``_MAX_PENDING`` tokens is emitted as is, since a real character is at most 4 bytes long; without
that bound a model emitting invalid bytes would never produce text (and would hide from the canary).

No torch here: the scripted fake engine uses it too. Run ``python -m pytest tests/models -q``.
"""

from __future__ import annotations

from typing import Protocol

from zaya_rl.canary import CompressibilityCanary

_REPLACEMENT = "\ufffd"
#: A UTF-8 character spans at most 4 bytes, hence at most 4 tokens of any byte-fallback tokenizer.
_MAX_PENDING = 4


class _Decoder(Protocol):
    def decode(self, token_ids: list[int], skip_special_tokens: bool = ...) -> str: ...


class IncrementalDetokenizer:
    """Turns a growing list of token ids into text deltas that never split a character.

    Args:
        tokenizer: anything with ``decode(ids, skip_special_tokens=...)`` (a HF tokenizer).
        skip_special_tokens: drop special tokens from the text (default True: the canary and logs
            want the generated prose, not ``<|eos|>``).
    """

    def __init__(self, tokenizer: _Decoder, skip_special_tokens: bool = True) -> None:
        self._tok = tokenizer
        self._skip = skip_special_tokens
        self._ids: list[int] = []
        self._prefix = 0  # start of the window re-decoded for context
        self._read = 0  # tokens before this index have been emitted as text
        self.text = ""

    def push(self, token_id: int) -> str:
        """Add one token; return the newly completed text (possibly empty)."""
        self._ids.append(token_id)
        prefix_text = self._decode(self._ids[self._prefix : self._read])
        full_text = self._decode(self._ids[self._prefix :])
        pending = len(self._ids) - self._read
        if full_text.endswith(_REPLACEMENT) and pending < _MAX_PENDING:
            return ""
        delta = full_text[len(prefix_text) :]
        self._prefix, self._read = self._read, len(self._ids)
        self.text += delta
        return delta

    def _decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=self._skip) if ids else ""


def fast_decoder(tokenizer: _Decoder) -> _Decoder:
    """The Rust ``tokenizers.Tokenizer`` behind a transformers fast tokenizer when its ``decode`` gives the
    same text (no ``clean_up_tokenization_spaces``), else ``tokenizer`` itself. The canary decodes twice
    per generated token; the Python wrapper cost ~3x the Rust call (measured 55-80 vs 18-25 us a token on
    the byte tokenizer), which a rollout engine pays for every token it streams."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or getattr(tokenizer, "clean_up_tokenization_spaces", False):
        return tokenizer
    return backend


class CanaryFeed:
    """Detokenizes one rollout token by token and feeds the text to a ``CompressibilityCanary``.

    Args:
        tokenizer: the detokenizer's tokenizer.
        threshold: canary threshold (``CanarySpec.threshold``).
        patience: canary patience (``CanarySpec.patience``).
        chunk_bytes: canary chunk size (``CanarySpec.chunk_bytes``).
    """

    def __init__(self, tokenizer: _Decoder, threshold: float, patience: int, chunk_bytes: int) -> None:
        self._detok = IncrementalDetokenizer(tokenizer)
        self._canary = CompressibilityCanary(threshold, patience, chunk_bytes)

    def push(self, token_id: int) -> bool:
        """Add one generated token; True once the rollout is flagged degenerate."""
        delta = self._detok.push(token_id)
        return self._canary.feed(delta) if delta else self._canary.flagged

    @property
    def ratios(self) -> list[float]:
        """Marginal compression ratio of every completed chunk so far."""
        return list(self._canary.ratios)
