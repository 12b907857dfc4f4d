"""Trainer-side weight senders, one per ``weight_sync.transport`` (see ``zaya_rl.weights.base``).

Every sender makes exactly one ``apply_weight_update`` call per rollout worker per version, and waits for
all of them (``ray.get`` from the synchronous trainer actor). ``nccl`` and ``ipc`` need vLLM on the
trainer's machine (they use ``vllm.distributed.weight_transfer``); ``state_dict`` and ``file`` need only
torch. A push to a *subset* of workers (re-sync after a worker restart) always goes through
``state_dict``: an NCCL broadcast reaches the whole group, and a restarted worker is not in it until
``connect`` runs again.
"""

from __future__ import annotations

import base64
import os
import pickle
import shutil
import socket
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from zaya_rl.weights.base import NamedTensors, PushReport, WeightSender, WeightUpdate, register_sender
from zaya_rl.weights.buckets import TensorMeta, plan_buckets, total_bytes
from zaya_rl.weights.files import write_folder
from zaya_rl.weights.flat import FlatLayout, HostStager, Staging, pack

#: Staging buffers of the packed NCCL broadcast: one fills while the previous one is on the wire.
NCCL_NUM_BUFFERS = 2


class _RaySender(WeightSender):
    """Shared plumbing: one ``apply_weight_update`` per target worker, then wait."""

    @classmethod
    def from_config(cls, cfg: Any, dtype: str, seed: int = 0) -> WeightSender:
        """Build from the ``weight_sync`` section."""
        return cls(bucket_bytes=cfg.bucket_mb * 2**20, dtype=dtype, rounding=cfg.rounding, seed=seed,
                   **cls._transport_kwargs(cfg))

    @classmethod
    def _transport_kwargs(cls, cfg: Any) -> dict[str, Any]:
        """Constructor arguments of this transport alone, from the ``weight_sync`` section."""
        return {}

    def _targets(self, workers: Sequence[int] | None) -> list[int]:
        if not self.workers:
            raise RuntimeError(f"{type(self).__name__}.push before connect(): no rollout workers known")
        return list(range(len(self.workers))) if workers is None else list(workers)

    def _apply(self, update: Any, targets: list[int]) -> list[dict[str, float]]:
        import ray

        return list(ray.get([self.workers[i].apply_weight_update.remote(update) for i in targets]))


@register_sender
class StateDictSender(_RaySender):
    """Every tensor copied (cast) into one reusable host buffer (pinned on GPU machines: one synchronisation
    for all copies), ``ray.put`` once as ``FlatWeights`` (one numpy array: zero-copy in and out of the
    object store) and read by every worker (``zaya_rl.weights.flat``)."""

    transport = "state_dict"

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._stager = HostStager()

    def push(self, named: NamedTensors, version: int, workers: Sequence[int] | None = None, *,
             shapes: Sequence[tuple[str, tuple[int, ...]]] | None = None) -> PushReport:
        import ray

        targets = self._targets(workers)
        t0 = time.perf_counter()
        metas = None if shapes is None else [TensorMeta(n, self.dtype, tuple(shape)) for n, shape in shapes]
        cast = self.caster(version)
        state = self._stager.stage(((n, cast(t)) for n, t in named()), metas)
        ref = ray.put(WeightUpdate(version, self.transport, state.layout.metas, state))
        reports = self._apply(ref, targets)
        return PushReport(self.transport, state.layout.nbytes, 1, time.perf_counter() - t0, reports)


