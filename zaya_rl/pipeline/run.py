"""A whole run: Ray start, actors, optional SFT warm start, evaluation before, RL, evaluation after,
checkpoints, ``summary.json`` and plots. ``train`` starts fresh; ``resume`` continues the newest complete
checkpoint of a run folder with the same config, books and data stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from pathlib import Path
from typing import Any

from zaya_rl.config import RunConfig, dump_config, load_config
from zaya_rl.pipeline.accounting import Accounting

log = logging.getLogger("zaya_rl")

#: Environment variables every actor gets: no hub access at run time, quiet tokenizers.
ACTOR_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


def init_ray(cfg: RunConfig) -> bool:
    """Start or join Ray (``ray.address`` or RAY_ADDRESS joins a cluster; otherwise a local instance).

    Returns True when this call started or joined Ray (the caller then shuts it down), False when Ray was
    already initialised by the caller's process (tests, notebooks, a curriculum runner).
    """
    import ray

    if ray.is_initialized():
        return False
    os.environ.update({k: os.environ.get(k, v) for k, v in ACTOR_ENV.items()})
    address = cfg.ray.address or os.environ.get("RAY_ADDRESS")
    # Under `ray job submit` the job's runtime env already sets variables; Ray refuses to merge a driver
    # runtime env that sets the same keys again ("Failed to merge the Job's runtime env"), so skip those.
    job_env = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")).get("runtime_env", {})
    env_vars = {k: v for k, v in ACTOR_ENV.items() if k not in (job_env.get("env_vars") or {})}
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env_vars}, "include_dashboard": False,
                              "log_to_driver": True}
    if address:
        ray.init(address=address, **kwargs)
    else:
        # address="local": always a fresh instance, even if a `ray start` cluster runs on this machine.
        ray.init(address="local", num_cpus=cfg.ray.num_cpus, object_store_memory=cfg.ray.object_store_mb * 2**20,
                 **kwargs)
    return True


def _setup_logging(run_dir: Path) -> None:
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    if not any(isinstance(h, logging.FileHandler) for h in root.handlers):
        fh = logging.FileHandler(run_dir / "train.log")
        fh.setFormatter(fmt)
        root.addHandler(fh)
    root.setLevel(logging.INFO)


def make_sampler(cfg: RunConfig, seed_offset: int = 0) -> Any:
    """The run's (environment, seed, difficulty) stream; ``seed_offset`` gives an independent stream."""
    from environments.sampler import MixtureSampler

    return MixtureSampler(cfg.data.environments, cfg.seed + seed_offset, adaptive=cfg.data.adaptive,
                          group_size=cfg.algorithm.group_size)


def preflight(cfg: RunConfig, *, check_model_path: bool = True) -> None:
    """Checks that need the environment registry or the filesystem, before Ray or any actor starts.

    Raises ``ConfigError`` naming the field: an unknown or misspelt environment, a fixed level outside its
    environment's range, a ``model.path`` that is not a checkpoint folder (unless ``check_model_path`` is
    False: a curriculum stage's path is the previous stage's checkpoint, written later), a missing reward model.
    """
    from zaya_rl.config import ConfigError
    from zaya_rl.pipeline.behavioral import check_reward_model

    if check_model_path and cfg.model.path is not None and not (Path(cfg.model.path) / "config.json").is_file():
        raise ConfigError(f"model.path: {cfg.model.path} is not an HF checkpoint folder (no config.json)")
    try:
        make_sampler(cfg)  # resolves every environment name and checks fixed levels against its range
    except (ValueError, KeyError) as e:
        msg = str(e).strip("'\"")
        raise ConfigError(msg if msg.startswith("data.") else f"data.environments: {msg}") from None
    if cfg.behavioral.enabled:
        try:
            check_reward_model(cfg)
        except (ValueError, KeyError) as e:
            raise ConfigError(f"behavioral.reward_model: {e}") from None


def checkpoint_root(cfg: RunConfig) -> Path:
    return Path(cfg.checkpoint.dir) if cfg.checkpoint.dir else Path(cfg.run_dir) / "checkpoints"


def train(cfg: RunConfig) -> dict[str, Any]:
    """Run ``cfg`` from scratch into ``cfg.run_dir``; returns the summary (also written to summary.json).

    A config with ``stages`` runs the curriculum, one stage after the other (``zaya_rl.curriculum``).
    """
    if cfg.stages:
        from zaya_rl.curriculum.runner import run_curriculum

        return run_curriculum(cfg)
    preflight(cfg)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_config(cfg))
    return _run(cfg, checkpoint=None)


