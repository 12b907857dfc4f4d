"""The entry points of ``zaya-rl train``, ``resume`` and ``eval``: a config with ``stages`` goes to the
curriculum runner (``zaya_rl.curriculum.runner``), any other to one run (``zaya_rl.pipeline.session``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from zaya_rl.config import ConfigError, RunConfig, load_config
from zaya_rl.paths import latest_checkpoint
from zaya_rl.pipeline.accounting import Accounting
from zaya_rl.pipeline.setup import init_ray, make_sampler


def train(cfg: RunConfig) -> dict[str, Any]:
    """Run ``cfg`` from scratch into ``cfg.run_dir``; returns the summary (also written to summary.json).

    A config with ``stages`` runs the curriculum, one stage after the other (``zaya_rl.curriculum``).
    """
    if cfg.stages:
        from zaya_rl.curriculum.runner import run_curriculum

        return run_curriculum(cfg)
    from zaya_rl.pipeline.session import train_run

    return train_run(cfg)


def resume(run_dir: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Continue the run in ``run_dir`` from its newest complete checkpoint (a curriculum: its current stage's)."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise ConfigError(f"{run_dir} is not a run folder (no config.yaml)")
    cfg = load_config(cfg_path, [f"run_dir={run_dir}", *(overrides or [])])
    if cfg.stages:
        from zaya_rl.curriculum.runner import resume_curriculum

        return resume_curriculum(cfg)
    from zaya_rl.pipeline.session import resume_run

    return resume_run(cfg)


def evaluate_target(target: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Evaluate a run folder's newest checkpoint, a checkpoint folder, or a config's starting model."""
    import ray

    from zaya_rl.pipeline.actors import create_actors

    target = Path(target)
    model_path, ckpt = None, None
    if target.is_file():
        cfg = load_config(target, overrides)
    elif (target / "config.yaml").is_file():
        cfg = load_config(target / "config.yaml", [f"run_dir={target}", *(overrides or [])])
        if cfg.stages:  # a curriculum: its latest stage with a checkpoint, on that stage's mixture
            from zaya_rl.curriculum.runner import latest_stage_dir

            return evaluate_target(latest_stage_dir(cfg), overrides)
        ckpt = latest_checkpoint(cfg.checkpoint_root)
        model_path = str(ckpt / "model") if ckpt else None
    elif (target / "model").is_dir() and (target.parent.parent / "config.yaml").is_file():
        cfg = load_config(target.parent.parent / "config.yaml", overrides)
        ckpt, model_path = target, str(target / "model")
    else:
        raise ConfigError(f"{target}: not a config file, a run folder or a checkpoint folder")
    if model_path:
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"path": model_path})})
    cfg = eval_engine_config(cfg)
    owns_ray = init_ray(cfg)
    actors = create_actors(cfg, Accounting(), with_trainer=False)
    try:
        start = cfg.model.path or f"preset {cfg.model.preset}"  # a config file's own model (model.path may be overridden)
        return asyncio.run(_eval_only(cfg, actors, ckpt)) | {"model": model_path or start}
    finally:
        actors.kill()
        if owns_ray:
            ray.shutdown()


def eval_engine_config(cfg: RunConfig) -> RunConfig:
    """``cfg`` with the vLLM engine at the trainer's precision when ``eval.engine_dtype`` is ``model`` (a weight
    read from disk is then evaluated as trained, not rounded to the rollout engine's dtype)."""
    v = cfg.rollout.vllm
    if cfg.eval.engine_dtype != "model" or v.engine_kwargs.get("dtype", cfg.model.dtype) == cfg.model.dtype:
        return cfg
    vllm = v.model_copy(update={"engine_kwargs": {**v.engine_kwargs, "dtype": cfg.model.dtype}})
    return cfg.model_copy(update={"rollout": cfg.rollout.model_copy(update={"vllm": vllm})})


async def _eval_only(cfg: RunConfig, actors: Any, ckpt: Path | None) -> dict[str, float]:
    from zaya_rl.pipeline.evaluate import evaluate
    from zaya_rl.pipeline.orchestrator import Orchestrator
    from zaya_rl.trainer.checkpoint import load_orchestrator_part

    sampler = make_sampler(cfg)
    if ckpt is not None:  # the ladders the checkpoint reached (eval.difficulty=train_levels)
        sampler.load_state_dict(load_orchestrator_part(ckpt)["sampler"])
    await actors.workers.refresh_incarnations()
    orch = Orchestrator(cfg, actors, sampler, logger=None, accounting=Accounting())
    return await evaluate(orch, cfg, sampler)