@register_sender
class FileSender(_RaySender):
    """Bucketed safetensors files in a tmpfs folder; vLLM reloads them with ``reload_weights``.

    Args:
        shm_dir: parent folder (``weight_sync.shm_dir``); each version gets a fresh sub-folder, deleted
            once every worker has loaded it.
    """

    transport = "file"

    def __init__(self, *, shm_dir: str, **kw: Any) -> None:
        super().__init__(**kw)
        # Unique per trainer process: two runs (or a restarted trainer) never share a folder.
        self.root = Path(shm_dir) / f"trainer-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._staging = Staging()

    @classmethod
    def _transport_kwargs(cls, cfg: Any) -> dict[str, Any]:
        return {"shm_dir": cfg.shm_dir}

    def push(self, named: NamedTensors, version: int, workers: Sequence[int] | None = None, *,
             shapes: Sequence[tuple[str, tuple[int, ...]]] | None = None) -> PushReport:
        targets = self._targets(workers)
        t0 = time.perf_counter()
        folder = self.root / f"v{version:06d}"
        cast = self.caster(version)
        metas = write_folder(((n, cast(t)) for n, t in named()), folder, self.bucket_bytes, staging=self._staging)
        try:
            reports = self._apply(WeightUpdate(version, self.transport, tuple(metas), str(folder)), targets)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        buckets = len(plan_buckets(metas, self.bucket_bytes))
        return PushReport(self.transport, total_bytes(metas), buckets, time.perf_counter() - t0, reports)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


@register_sender
class NCCLSender(_RaySender):
    """vLLM's native NCCL weight transfer: the trainer is rank 0 of a group with every worker's engine
    (one rank each: tensor parallelism 1), and broadcasts packed buckets while the workers receive them
    inside their ``apply_weight_update`` call (``start_weight_update`` / ``update_weights`` /
    ``finish_weight_update`` on the engine side)."""

    transport = "nccl"

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.group = None
        self._metas: tuple | None = None

    def connect(self, workers: Sequence[Any]) -> None:
        import ray
        from vllm.distributed.weight_transfer.nccl_engine import NCCLWeightTransferEngine

        super().connect(workers)
        info = {"master_address": ray.util.get_node_ip_address(), "master_port": _free_port(),
                "world_size": 1 + len(self.workers)}
        # The workers join as ranks 1..W while this process creates the group as rank 0 (a rendezvous:
        # both sides must be in flight together).
        refs = [w.init_weight_receiver.remote({**info, "rank_offset": 1 + i}) for i, w in enumerate(self.workers)]
        self.group = NCCLWeightTransferEngine.trainer_init(info)
        ray.get(refs)

    def push(self, named: NamedTensors, version: int, workers: Sequence[int] | None = None, *,
             shapes: Sequence[tuple[str, tuple[int, ...]]] | None = None) -> PushReport:
        from vllm.distributed.weight_transfer.nccl_engine import (
            NCCLTrainerSendWeightsArgs,
            NCCLWeightTransferEngine,
        )

        targets = self._targets(workers)
        if len(targets) < len(self.workers):
            return _subset_push(self, named, version, targets)
        if self.group is None:
            raise RuntimeError("NCCLSender.push before connect()")
        import ray

        t0 = time.perf_counter()
        if self._metas is None:  # names, dtypes and shapes never change during a run
            if shapes is None:
                raise ValueError("NCCLSender.push needs shapes= (metadata goes out before the first tensor)")
            self._metas = tuple(TensorMeta(n, self.dtype, tuple(shape)) for n, shape in shapes)
        packing = {"packed": True, "packed_buffer_size_bytes": self.bucket_bytes,
                   "packed_num_buffers": NCCL_NUM_BUFFERS}
        update = WeightUpdate(version, self.transport, self._metas, packing)
        refs = [self.workers[i].apply_weight_update.remote(update) for i in targets]
        args = NCCLTrainerSendWeightsArgs(group=self.group, packed=True, packed_buffer_size_bytes=self.bucket_bytes,
                                          packed_num_buffers=NCCL_NUM_BUFFERS)
        cast = self.caster(version)
        NCCLWeightTransferEngine.trainer_send_weights(((n, cast(t)) for n, t in named()), args)
        torch.cuda.synchronize()
        reports = list(ray.get(refs))
        buckets = len(plan_buckets(self._metas, self.bucket_bytes))
        return PushReport(self.transport, total_bytes(self._metas), buckets, time.perf_counter() - t0, reports)


