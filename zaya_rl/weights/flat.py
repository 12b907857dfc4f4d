"""A weight update as one flat byte buffer: one copy per tensor into a buffer allocated once, one transfer of the
whole buffer, zero-copy views on the other side.

Why. Moving a state dict tensor by tensor costs a synchronous device-to-host copy per tensor into pageable
memory, then a pickle per tensor (``torch.save`` of each storage) through Ray's object store, then one
safetensors serialisation per tensor in the engine: the measured 1.2 GB/s of the ``state_dict`` transport on
an H100 (issue 13). Here the trainer copies every tensor (``non_blocking``) into one pinned host buffer and
synchronises once; the buffer crosses Ray as a single numpy array (pickle protocol 5: zero-copy in and out of
the object store); the receiver takes views, and a vLLM engine gets it as one safetensors file written with a
single ``write`` (``write_safetensors``).

Layout (``FlatLayout``): tensors grouped by element size, largest first, each group in the given order, no
padding. Every offset is then a multiple of its tensor's element size, so ``view(dtype)`` is valid, and the
buffer is exactly a safetensors data section (which allows no holes).

Test: ``python -m pytest tests/weights/test_flat.py -q``.
"""

from __future__ import annotations

import json
import struct
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from zaya_rl.weights.buckets import DTYPE_BYTES, TensorMeta

#: Our dtype names -> safetensors' dtype codes.
SAFETENSORS_DTYPES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16", "float64": "F64", "int64": "I64",
                      "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}  # fmt: skip


@dataclass(frozen=True)
class FlatLayout:
    """Where each tensor of an update sits in the flat buffer (``offsets`` in bytes, ``nbytes`` in all)."""

    metas: tuple[TensorMeta, ...]
    offsets: tuple[int, ...]
    nbytes: int

    @classmethod
    def of(cls, metas: Sequence[TensorMeta]) -> FlatLayout:
        ordered = sorted(metas, key=lambda m: -DTYPE_BYTES[m.dtype])  # stable: given order within a dtype size
        offsets, at = [], 0
        for m in ordered:
            offsets.append(at)
            at += m.nbytes
        return cls(tuple(ordered), tuple(offsets), at)


def _as_bytes(buffer: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(buffer, torch.Tensor):
        return buffer
    with warnings.catch_warnings():  # Ray hands out read-only arrays; the views are only ever read
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(buffer)


def views(buffer: torch.Tensor | np.ndarray, layout: FlatLayout) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` views into ``buffer`` (uint8, ``layout.nbytes`` long), in layout order."""
    flat = _as_bytes(buffer)
    for m, off in zip(layout.metas, layout.offsets, strict=True):
        yield m.name, flat[off : off + m.nbytes].view(getattr(torch, m.dtype)).view(m.shape)


def pack(
    named: Iterable[tuple[str, torch.Tensor]], layout: FlatLayout, buffer: torch.Tensor
) -> None:
    """Copy every tensor of ``named`` (cast to its ``layout`` dtype) into its slot of ``buffer``.

    Copies are ``non_blocking``: from a GPU into pinned host memory they overlap, and the caller
    synchronises once (``torch.cuda.synchronize``) before reading ``buffer``.
    """
    slots = {name: view for name, view in views(buffer, layout)}
    seen = 0
    for name, tensor in named:
        if name not in slots:
            raise KeyError(f"weight {name!r} is not in the update's layout (names: {sorted(slots)[:5]}...)")
        slots[name].copy_(tensor.detach(), non_blocking=True)
        seen += 1
    if seen != len(slots):
        raise ValueError(f"weight update: got {seen} tensors, the layout has {len(slots)}")


class FlatWeights(Mapping):
    """A state dict backed by one flat buffer (``Mapping`` name -> tensor view, so every engine's
    ``update_weights`` takes it as it is). Pickles as one numpy array: zero-copy through Ray's object store.

    Args:
        buffer: uint8 ``[layout.nbytes]`` (host numpy array or torch tensor).
        layout: where each tensor sits.
    """

    def __init__(self, buffer: torch.Tensor | np.ndarray, layout: FlatLayout) -> None:
        self.buffer, self.layout = buffer, layout
        self._index = {m.name: i for i, m in enumerate(layout.metas)}

    def __getitem__(self, name: str) -> torch.Tensor:
        i = self._index[name]
        m, off = self.layout.metas[i], self.layout.offsets[i]
        return _as_bytes(self.buffer)[off : off + m.nbytes].view(getattr(torch, m.dtype)).view(m.shape)

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def items(self):  # one pass over the buffer instead of a dict lookup per name
        return views(self.buffer, self.layout)

    def __reduce__(self):
        host = self.buffer if isinstance(self.buffer, np.ndarray) else self.buffer.cpu().numpy()
        return FlatWeights, (host, self.layout)


def host_buffer(nbytes: int, *, pin: bool) -> torch.Tensor:
    """A uint8 host buffer; pinned (page-locked) when ``pin``, so device-to-host copies run at link speed."""
    return torch.empty(nbytes, dtype=torch.uint8, pin_memory=pin)


class Staging:
    """A host buffer kept between calls (pinning a GiB costs ~0.1-0.3 s, every version would pay it);
    reallocated only when a larger or differently pinned one is asked for."""

    def __init__(self) -> None:
        self._buffer: torch.Tensor | None = None

    def get(self, nbytes: int, *, pin: bool) -> torch.Tensor:
        b = self._buffer
        if b is None or b.numel() < nbytes or b.is_pinned() != pin:
            self._buffer = b = host_buffer(nbytes, pin=pin)
        return b[:nbytes]


def write_safetensors(weights: FlatWeights, path: str | Path) -> None:
    """Write ``weights`` as one safetensors file: the header, then the buffer in a single ``write``."""
    header = {m.name: {"dtype": SAFETENSORS_DTYPES[m.dtype], "shape": list(m.shape), "data_offsets": [off, off + m.nbytes]}
              for m, off in zip(weights.layout.metas, weights.layout.offsets, strict=True)}  # fmt: skip
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data section starts 8-byte aligned (safetensors' recommendation)
    data = weights.buffer if isinstance(weights.buffer, np.ndarray) else weights.buffer.numpy()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        f.write(memoryview(data))


class HostStager:
    """Copies of a model's weights in one reusable host buffer (pinned when CUDA is available), e.g. the
    trainer's ``get_weights``. Reusing the buffer is safe because each version is serialised (Ray's
    object store, a file) before the next one is staged.
    """

    def __init__(self) -> None:
        self._staging = Staging()

    def stage(self, named: Iterable[tuple[str, torch.Tensor]], metas: Sequence[TensorMeta] | None = None) -> FlatWeights:
        """``named`` (each tensor cast to its meta's dtype) as ``FlatWeights`` in host memory.

        ``metas`` (names, dtypes, shapes in advance) lets ``named`` be consumed lazily, one tensor at a time
        (ZeRO-3 gathers); without them every tensor is held until all are known.
        """
        if metas is None:
            held = [(n, t) for n, t in named]
            metas = [TensorMeta(n, str(t.dtype).removeprefix("torch."), tuple(t.shape)) for n, t in held]
            named = held
        layout = FlatLayout.of(metas)
        cuda = torch.cuda.is_available()
        buffer = self._staging.get(layout.nbytes, pin=cuda)
        pack(named, layout, buffer)
        if cuda:
            torch.cuda.synchronize()  # the non_blocking copies into pinned memory have landed
        return FlatWeights(buffer, layout)
