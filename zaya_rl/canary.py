"""Streaming LZ77 compressibility canary against degenerate (looping) rollouts.

Per rollout, one raw-DEFLATE compressor (LZ77 over a 32 KiB window + Huffman) receives the generated text
as it is produced. Every ``chunk_bytes`` of UTF-8 text, the compressor is sync-flushed and the chunk's
*marginal* ratio is taken:

    c_k = len(compress(chunk_k) + flush(Z_SYNC_FLUSH)) / len(chunk_k)

i.e. how many bytes chunk k costs given all the history in the window. A rollout is flagged after
``patience`` consecutive chunks with c_k < ``threshold``. The cost is O(1) amortised per token (nothing is
re-compressed) and loops with periods up to the 32 KiB window are seen; a one-shot ratio of the last W
bytes would miss periods longer than W. Defaults (0.10, 8 chunks of 512 bytes) and their calibration:
research/algorithms.md §7 (no primary ZAYA text exists; this design is inferred there). Code compresses
more than prose, so thresholds are per-environment in the config.

What it deliberately does not do: decide what happens to a flagged rollout (the engine stops it, the
scorer applies ``canary.on_flag``).
"""

from __future__ import annotations

import zlib

#: zlib level 6 (the default) with raw DEFLATE (negative wbits: no header, 2**15-byte window).
_LEVEL = 6
_WBITS = -15


class CompressibilityCanary:
    """Streaming marginal-compression-ratio detector for one rollout.

    Args:
        threshold: a chunk with marginal ratio below this is degenerate.
        patience: consecutive degenerate chunks before the rollout is flagged.
        chunk_bytes: UTF-8 bytes per measured chunk.
    """

    def __init__(self, threshold: float = 0.10, patience: int = 8, chunk_bytes: int = 512) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"CompressibilityCanary.threshold must be in (0, 1), got {threshold}")
        if patience < 1 or chunk_bytes < 1:
            raise ValueError(f"patience and chunk_bytes must be >= 1, got {patience}, {chunk_bytes}")
        self.threshold = threshold
        self.patience = patience
        self.chunk_bytes = chunk_bytes
        self._z = zlib.compressobj(_LEVEL, zlib.DEFLATED, _WBITS)
        self._pending = bytearray()
        self._run = 0
        self.ratios: list[float] = []
        self.flagged = False
        self.flagged_at_chunk: int | None = None

    def feed(self, text_delta: str) -> bool:
        """Add newly generated text; returns True once the rollout is flagged (and stays True)."""
        self._pending += text_delta.encode("utf-8", errors="replace")
        while len(self._pending) >= self.chunk_bytes:
            chunk = bytes(self._pending[: self.chunk_bytes])
            del self._pending[: self.chunk_bytes]
            self._measure(chunk)
        return self.flagged

    def _measure(self, chunk: bytes) -> None:
        out = self._z.compress(chunk) + self._z.flush(zlib.Z_SYNC_FLUSH)
        ratio = len(out) / len(chunk)
        self.ratios.append(ratio)
        self._run = self._run + 1 if ratio < self.threshold else 0
        if self._run >= self.patience and not self.flagged:
            self.flagged = True
            self.flagged_at_chunk = len(self.ratios) - 1