@register_sender
class IPCSender(_RaySender):
    """vLLM's native CUDA-IPC weight transfer, packed, for a rollout engine on the trainer's GPU.

    Every tensor is copied (cast) into flat device buffers of at most ``bucket_bytes``, kept across versions,
    and each buffer travels as one IPC handle (vLLM's ``packed`` IPC update: the engine maps it once and
    splits it by ``tensor_sizes``). One handle per tensor instead meant one ``cudaIpcOpenMemHandle`` per
    tensor in the engine (measured 14.7 GB/s for a 0.98 GB model on an H100 against 1,434 GB/s for a
    device-to-device copy). The buffers hold one copy of the model in the transfer dtype; they are
    written only inside ``push``, which returns once every worker has loaded (their contents are never
    read after that).

    Needs ``VLLM_ALLOW_INSECURE_SERIALIZATION=1`` in the engine (the rollout worker sets it): the handles
    travel pickled, the only form vLLM's engine-core IPC accepts for them.
    """

    transport = "ipc"

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._buffers: list[tuple[FlatLayout, torch.Tensor, str]] = []  # layout, device buffer, pickled handle

    def push(self, named: NamedTensors, version: int, workers: Sequence[int] | None = None, *,
             shapes: Sequence[tuple[str, tuple[int, ...]]] | None = None) -> PushReport:
        targets = self._targets(workers)
        t0 = time.perf_counter()
        tensors = dict(named())
        metas = tuple(TensorMeta(n, self.dtype, tuple(t.shape)) for n, t in tensors.items())
        chunks = []
        cast = self.caster(version)
        for layout, buffer, handle in self._device_buffers(metas):
            pack(((m.name, cast(tensors[m.name])) for m in layout.metas), layout, buffer)
            chunks.append(ipc_chunk(layout, handle))
        torch.cuda.synchronize()
        reports = self._apply(WeightUpdate(version, self.transport, metas, chunks), targets)
        return PushReport(self.transport, total_bytes(metas), len(chunks), time.perf_counter() - t0, reports)

    def _device_buffers(self, metas: Sequence[TensorMeta]) -> list[tuple[FlatLayout, torch.Tensor, str]]:
        """One flat buffer and its IPC handle per bucket, allocated on the first push (and if shapes change)."""
        layouts = [FlatLayout.of(b) for b in plan_buckets(metas, self.bucket_bytes)]
        if [b[0] for b in self._buffers] != layouts:
            from torch.multiprocessing.reductions import reduce_tensor

            uuid_ = str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)
            self._buffers = []
            for layout in layouts:
                buffer = torch.empty(layout.nbytes, dtype=torch.uint8, device="cuda")
                handle = base64.b64encode(pickle.dumps({uuid_: reduce_tensor(buffer)[1]})).decode("ascii")
                self._buffers.append((layout, buffer, handle))
        return self._buffers


def ipc_chunk(layout: FlatLayout, handle: str) -> dict[str, Any]:
    """vLLM's packed IPC ``update_info`` fields of one buffer (``IPCWeightTransferUpdateInfo``)."""
    return {"names": [m.name for m in layout.metas], "dtype_names": [m.dtype for m in layout.metas],
            "shapes": [list(m.shape) for m in layout.metas], "tensor_sizes": [m.nbytes for m in layout.metas],
            "ipc_handles_pickled": handle, "packed": True}  # fmt: skip


def _subset_push(sender: _RaySender, named: NamedTensors, version: int, targets: list[int]) -> PushReport:
    """Re-sync some workers (after a restart) through the object store."""
    fallback = StateDictSender(bucket_bytes=sender.bucket_bytes, dtype=sender.dtype, rounding=sender.rounding,
                               seed=sender.seed)
    fallback.workers = sender.workers
    return fallback.push(named, version, targets)


def make_sender(cfg: Any, dtype: str, seed: int = 0) -> WeightSender:
    """The sender of ``cfg.transport`` (``cfg``: the ``weight_sync`` section), sending ``dtype`` tensors."""
    from zaya_rl.weights.base import SENDERS

    return SENDERS[cfg.transport].from_config(cfg, dtype, seed)
