"""Weights as safetensors buckets in a folder: what the ``file`` transport writes and reloads.

The folder holds ``model-00000.safetensors``, ``model-00001.safetensors``, ... one per bucket
(``plan_buckets``) and no index, which is the layout vLLM's default loader globs when
``reload_weights(weights_path=folder)`` points at it, and what ``read_folder`` reads back for the torch
engine. Each bucket is staged in one reused host buffer (pinned when the tensors are on a GPU: the copies
run at link speed, with one synchronisation per bucket) and written with a single ``write``
(``zaya_rl.weights.flat``), so the host staging memory is one bucket.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from safetensors.torch import load_file

from zaya_rl.weights.buckets import TensorMeta, plan_buckets
from zaya_rl.weights.flat import FlatLayout, FlatWeights, Staging, pack, write_safetensors

FILE_PATTERN = "model-{:05d}.safetensors"


def tensor_meta(name: str, tensor: torch.Tensor) -> TensorMeta:
    """``TensorMeta`` of a tensor (dtype as ``str(dtype)`` without ``torch.``)."""
    return TensorMeta(name, str(tensor.dtype).removeprefix("torch."), tuple(tensor.shape))


def write_folder(named: Iterable[tuple[str, torch.Tensor]], folder: str | Path, bucket_bytes: int, *,
                 staging: Staging | None = None) -> list[TensorMeta]:
    """Write ``named`` tensors as bucketed safetensors files into a fresh ``folder``; returns their metadata.

    ``staging``: a host buffer kept by the caller across versions (else one is allocated for this call).
    """
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    tensors = dict(named)
    metas = [tensor_meta(n, t) for n, t in tensors.items()]
    buckets = plan_buckets(metas, bucket_bytes)
    on_gpu = any(t.is_cuda for t in tensors.values())
    staging = staging if staging is not None else Staging()
    for i, bucket in enumerate(buckets):
        layout = FlatLayout.of(bucket)
        buffer = staging.get(layout.nbytes, pin=on_gpu)
        pack(((m.name, tensors[m.name]) for m in bucket), layout, buffer)
        if on_gpu:
            torch.cuda.synchronize()
        write_safetensors(FlatWeights(buffer, layout), folder / FILE_PATTERN.format(i))
    return metas


def iter_folder(folder: str | Path) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` of every bucket file in ``folder``, in file order."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"weights folder {folder} holds no *.safetensors files")
    for f in files:
        yield from load_file(str(f)).items()


def read_folder(folder: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a folder written by ``write_folder`` (a state dict for ``TorchEngine``)."""
    return dict(iter_folder(folder))
