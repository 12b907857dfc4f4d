"""Weight sync: the message a policy version travels in, and the trainer-side sender interface.

One update = one call: the trainer actor's ``push_weights(version)`` hands the weights to a
``WeightSender``, which makes **one** ``apply_weight_update(WeightUpdate)`` call per rollout worker
(plus, for NCCL, the broadcast that the workers receive inside that call). The worker's engine pauses
generation, loads, and resumes, so sequences in flight continue with the new weights
(``RolloutEngine.update_weights``). Because the trainer actor runs its calls in order and ``push``
returns only once every worker has loaded, the weights sent are exactly those after optimizer step
``version``: a later ``train_step`` cannot start while they are being read (so CUDA IPC can hand out
the live parameters without a snapshot).

Transports (``weight_sync.transport``; implementations in ``zaya_rl.weights.senders``):

| transport | data path | engines | staging |
| --- | --- | --- | --- |
| ``state_dict`` | one flat host buffer (``FlatWeights``) through the Ray object store (``ray.put`` once, zero-copy) | torch, vLLM | one (pinned) host copy |
| ``file`` | safetensors buckets in ``/dev/shm`` + vLLM ``reload_weights(weights_path=...)`` | torch, vLLM (any frontend) | one bucket of pinned host memory + tmpfs |
| ``nccl`` | vLLM native transfer, packed NCCL broadcast of buckets | vLLM, trainer and rollout on different GPUs | 2 buckets on GPU |
| ``ipc`` | vLLM native transfer, packed: flat device buffers, one CUDA IPC handle each | vLLM, trainer and rollout on one GPU | one model copy on GPU |

Test: ``python -m pytest tests/weights -q``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from zaya_rl.weights.buckets import TensorMeta

if TYPE_CHECKING:
    import torch

#: ``(name, tensor)`` pairs of one update, in checkpoint order (a fresh iterator per call).
NamedTensors = Callable[[], Iterator[tuple[str, Any]]]


@dataclass(frozen=True)
class WeightUpdate:
    """One policy version on its way to a rollout worker.

    Attributes:
        version: the policy version (optimizer steps taken) these weights are.
        transport: ``state_dict`` | ``file`` | ``nccl`` | ``ipc``.
        tensors: name, dtype and shape of every tensor, in send order.
        payload: transport-specific: ``state_dict``: ``{name: CPU tensor}``; ``file``: the folder of
            ``*.safetensors`` buckets; ``nccl``: the packing parameters of the broadcast; ``ipc``: the
            base64 pickled CUDA IPC handles.
    """

    version: int
    transport: str
    tensors: tuple[TensorMeta, ...]
    payload: Any = None


@dataclass
class PushReport:
    """What one ``push`` measured; ``metrics()`` gives the namespaced scalars the trainer logs.

    ``worker`` holds each worker's own timings (``pause_s``, ``load_s``, ``resume_s``), reduced by max:
    the slowest worker is what generation waited for.
    """

    transport: str
    num_bytes: int
    num_buckets: int
    seconds: float
    worker: list[dict[str, float]] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        m = {
            "weights/push_s": self.seconds,
            "weights/bytes": float(self.num_bytes),
            "weights/buckets": float(self.num_buckets),
            "weights/gbps": self.num_bytes / max(self.seconds, 1e-9) / 1e9,
        }
        for key in sorted({k for w in self.worker for k in w}):
            m[f"weights/worker_{key}"] = max(w.get(key, 0.0) for w in self.worker)
        return m


class WeightSender(ABC):
    """Trainer side of a transport. ``connect`` once (and again after a rollout worker restarts), then
    ``push`` once per policy version.

    Args:
        bucket_bytes: bucket capacity (``weight_sync.bucket_mb``).
        dtype: dtype name the tensors travel in (``bfloat16``/``float32``), the rollout engine's.
        rounding: ``weight_sync.rounding`` of float32 -> bfloat16 (``zaya_rl.weights.rounding``).
        seed: the run's seed; with the version it fixes a stochastic rounding's random bits.
    """

    transport: ClassVar[str]

    def __init__(self, *, bucket_bytes: int, dtype: str, rounding: str = "nearest", seed: int = 0) -> None:
        self.bucket_bytes = bucket_bytes
        self.dtype = dtype
        self.rounding = rounding
        self.seed = seed
        self.workers: list[Any] = []

    def caster(self, version: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """The cast of ``version``'s tensors to ``dtype`` (detached; no copy when a tensor already has it)."""
        from zaya_rl.weights.rounding import rollout_cast

        return rollout_cast(self.dtype, self.rounding, self.seed, version)  # type: ignore[arg-type]

    def connect(self, workers: Sequence[Any]) -> None:
        """Remember the rollout-worker handles (transports with a data plane also set it up here)."""
        self.workers = list(workers)

    @abstractmethod
    def push(
        self,
        named: NamedTensors,
        version: int,
        workers: Sequence[int] | None = None,
        *,
        shapes: Sequence[tuple[str, tuple[int, ...]]] | None = None,
    ) -> PushReport:
        """Send ``named()`` as ``version`` to every worker (or to the ``workers`` indices) and wait until
        each has loaded it. ``named()`` is iterated exactly once (under ZeRO-3 each item is a collective
        gather); ``shapes`` (name, full shape) lets a transport that must announce metadata before the
        first tensor (NCCL) do so without a second iteration."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the data plane."""


#: transport name -> sender class (filled by ``zaya_rl.weights.senders``).
SENDERS: dict[str, type[WeightSender]] = {}


def register_sender(cls: type[WeightSender]) -> type[WeightSender]:
    """Class decorator: make ``cls`` the sender of ``cls.transport``."""
    SENDERS[cls.transport] = cls
    return cls
