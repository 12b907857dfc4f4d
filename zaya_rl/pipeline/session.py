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
import re
import time
from pathlib import Path
from typing import Any

from zaya_rl.config import RunConfig, dump_config
from zaya_rl.paths import latest_checkpoint, step_dir
from zaya_rl.pipeline.accounting import Accounting
from zaya_rl.pipeline.setup import init_ray, make_sampler, preflight, setup_logging
from zaya_rl.pipeline.stopping import EXIT_INTERRUPTED, Interrupts, RunStopped

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
    from zaya_rl.pipeline.orchestrator import Orchestrator

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
    _log_trainer(await actors.trainer.describe.remote())
    log.info("rollout: %s", await actors.workers.handles[0].describe.remote())  # engine; vLLM frontend and why
    ckpt = Checkpointer(cfg.checkpoint_root, cfg.checkpoint.every_steps, cfg.checkpoint.keep_last,
                        run_state=lambda: {**run_state, "wall_s_before": run_state["wall_s_before"]
                                           + time.perf_counter() - t0})
    orch = Orchestrator(cfg, actors, sampler, logger, acc, checkpointer=ckpt, **orch_kwargs)
    run_state["trained_at_start"] = acc.trained
    in_rl = False
    stopped: RunStopped | None = None
    with Interrupts(asyncio.current_task(), graceful=orch.stop_requested.set, graceful_ok=lambda: in_rl):
        try:
            await actors.workers.deliver(actors.workers.submit_version(orch.step), orch.step)
            if state is None:
                await _before_rl(cfg, actors, orch, sampler, logger, run_state)
            in_rl = True
            limit = cfg.pipeline.rl_time_limit_s
            timer = asyncio.get_running_loop().call_later(limit, orch.reach_time_limit) if limit else None
            await orch.run(cfg.pipeline.total_steps)
            in_rl = False
            if timer is not None:
                timer.cancel()
            if orch.stop_requested.is_set() and not orch.time_limit_reached:  # SIGINT: no evaluation
                stopped = _interrupted(cfg, orch, checkpointed=True)
            else:
                await _evaluate(cfg, orch, sampler, logger, run_state, "after")
            if ckpt.last_step != orch.step:
                ckpt.request(orch)
                await orch.drain()
        except asyncio.CancelledError:  # SIGINT outside the RL loop, or a second one
            stopped = _interrupted(cfg, orch, checkpointed=False)
        except RunStopped as e:
            stopped = RunStopped(f"{e} Summary: {Path(cfg.run_dir) / 'summary.json'}", e.exit_code, e.resume_dir)
    await orch.stop()
    wall = run_state["wall_s_before"] + time.perf_counter() - t0
    summary = _write_summary(cfg, acc, orch, run_state, wall, stopped)
    if stopped is not None:
        raise stopped
    return summary


async def _before_rl(cfg: RunConfig, actors: Any, orch: Any, sampler: Any, logger: Any,
                     run_state: dict[str, Any]) -> None:
    """A fresh run's optional SFT warm start (with its own evaluation before it) and the evaluation before RL."""
    from zaya_rl.pipeline.warm_start import run_sft

    if cfg.sft.enabled:
        await _evaluate(cfg, orch, sampler, None, run_state, "init")
        run_state["sft"] = await run_sft(cfg, actors, logger)
        await actors.workers.deliver(actors.workers.submit_version(0), 0)
    await _evaluate(cfg, orch, sampler, logger, run_state, "before")


async def _evaluate(cfg: RunConfig, orch: Any, sampler: Any, logger: Any, run_state: dict[str, Any],
                    when: str) -> None:
    """Held-out evaluation into ``run_state["eval_<when>"]``, logged (unless ``logger`` is None) and printed."""
    from zaya_rl.pipeline.evaluate import evaluate

    ev = run_state[f"eval_{when}"] = await evaluate(orch, cfg, sampler)
    if logger is not None:
        logger.log(orch.step, {f"eval/{when}/{k}": v for k, v in ev.items()}, advance=0)
    if when != "init":
        _print_eval(f"{when} RL", ev)


def _interrupted(cfg: RunConfig, orch: Any, *, checkpointed: bool) -> RunStopped:
    run_dir = Path(cfg.run_dir)
    where = f"checkpoint {step_dir(cfg.checkpoint_root, orch.step)}" if checkpointed else "no new checkpoint"
    return RunStopped(f"interrupted at step {orch.step}/{cfg.pipeline.total_steps}: {where}, summary "
                      f"{run_dir / 'summary.json'}", EXIT_INTERRUPTED, str(run_dir) if checkpointed else None)


def _log_trainer(info: dict[str, Any]) -> None:
    """The trainer's size, device and Muon/AdamW partition, one log line per partition row."""
    log.info("trainer: %s parameters on %s", f"{info['parameters']:,}", info["device"])
    for row in info["partition"].splitlines():
        log.info("trainer partition: %s", row)


def _print_eval(label: str, ev: dict[str, float]) -> None:
    from zaya_rl.pipeline.evaluate import level_summary

    envs = [k for k in ev if k not in ("accuracy", "errors") and not re.search(r"/d\d+$", k)]
    per_env = ", ".join(f"{env}={ev[env]:.3f} {level_summary(ev, env)}" for env in envs)
    print(f"[zaya-rl] held-out accuracy {label}: {ev['accuracy']:.3f} ({per_env}; verifier errors "
          f"{int(ev['errors'])})", flush=True)


def _write_summary(cfg: RunConfig, acc: Accounting, orch: Any, run_state: dict[str, Any], wall: float,
                   stopped: RunStopped | None) -> dict:
    """``summary.json``, also for a run that stopped early (``status``; missing evaluations are null)."""
    from zaya_rl.logging.plots import write_plots

    run_dir = Path(cfg.run_dir)
    trained_now = acc.trained - run_state.get("trained_at_start", 0)
    before, after = run_state.get("eval_before"), run_state.get("eval_after")
    final_model = step_dir(cfg.checkpoint_root, orch.step) / "model"  # the checkpoint of the step reached
    status = "completed" if stopped is None else "interrupted" if stopped.exit_code == EXIT_INTERRUPTED else "failed"
    summary = {
        "status": status,
        "stop_reason": None if stopped is None else str(stopped),
        "run_dir": str(run_dir),
        "final_model": str(final_model) if final_model.is_dir() else None,
        "eval_accuracy_before": before["accuracy"] if before else None,
        "eval_accuracy_after": after["accuracy"] if after else None,
        "eval_before": before,
        "eval_after": after,
        "samples_generated": acc.generated,
        "samples_trained": acc.trained,
        "samples_dropped": acc.total_dropped,
        "samples_dropped_by_reason": dict(acc.dropped),
        "optimizer_steps": orch.step,
        "rl_time_limit_reached": orch.time_limit_reached,  # pipeline.rl_time_limit_s ended RL before total_steps
        "wall_seconds": round(wall, 2),
        "mode": cfg.pipeline.mode,
        "max_lag": cfg.pipeline.max_lag,
        "rl_seconds": round(orch.rl_wall_s, 2),
        "rl_samples_per_s": round(trained_now / orch.rl_wall_s, 2) if orch.rl_wall_s else None,
        "trainer_idle_frac": orch.trainer_idle_frac,
        "groups_resubmitted": acc.groups_resubmitted,
        "worker_restarts": acc.worker_restarts,
        "env_errors": orch.budget.errors,
        "slow_levels": orch.slow_levels,
        "warnings": orch.collapse.warnings,
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
