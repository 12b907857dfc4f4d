"""Apply a ``WeightUpdate`` to an engine that has no native weight transfer (``TorchEngine``, fakes).

Such an engine takes a state dict between two decode steps (``RolloutEngine.update_weights``), so the
``state_dict`` payload goes in as is and a ``file`` folder is read back first. ``nccl``/``ipc`` need the
vLLM engine (``VLLMEngine.apply_update``); the config check (``weight_sync.transport``) rejects them for
other engines before any actor starts, and this module raises if one arrives anyway.
"""

from __future__ import annotations

import time
from typing import Any

from zaya_rl.weights.base import WeightUpdate


async def apply_to_engine(engine: Any, update: WeightUpdate) -> dict[str, float]:
    """Load ``update`` into ``engine``; returns ``{"load_s": seconds}``."""
    t0 = time.perf_counter()
    if update.transport == "state_dict":
        weights = update.payload
    elif update.transport == "file":
        from zaya_rl.weights.files import read_folder

        weights = read_folder(update.payload)
    else:
        raise ValueError(
            f"weight transport {update.transport!r} needs the vLLM engine; {type(engine).__name__} takes "
            "state_dict or file updates (weight_sync.transport)"
        )
    await engine.update_weights(weights, update.version)
    return {"load_s": time.perf_counter() - t0}
