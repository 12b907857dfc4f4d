"""What a run needs before any actor starts: Ray, the log file, the problem stream, pre-flight checks.

Light: imports neither torch nor ray at module level (``init_ray`` imports ray when called), so the
curriculum runner, the SFT warm start and the entry points share these without importing one another.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from zaya_rl.config import RunConfig

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


def setup_logging(run_dir: Path) -> None:
    """Log records of every logger to ``<run_dir>/train.log`` (once per process)."""
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

    Raises ``ConfigError`` naming the field: an unknown or misspelt environment, a fixed level (training or
    ``eval.difficulty``) outside its environment's range, a ``model.path`` that is not a checkpoint folder or
    is a model router replay cannot apply to while ``algorithm.router_replay`` is on (unless
    ``check_model_path`` is False: a curriculum stage's path is the previous stage's checkpoint, written
    later), a missing reward model.
    """
    from zaya_rl.config import ConfigError
    from zaya_rl.models.families import replay_unsupported_reason
    from zaya_rl.pipeline.behavioral import check_reward_model
    from zaya_rl.pipeline.evaluate import eval_levels

    if check_model_path and cfg.model.path is not None:
        if not (Path(cfg.model.path) / "config.json").is_file():
            raise ConfigError(f"model.path: {cfg.model.path} is not an HF checkpoint folder (no config.json)")
        reason = replay_unsupported_reason(cfg.model.path) if cfg.algorithm.router_replay else None
        if reason:
            raise ConfigError(f"algorithm.router_replay: {reason}")
    try:
        # resolves every environment name and checks fixed training and evaluation levels against its range
        eval_levels(cfg, make_sampler(cfg))
    except (ValueError, KeyError) as e:
        msg = str(e).strip("'\"")
        raise ConfigError(msg if msg.startswith(("data.", "eval.")) else f"data.environments: {msg}") from None
    if cfg.behavioral.enabled:
        try:
            check_reward_model(cfg)
        except (ValueError, KeyError) as e:
            raise ConfigError(f"behavioral.reward_model: {e}") from None
