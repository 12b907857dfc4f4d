"""Engine side of the weight transports (``zaya_rl.weights``): load one ``WeightUpdate`` into a vLLM engine.

Each receiver gets the AsyncLLM-like object (``AsyncLLM`` or ``SteppedLLM``) and the update, and loads
*all* tensors of the update in one vLLM reload session: vLLM's layerwise reload materialises a layer and
processes it (fused-MoE repacking, fused QKV) once all of its checkpoint tensors arrived, and a layer left
half-loaded at the end of a session would be processed from garbage. So a state dict is never split into
several ``reload_weights`` calls, and native transfers run ``start_weight_update`` → ``update_weights`` →
``finish_weight_update`` around the whole update.

| transport | vLLM call |
| --- | --- |
| ``state_dict`` | ``reload_weights(weights_iterator=...)`` in process (``stepped``); otherwise ``staged`` turns it into a ``file`` update before the pause (tensors cannot cross AsyncLLM's engine-core pipe): a ``FlatWeights`` payload becomes one safetensors file in one ``write`` |
| ``file`` | ``reload_weights(weights_path=folder)`` |
| ``nccl`` | ``[start_weight_update] / update_weights(WeightTransferUpdateRequest) / finish_weight_update`` |
| ``ipc`` | the same, one packed ``update_weights`` per flat buffer (``senders.IPCSender``) |

``start_weight_update`` exists in vLLM 0.24 and 0.33; when a vLLM lacks it, ``update_weights`` is called
without it (older vLLM loaded in ``update_weights`` directly).
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from zaya_rl.weights.base import WeightUpdate


async def _reload_from_path(llm: Any, folder: str) -> None:
    await llm.collective_rpc("reload_weights", kwargs={"weights_path": folder, "is_checkpoint_format": True})


@contextlib.contextmanager
def staged(update: WeightUpdate, *, in_process: bool, shm_dir: str) -> Iterator[WeightUpdate]:
    """The update as the engine will load it, prepared *before* generation pauses.

    A state dict for an out-of-process engine (``AsyncLLM``: tensors cannot cross its engine-core pipe)
    becomes a ``file`` update: one safetensors file in ``shm_dir`` (a ``FlatWeights`` payload is written in a
    single ``write``), deleted on exit. Writing it while the engine still generates keeps the pause to
    vLLM's own reload. Every other update is loaded as it is.
    """
    if update.transport != "state_dict" or in_process:
        yield update
        return
    from zaya_rl.weights.files import FILE_PATTERN, write_folder
    from zaya_rl.weights.flat import FlatWeights, write_safetensors

    folder = Path(shm_dir) / f"engine-{uuid.uuid4().hex[:12]}"
    try:
        if isinstance(update.payload, FlatWeights):
            folder.mkdir(parents=True)
            write_safetensors(update.payload, folder / FILE_PATTERN.format(0))
        else:
            write_folder(update.payload.items(), folder, bucket_bytes=256 * 2**20)
        yield WeightUpdate(update.version, "file", update.tensors, str(folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def receive_state_dict(llm: Any, update: WeightUpdate, *, in_process: bool, shm_dir: str) -> None:
    if not in_process:
        raise ValueError("a state_dict update reaches an out-of-process engine as a file: load staged(update)")
    items = list(update.payload.items())
    await llm.collective_rpc("reload_weights", kwargs={"weights_iterator": items, "is_checkpoint_format": True})


async def receive_file(llm: Any, update: WeightUpdate, *, in_process: bool, shm_dir: str) -> None:
    await _reload_from_path(llm, str(update.payload))


def native_update_infos(update: WeightUpdate) -> list[dict[str, Any]]:
    """vLLM's ``update_info`` dicts of a native update: one for ``nccl`` (the whole broadcast), one per packed
    buffer for ``ipc`` (``senders.ipc_chunk``)."""
    if update.transport == "ipc":
        return list(update.payload)
    return [{"names": [m.name for m in update.tensors], "dtype_names": [m.dtype for m in update.tensors],
             "shapes": [list(m.shape) for m in update.tensors], **update.payload}]  # fmt: skip


async def receive_native(llm: Any, update: WeightUpdate, *, in_process: bool, shm_dir: str) -> None:
    from vllm.distributed.weight_transfer.base import WeightTransferUpdateRequest

    start = getattr(llm, "start_weight_update", None)
    if start is not None:
        await start(is_checkpoint_format=True)
    for info in native_update_infos(update):
        await llm.update_weights(WeightTransferUpdateRequest(update_info=info))
    if start is not None:
        await llm.finish_weight_update()


#: transport -> receiver ``(llm, update, in_process=, shm_dir=) -> awaitable``.
RECEIVERS: dict[str, Callable[..., Awaitable[None]]] = {
    "state_dict": receive_state_dict,
    "file": receive_file,
    "nccl": receive_native,
    "ipc": receive_native,
}


async def init_native_receiver(llm: Any, init_info: dict[str, Any]) -> None:
    """Join the trainer's NCCL group (``NCCLSender.connect``); IPC needs no init."""
    from vllm.distributed.weight_transfer.base import WeightTransferInitRequest

    await llm.init_weight_transfer_engine(WeightTransferInitRequest(init_info=init_info))
