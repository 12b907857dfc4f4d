"""The stage runner: what ``zaya-rl train`` and ``zaya-rl resume`` do with a config that has ``stages``.

Each stage is an ordinary run (``zaya_rl.pipeline.session``) in ``<run_dir>/stages/<kk>_<name>`` with its
complete config (``RunConfig.stage_configs``): its own actors, held-out evaluation before and after on its own
mixture, checkpoints, ``metrics.jsonl``, plots and ``summary.json``. One Ray instance serves every stage.

Across a stage boundary:

- **Weights** carry over: stage k+1's trainer and rollout engines load stage k's final HF checkpoint
  (``step_<steps>/model``).
- **Optimizer state** does not. Momentum-free Muon (hidden matrices and experts) has none; AdamW's
  moments (embeddings, norms, biases, scales) restart with fresh bias correction, so the stage's own
  ``optim`` settings (learning rate, warm-up) act from its first step, not scaled by second moments
  measured on the previous stage's reward distribution (with beta2 = 0.95 they re-estimate in ~20 steps).
- **Counters** are per stage: optimizer step (checkpoint names, LR warm-up), sample books, sampler stream
  (seed + k) and RLVE ladders. A stage's books balance on their own; the curriculum summary sums them and
  ``curriculum.json`` records each stage's global step range.

Resume: stages marked ``done`` in ``curriculum.json`` are skipped. The first other stage continues from its
newest complete checkpoint (``session.resume_run`` on its folder: same books and data stream), or starts
from its initial weights if it has none. A stage whose run had finished when the curriculum crashed is
only recorded. The remaining stages then run.

Pre-flight, before Ray starts: every stage's environments exist and its fixed levels are in range, a given
``model.path`` is an HF folder, and a behavioural stage's RM folder exists (unless built tiny), so a typo
in the last stage fails at once rather than after the others have run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from zaya_rl.config import ConfigError, RunConfig, dump_config
from zaya_rl.curriculum.state import (
    STATE_FILE,
    BoundaryLog,
    CurriculumState,
    curriculum_summary,
    read_records,
    rl_step_records,
    stage_result,
)
from zaya_rl.paths import latest_checkpoint
from zaya_rl.pipeline.stopping import RunStopped


def run_curriculum(cfg: RunConfig) -> dict[str, Any]:
    """Run every stage of ``cfg`` from the start into ``cfg.run_dir``; returns the curriculum summary."""
    run_dir = Path(cfg.run_dir)
    if (run_dir / STATE_FILE).is_file():
        raise ConfigError(f"run_dir: {run_dir} already holds a curriculum run; continue it with "
                          f"`zaya-rl resume {run_dir}` or choose another run_dir")
    stages = preflight(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_config(cfg))
    return _drive(cfg, stages, resuming=False)


def resume_curriculum(cfg: RunConfig) -> dict[str, Any]:
    """Finish the current stage of the curriculum in ``cfg.run_dir`` from its last checkpoint, then the rest."""
    return _drive(cfg, preflight(cfg), resuming=True)


def preflight(cfg: RunConfig) -> list[RunConfig]:
    """The stage configs, after each stage passed ``pipeline.setup.preflight`` (errors name the stage)."""
    from zaya_rl.pipeline.setup import preflight as check_stage

    stages = cfg.stage_configs()
    for k, scfg in enumerate(stages):
        try:
            # stage 0 starts from the configured model; later stages from checkpoints not written yet
            check_stage(scfg, check_model_path=k == 0)
        except ConfigError as e:
            raise ConfigError(f"stages.{k} ({cfg.stages[k].name}): {e}") from None
    return stages


def _drive(cfg: RunConfig, stages: list[RunConfig], *, resuming: bool) -> dict[str, Any]:
    import ray

    from zaya_rl.pipeline.setup import init_ray, setup_logging

    run_dir = Path(cfg.run_dir)
    state = CurriculumState.load_or_new(cfg)
    boundaries = BoundaryLog(run_dir)
    setup_logging(run_dir)
    todo = [k for k in range(len(stages)) if not state.done(k)]
    owns_ray = init_ray(cfg) if todo else False  # a finished curriculum only rewrites its summary
    try:
        for k in todo:
            _run_stage(state, boundaries, k, stages[k], resuming=resuming)
    except RunStopped as e:  # a stage stopped early: the curriculum, not the stage folder, is what resumes
        e.resume_dir = str(run_dir) if e.resume_dir else None
        raise
    finally:
        if owns_ray:
            ray.shutdown()
    summary = {**curriculum_summary(state), "run_dir": str(run_dir)}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if cfg.logging.plots:
        from zaya_rl.logging.plots import write_plots

        write_plots(run_dir)
    return summary


def _run_stage(state: CurriculumState, boundaries: BoundaryLog, k: int, scfg: RunConfig, *,
               resuming: bool) -> None:
    """Run (or continue, or only record) stage ``k``; marks it done in ``curriculum.json``."""
    from zaya_rl.pipeline import session

    stage_dir, entry = Path(scfg.run_dir), state.stages[k]
    summary = _finished_summary(scfg) if resuming else None
    if summary is None:
        ckpt = latest_checkpoint(scfg.checkpoint_root) if resuming else None
        state.start(k)
        boundaries.stage_start(entry, str(ckpt) if ckpt else None)
        how = f"resuming from {ckpt}" if ckpt else f"from {scfg.model.path or scfg.model.preset}"
        print(f"[zaya-rl] stage {k + 1}/{len(state.stages)} {entry['name']}: {entry['steps']} steps, {how}",
              flush=True)
        t0 = time.perf_counter()
        try:
            if ckpt is None:
                summary = session.train_run(scfg)
            else:  # the stage folder's config is the stage config as merged now (resume overrides included)
                (stage_dir / "config.yaml").write_text(dump_config(scfg))
                summary = session.resume_run(scfg)
        finally:
            state.add_seconds(k, time.perf_counter() - t0)
    steps = rl_step_records(read_records(stage_dir / "metrics.jsonl"))
    state.finish(k, stage_result(summary, steps), str(scfg.final_model_dir))
    boundaries.stage_end(entry, steps)


def _finished_summary(scfg: RunConfig) -> dict[str, Any] | None:
    """The stage run's summary if it completed (all steps, final weights on disk), else None."""
    path = Path(scfg.run_dir) / "summary.json"
    if not path.is_file() or not scfg.final_model_dir.is_dir():
        return None
    summary = json.loads(path.read_text())
    return summary if summary.get("optimizer_steps") == scfg.pipeline.total_steps else None


def latest_stage_dir(cfg: RunConfig) -> Path:
    """The folder of the last stage that has a complete checkpoint (the first stage's if none has one)."""
    stages = cfg.stage_configs()
    with_ckpt = [s for s in stages if latest_checkpoint(s.checkpoint_root) is not None]
    return Path((with_ckpt or stages)[-1 if with_ckpt else 0].run_dir)
