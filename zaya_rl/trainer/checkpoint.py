"""Checkpoints: atomic step folders with HF weights, optimizer, RNG and the orchestrator's state.

Layout of ``<root>/step_000040/``:

    model/                  save_pretrained weights + tokenizer (load with transformers or vLLM)
    optimizer.pt            optimizer state (Muon keeps none; AdamW's moments)
    trainer_state.pt        step, skipped-step streak, torch RNG states
    orchestrator.json       accounting, sampler and difficulty state, pending groups, eval results
    COMPLETE                written last

A step folder is first written as ``step_000040.tmp`` and renamed once complete, so a crash mid-save never
leaves a folder that ``zaya_rl.paths.latest_checkpoint`` would pick. ``root`` may be a shared filesystem path
(``checkpoint.dir``): the trainer writes the model part, the orchestrator the rest, into the same folder.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

from zaya_rl.paths import COMPLETE_MARKER, complete_checkpoints, step_dir, tmp_dir


def save_trainer_part(path: str | Path, model: Any, tokenizer: Any, optimizer: Any, state: dict[str, Any]) -> None:
    """Write the model (HF format), tokenizer, optimizer and trainer state into ``path``."""
    import torch

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path / "model", safe_serialization=True)
    tokenizer.save_pretrained(path / "model")
    torch.save(optimizer.state_dict(), path / "optimizer.pt")
    rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save({**state, "rng": rng}, path / "trainer_state.pt")


def load_trainer_part(path: str | Path, optimizer: Any) -> dict[str, Any]:
    """Restore optimizer and RNG state from ``path``; returns the trainer state dict.

    The model weights are loaded by building the model from ``path/model`` (``ModelConfig.path``).
    """
    import torch

    path = Path(path)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
    state = torch.load(path / "trainer_state.pt", weights_only=False)
    rng = state.pop("rng")
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return state


def finalize(root: str | Path, step: int, orchestrator_state: dict[str, Any], keep_last: int) -> Path:
    """Write the orchestrator state, mark the temporary folder complete, rename it, prune old ones."""
    tmp, final = tmp_dir(root, step), step_dir(root, step)
    (tmp / "orchestrator.json").write_text(json.dumps(orchestrator_state, indent=1, default=_json_default))
    (tmp / COMPLETE_MARKER).write_text("ok\n")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    prune(root, keep_last)
    return final


def load_orchestrator_part(path: str | Path) -> dict[str, Any]:
    return json.loads((Path(path) / "orchestrator.json").read_text())


def prune(root: str | Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` complete step folders."""
    done = complete_checkpoints(root)
    for p in done[:-keep_last]:
        shutil.rmtree(p, ignore_errors=True)


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")
