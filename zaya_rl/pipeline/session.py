"""One run (a config without ``stages``): actors, optional SFT warm start, evaluation before, RL,
evaluation after, checkpoints, ``summary.json`` and plots. ``train_run`` starts fresh; ``resume_run``
continues the newest complete checkpoint with the same config, books and data stream.

The entry points (``zaya_rl.pipeline.run``) and the curriculum runner (one stage = one run) call these.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from pathlib import Path
from typing import Any

from zaya_rl.config import RunConfig, dump_config
from zaya_rl.paths import latest_checkpoint
from zaya_rl.pipeline.accounting import Accounting
from zaya_rl.pipeline.setup import init_ray, make_sampler, preflight, setup_logging

log = logging.getLogger("zaya_rl")


def train_run(cfg: RunConfig) -> dict[str, Any]:
    """Run ``cfg`` (no stages) from scratch into ``cfg.run_dir``; returns the summary (also in summary.json)."""
    preflight(cfg)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_config(cfg))
    return _run(cfg, checkpoint=None)


def resume_run(cfg: RunConfig) -> dict[str, Any]:
    """Continue the run ``cfg`` (no stages) from the newest complete checkpoint in ``cfg.checkpoint_root``."""
    ckpt = latest_checkpoint(cfg.checkpoint_root)
    if ckpt is None:
        log.warning("no complete checkpoint in %s: starting the run from the beginning", cfg.checkpoint_root)
    return _run(cfg, checkpoint=ckpt)


def _run(cfg: RunConfig, checkpoint: Path | None) -> dict[str, Any]:
    import ray

    from zaya_rl.logging.metrics import MetricsLogger
    from zaya_rl.pipeline.actors import create_actors
    from zaya_rl.pipeline.behavioral import stop_reward_model
    from zaya_rl.trainer.checkpoint import load_orchestrator_part

    run_dir = Path(cfg.run_dir)
    setup_logging(run_dir)
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
    ckpt = Checkpointer(cfg.checkpoint_root, cfg.checkpoint.every_steps, cfg.checkpoint.keep_last,
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
