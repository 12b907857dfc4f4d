"""Checkpoint scheduling for the orchestrator: snapshot its state and the trainer's at step boundaries.

``request`` is called right after optimizer step k finished and before step k+1 is submitted, so the
trainer's ``save`` (queued on the actor ahead of the next ``train_step``) and the orchestrator snapshot
taken here describe the same moment. The folder becomes visible only once both parts are written
(``trainer.checkpoint.finalize``).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from zaya_rl.paths import tmp_dir
from zaya_rl.trainer.checkpoint import finalize


def orchestrator_state(orch: Any) -> dict[str, Any]:
    """Everything needed to continue the run's books and data stream from this step."""
    return {
        "step": orch.step,
        "accounting": orch.acc.state_dict(),
        "pending_samples": orch.pending_samples,
        "sampler": orch.sampler.state_dict(),
        "next_group_id": orch.next_group_id,
        "pending_draws": [asdict(d) for d in orch.pending_draws()],
    }


class Checkpointer:
    """Writes ``<root>/step_XXXXXX`` every ``every`` steps (and on demand), keeping ``keep_last``."""

    def __init__(self, root: str | Path, every: int, keep_last: int, run_state: Callable[[], dict[str, Any]]) -> None:
        self.root = Path(root)
        self.every = every
        self.keep_last = keep_last
        self.run_state = run_state
        self.last_step: int | None = None

    def due(self, step: int) -> bool:
        return bool(self.every) and step % self.every == 0

    def request(self, orch: Any) -> None:
        """Snapshot now; the write completes in a side task of the orchestrator."""
        tmp = tmp_dir(self.root, orch.step)
        shutil.rmtree(tmp, ignore_errors=True)  # a half-written folder left by a crash at this step
        tmp.mkdir(parents=True)
        ref = orch.actors.trainer.save.remote(str(tmp))
        state = {**orchestrator_state(orch), "run": self.run_state()}
        self.last_step = orch.step
        orch.side_tasks.add(asyncio.create_task(self._finish(ref, orch.step, state)))

    async def _finish(self, ref: Any, step: int, state: dict[str, Any]) -> Path:
        await ref
        return finalize(self.root, step, state, self.keep_last)