def resume(run_dir: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Continue the run in ``run_dir`` from its newest complete checkpoint (a curriculum: its current stage's)."""
    from zaya_rl.config import ConfigError
    from zaya_rl.trainer.checkpoint import latest_checkpoint

    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise ConfigError(f"{run_dir} is not a run folder (no config.yaml)")
    cfg = load_config(cfg_path, [f"run_dir={run_dir}", *(overrides or [])])
    if cfg.stages:
        from zaya_rl.curriculum.runner import resume_curriculum

        return resume_curriculum(cfg)
    ckpt = latest_checkpoint(checkpoint_root(cfg))
    if ckpt is None:
        log.warning("no complete checkpoint in %s: starting the run from the beginning", checkpoint_root(cfg))
        return _run(cfg, checkpoint=None)
    return _run(cfg, checkpoint=ckpt)


def _run(cfg: RunConfig, checkpoint: Path | None) -> dict[str, Any]:
    import ray

    from zaya_rl.logging.metrics import MetricsLogger
    from zaya_rl.pipeline.actors import create_actors
    from zaya_rl.pipeline.behavioral import stop_reward_model
    from zaya_rl.trainer.checkpoint import load_orchestrator_part

    run_dir = Path(cfg.run_dir)
    _setup_logging(run_dir)
    random.seed(cfg.seed)
    owns_ray = init_ray(cfg)
    state = load_orchestrator_part(checkpoint) if checkpoint else None
    acc = Accounting.from_state_dict(state["accounting"]) if state else Accounting()
    actors = create_actors(cfg, acc, trainer_model_path=str(checkpoint / "model") if checkpoint else None)
    logger = MetricsLogger(run_dir, cfg.logging, total_steps=cfg.pipeline.total_steps,
                           config=cfg.model_dump(mode="json"), initial_step=state["step"] if state else 0)
    try:
        return asyncio.run(_main(cfg, actors, acc, logger, checkpoint, state))
    finally:
        logger.close()
        actors.kill()
        stop_reward_model(cfg)  # the behavioural stage's RM actor, started by the orchestrator
        if owns_ray:
            ray.shutdown()


async def _main(cfg: RunConfig, actors: Any, acc: Accounting, logger: Any, checkpoint: Path | None,
                state: dict[str, Any] | None) -> dict[str, Any]:
    from environments.sampler import Draw
    from zaya_rl.pipeline.checkpointing import Checkpointer
    from zaya_rl.pipeline.evaluate import evaluate
    from zaya_rl.pipeline.orchestrator import Orchestrator
    from zaya_rl.pipeline.warm_start import run_sft

    t0 = time.perf_counter()
    run_state: dict[str, Any] = dict(state["run"]) if state else {"wall_s_before": 0.0}
    sampler = make_sampler(cfg)
    orch_kwargs: dict[str, Any] = {}
    if state:
        sampler.load_state_dict(state["sampler"])
        await actors.trainer.load.remote(str(checkpoint))
        # Rollouts pending at the checkpoint cannot be recovered: book them, regenerate their prompts.
        acc.add_dropped("interrupted", state["pending_samples"])
        orch_kwargs = {"step": state["step"], "next_group_id": state["next_group_id"],
                       "readmit": [Draw(**d) for d in state["pending_draws"]]}
        run_state["resumed_from"] = str(checkpoint)
    await actors.workers.refresh_incarnations()
    log.info("trainer: %s", await actors.trainer.describe.remote())  # size and Muon/AdamW partition
    log.info("rollout: %s", await actors.workers.handles[0].describe.remote())  # engine; vLLM frontend and why
    ckpt = Checkpointer(checkpoint_root(cfg), cfg.checkpoint.every_steps, cfg.checkpoint.keep_last,
                        run_state=lambda: {**run_state, "wall_s_before": run_state["wall_s_before"]
                                           + time.perf_counter() - t0})
    orch = Orchestrator(cfg, actors, sampler, logger, acc, checkpointer=ckpt, **orch_kwargs)
    run_state["trained_at_start"] = acc.trained
    await actors.workers.deliver(actors.workers.submit_version(orch.step), orch.step)
    if state is None:
        if cfg.sft.enabled:
            run_state["eval_init"] = await evaluate(orch, cfg, sampler)
            run_state["sft"] = await run_sft(cfg, actors, logger)
            await actors.workers.deliver(actors.workers.submit_version(0), 0)
        run_state["eval_before"] = await evaluate(orch, cfg, sampler)
        logger.log(0, {f"eval/before/{k}": v for k, v in run_state["eval_before"].items()}, advance=0)
        _print_eval("before RL", run_state["eval_before"])
    await orch.run(cfg.pipeline.total_steps)
    run_state["eval_after"] = await evaluate(orch, cfg, sampler)
    logger.log(orch.step, {f"eval/after/{k}": v for k, v in run_state["eval_after"].items()}, advance=0)
    _print_eval("after RL", run_state["eval_after"])
    if ckpt.last_step != orch.step:
        ckpt.request(orch)
        await orch.drain()
    await orch.stop()
    wall = run_state["wall_s_before"] + time.perf_counter() - t0
    return _write_summary(cfg, acc, orch, run_state, wall)


def _print_eval(label: str, ev: dict[str, float]) -> None:
    per_env = ", ".join(f"{k}={v:.3f}" for k, v in ev.items() if k != "accuracy")
    print(f"[zaya-rl] held-out accuracy {label}: {ev['accuracy']:.3f} ({per_env})", flush=True)


def _write_summary(cfg: RunConfig, acc: Accounting, orch: Any, run_state: dict[str, Any], wall: float) -> dict:
    from zaya_rl.logging.plots import write_plots

    run_dir = Path(cfg.run_dir)
    trained_now = acc.trained - run_state.get("trained_at_start", 0)
    summary = {
        "eval_accuracy_before": run_state["eval_before"]["accuracy"],
        "eval_accuracy_after": run_state["eval_after"]["accuracy"],
        "eval_before": run_state["eval_before"],
        "eval_after": run_state["eval_after"],
        "samples_generated": acc.generated,
        "samples_trained": acc.trained,
        "samples_dropped": acc.total_dropped,
        "samples_dropped_by_reason": dict(acc.dropped),
        "optimizer_steps": orch.step,
        "wall_seconds": round(wall, 2),
        "mode": cfg.pipeline.mode,
        "max_lag": cfg.pipeline.max_lag,
        "rl_seconds": round(orch.rl_wall_s, 2),
        "rl_samples_per_s": round(trained_now / orch.rl_wall_s, 2) if orch.rl_wall_s else None,
        "trainer_idle_frac": orch.trainer_idle_frac,
        "groups_resubmitted": acc.groups_resubmitted,
        "worker_restarts": acc.worker_restarts,
    }
    if "eval_init" in run_state:
        summary["eval_accuracy_init"] = run_state["eval_init"]["accuracy"]
        summary["sft"] = run_state.get("sft")
    if "resumed_from" in run_state:
        summary["resumed_from"] = run_state["resumed_from"]
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if cfg.logging.plots:
        write_plots(run_dir)
    return summary


def evaluate_target(target: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Evaluate a run folder's newest checkpoint, a checkpoint folder, or a config's starting model."""
    import ray

    from zaya_rl.config import ConfigError
    from zaya_rl.pipeline.actors import create_actors
    from zaya_rl.trainer.checkpoint import latest_checkpoint

    target = Path(target)
    model_path = None
    if target.is_file():
        cfg = load_config(target, overrides)
    elif (target / "config.yaml").is_file():
        cfg = load_config(target / "config.yaml", [f"run_dir={target}", *(overrides or [])])
        if cfg.stages:  # a curriculum: its latest stage with a checkpoint, on that stage's mixture
            from zaya_rl.curriculum.runner import latest_stage_dir

            return evaluate_target(latest_stage_dir(cfg), overrides)
        ckpt = latest_checkpoint(checkpoint_root(cfg))
        model_path = str(ckpt / "model") if ckpt else None
    elif (target / "model").is_dir() and (target.parent.parent / "config.yaml").is_file():
        cfg = load_config(target.parent.parent / "config.yaml", overrides)
        model_path = str(target / "model")
    else:
        raise ConfigError(f"{target}: not a config file, a run folder or a checkpoint folder")
    if model_path:
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"path": model_path})})
    owns_ray = init_ray(cfg)
    actors = create_actors(cfg, Accounting(), with_trainer=False)
    try:
        return asyncio.run(_eval_only(cfg, actors)) | {"model": model_path or "config start model"}
    finally:
        actors.kill()
        if owns_ray:
            ray.shutdown()


async def _eval_only(cfg: RunConfig, actors: Any) -> dict[str, float]:
    from zaya_rl.pipeline.evaluate import evaluate
    from zaya_rl.pipeline.orchestrator import Orchestrator

    sampler = make_sampler(cfg)
    await actors.workers.refresh_incarnations()
    orch = Orchestrator(cfg, actors, sampler, logger=None, accounting=Accounting())
    return await evaluate(orch, cfg, sampler)
