"""Metric sinks: ``metrics.jsonl`` (what tests and plots read), wandb (offline by default), a progress bar.

wandb's own files are not parsed anywhere (its on-disk format is a Go binary's; research/vllm_ray.md §8):
the local JSONL file is the source of truth. ``WANDB_MODE`` in the environment wins over the config, so a
user who ran ``wandb login`` gets an online run with ``WANDB_MODE=online`` and no config edit.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from zaya_rl.config.schema import LoggingConfig

#: Keys shown in the progress bar, with their short labels.
_BAR_KEYS = (
    ("rollout/reward", "reward"),
    ("rollout/accuracy", "acc"),
    ("pipeline/lag_mean", "lag"),
    ("perf/samples_per_s", "samp/s"),
    ("perf/tokens_per_s", "tok/s"),
)


class MetricsLogger:
    """Log one dict of scalars per step to every sink."""

    def __init__(
        self, run_dir: str | Path, cfg: LoggingConfig, *, total_steps: int, config: dict[str, Any], initial_step: int = 0
    ) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a")
        self._t0 = time.time()
        self._wandb = self._init_wandb(run_dir, cfg, config)
        self._bar = None
        self._postfix: dict[str, str] = {}
        if cfg.progress_bar:
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps, initial=initial_step, desc="rl", dynamic_ncols=True)

    @staticmethod
    def _init_wandb(run_dir: str | Path, cfg: LoggingConfig, config: dict[str, Any]) -> Any:
        mode = os.environ.get("WANDB_MODE", cfg.wandb_mode)
        if mode == "disabled":
            return None
        import wandb

        return wandb.init(
            project=cfg.project,
            name=cfg.run_name or Path(run_dir).name,
            dir=str(run_dir),
            mode=mode,
            config=config,
            resume="allow",
            id=_wandb_id(run_dir),
        )

    def log(self, step: int, metrics: dict[str, Any], *, advance: int = 1) -> None:
        clean = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(float(v))}
        record = {"step": step, "time_s": round(time.time() - self._t0, 3), **clean}
        record.update({k: v for k, v in metrics.items() if isinstance(v, str)})
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._wandb is not None:
            # wandb's own step only increases; SFT, RL and eval records share one x-axis key instead.
            self._wandb.log({**clean, "optimizer_step": step})
        if self._bar is not None and advance:  # SFT, eval and publish records leave the bar alone
            self._postfix.update({label: f"{clean[k]:.3g}" for k, label in _BAR_KEYS if k in clean})
            self._bar.set_postfix(self._postfix, refresh=False)
            self._bar.update(advance)

    def show(self, **fields: int | str | None) -> None:
        """Pin ``fields`` to the progress bar between steps (e.g. ``err=3``, a count); None removes one."""
        for key, value in fields.items():
            if value is None:
                self._postfix.pop(key, None)
            else:
                self._postfix[key] = str(value)
        if self._bar is not None:
            self._bar.set_postfix(self._postfix, refresh=True)

    def log_table(self, key: str, columns: list[str], rows: list[list[Any]], step: int) -> None:
        """Log a small table (e.g. sample rollouts) to wandb and as one JSONL record."""
        self._file.write(json.dumps({"step": step, "table": key, "columns": columns, "rows": rows}) + "\n")
        if self._wandb is not None:
            import wandb

            self._wandb.log({key: wandb.Table(columns=columns, data=rows), "optimizer_step": step})

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._wandb is not None:
            self._wandb.finish()
        self._file.close()


def _wandb_id(run_dir: str | Path) -> str:
    """A stable wandb run id per run folder, so ``resume`` continues the same wandb run."""
    p = Path(run_dir) / ".wandb_id"
    if not p.exists():
        import uuid

        p.write_text(uuid.uuid4().hex[:12])
    return p.read_text().strip()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The scalar records of a ``metrics.jsonl`` (tables skipped)."""
    out = []
    for line in Path(path).read_text().splitlines():
        rec = json.loads(line)
        if "table" not in rec:
            out.append(rec)
    return out
