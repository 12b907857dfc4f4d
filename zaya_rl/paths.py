"""Where a run keeps its checkpoints: folder names and the newest complete step folder.

A leaf module (it imports nothing of zaya_rl), so the config tree, the curriculum, the trainer and the
orchestrator can all name checkpoint folders without importing one another. Layout of a checkpoint root:

    <root>/step_000040/        a complete checkpoint (holds ``COMPLETE``, written last)
    <root>/step_000040.tmp/    one being written (renamed to ``step_000040`` once complete)

What goes inside a step folder is ``zaya_rl.trainer.checkpoint``'s business.
"""

from __future__ import annotations

from pathlib import Path

#: Written last into a step folder; a folder without it is incomplete and never picked.
COMPLETE_MARKER = "COMPLETE"
#: ``<run_dir>/checkpoints`` unless ``checkpoint.dir`` is set.
CHECKPOINTS_DIR = "checkpoints"


def checkpoint_root(run_dir: str | Path, checkpoint_dir: str | Path | None) -> Path:
    """The folder holding a run's step folders: ``checkpoint_dir`` if set, else ``<run_dir>/checkpoints``."""
    return Path(checkpoint_dir) if checkpoint_dir else Path(run_dir) / CHECKPOINTS_DIR


def step_dir(root: str | Path, step: int) -> Path:
    """The (complete) checkpoint folder of optimizer step ``step``."""
    return Path(root) / f"step_{step:06d}"


def tmp_dir(root: str | Path, step: int) -> Path:
    """The folder step ``step``'s checkpoint is written into before it is renamed to ``step_dir``."""
    return Path(root) / f"step_{step:06d}.tmp"


def complete_checkpoints(root: str | Path) -> list[Path]:
    """Every complete step folder under ``root``, oldest first (none if ``root`` does not exist)."""
    root = Path(root)
    if not root.is_dir():
        return []
    done = [p for p in root.glob("step_*")
            if p.is_dir() and not p.name.endswith(".tmp") and (p / COMPLETE_MARKER).exists()]
    return sorted(done, key=lambda p: int(p.name.split("_")[1]))


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete step folder under ``root`` (None when there is none)."""
    done = complete_checkpoints(root)
    return done[-1] if done else None
