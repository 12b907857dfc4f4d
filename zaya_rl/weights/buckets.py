"""Bucket planning for weight transfers (pure: metadata in, plan out; no torch I/O, no Ray).

A weight update moves every parameter of the policy once. Sending one message per tensor costs one
round trip per tensor (a 30B MoE has ~20k tensors); one message for the whole model needs a staging
buffer as large as the model. Buckets sit between the two: parameters in checkpoint order are packed
greedily into buckets of at most ``bucket_bytes``, so staging memory is bounded by one bucket and the
number of messages by ``ceil(total / bucket_bytes)`` plus one per oversized tensor.

A tensor larger than ``bucket_bytes`` gets a bucket of its own (it is never split: vLLM's ``load_weights``
takes whole checkpoint tensors). Order is preserved, so a layer's tensors stay adjacent, which lets vLLM's
layerwise reload process each layer as soon as it is complete.

Test: ``python -m pytest tests/weights/test_buckets.py -q``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: Bytes per element of the dtypes weights travel in (``str(torch.dtype)`` without the ``torch.`` prefix).
DTYPE_BYTES: dict[str, int] = {
    "float32": 4,
    "bfloat16": 2,
    "float16": 2,
    "float64": 8,
    "int64": 8,
    "int32": 4,
    "int16": 2,
    "int8": 1,
    "uint8": 1,
    "bool": 1,
}


@dataclass(frozen=True)
class TensorMeta:
    """Name, dtype name and shape of one tensor of a weight update (what the receiver allocates)."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        if self.dtype not in DTYPE_BYTES:
            raise ValueError(f"tensor {self.name!r}: unsupported dtype {self.dtype!r} (known: {sorted(DTYPE_BYTES)})")
        return self.numel * DTYPE_BYTES[self.dtype]


def plan_buckets(metas: Sequence[TensorMeta], bucket_bytes: int) -> list[list[TensorMeta]]:
    """Split ``metas`` (in order) into consecutive buckets of at most ``bucket_bytes`` each.

    Greedy: a tensor joins the current bucket if it still fits, else it starts a new one; a tensor larger
    than ``bucket_bytes`` is a bucket by itself. Every tensor appears exactly once, in the input order.

    Args:
        metas: the tensors of one update, in send order.
        bucket_bytes: capacity of one bucket (> 0).

    Returns:
        Non-empty buckets; ``[]`` for no tensors.
    """
    if bucket_bytes <= 0:
        raise ValueError(f"bucket_bytes must be > 0, got {bucket_bytes}")
    names = [m.name for m in metas]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"duplicate tensor names in a weight update: {dup[:5]}")
    buckets: list[list[TensorMeta]] = []
    current: list[TensorMeta] = []
    used = 0
    for m in metas:
        size = m.nbytes
        if current and used + size > bucket_bytes:
            buckets.append(current)
            current, used = [], 0
        current.append(m)
        used += size
    if current:
        buckets.append(current)
    return buckets


def total_bytes(metas: Iterable[TensorMeta]) -> int:
    """Bytes of all tensors of an update."""
    return sum(m.nbytes for m in metas)
