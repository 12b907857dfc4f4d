"""Weights as safetensors buckets in a folder: what the ``file`` transport writes and reloads.

The folder holds ``model-00000.safetensors``, ``model-00001.safetensors``, ... one per bucket
(``plan_buckets``) and no index, which is the layout vLLM's default loader globs when
``reload_weights(weights_path=folder)`` points at it, and what ``read_folder`` reads back for the torch
engine. Writing one bucket at a time bounds the host staging memory to one bucket.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from zaya_rl.weights.buckets import TensorMeta, plan_buckets

FILE_PATTERN = "model-{:05d}.safetensors"


def tensor_meta(name: str, tensor: torch.Tensor) -> TensorMeta:
    """``TensorMeta`` of a tensor (dtype as ``str(dtype)`` without ``torch.``)."""
    return TensorMeta(name, str(tensor.dtype).removeprefix("torch."), tuple(tensor.shape))


def write_folder(named: Iterable[tuple[str, torch.Tensor]], folder: str | Path, bucket_bytes: int) -> list[TensorMeta]:
    """Write ``named`` tensors as bucketed safetensors files into a fresh ``folder``; returns their metadata.

    Tensors are copied to host memory one bucket at a time (``safetensors`` needs contiguous CPU tensors).
    """
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    tensors = dict(named)
    metas = [tensor_meta(n, t) for n, t in tensors.items()]
    for i, bucket in enumerate(plan_buckets(metas, bucket_bytes)):
        host = {m.name: tensors[m.name].detach().to("cpu").contiguous() for m in bucket}
        save_file(host, str(folder / FILE_PATTERN.format(i)))
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
