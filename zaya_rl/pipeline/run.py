"""The entry points of ``zaya-rl train``, ``resume`` and ``eval``: a config with ``stages`` goes to the
curriculum runner (``zaya_rl.curriculum.runner``), any other to one run (``zaya_rl.pipeline.session``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zaya_rl.config import ConfigError, RunConfig, load_config
from zaya_rl.paths import latest_checkpoint
from zaya_rl.pipeline.accounting import Accounting
from zaya_rl.pipeline.setup import init_ray, make_sampler

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class EvalTarget:
    """What ``zaya-rl eval`` evaluates: ``cfg`` (engine at the trainer's precision, ``eval_engine_config``) whose
    ``model.path`` is the weights to score (None for a preset start model), and the checkpoint whose sampler
    state (difficulty ladders) it restores, if any."""

    cfg: RunConfig
    ckpt: Path | None


def resolve_target(target: str | Path, overrides: list[str] | None = None) -> EvalTarget:
    """A run folder (its newest checkpoint), a checkpoint folder, or a config file (its starting model)."""
    target = Path(target)
    model_path, ckpt = None, None
    if target.is_file():
        cfg = load_config(target, overrides)
    elif (target / "config.yaml").is_file():
        cfg = load_config(target / "config.yaml", [f"run_dir={target}", *(overrides or [])])
        if cfg.stages:  # a curriculum: its latest stage with a checkpoint, on that stage's mixture
            from zaya_rl.curriculum.runner import latest_stage_dir

            return resolve_target(latest_stage_dir(cfg), overrides)
        ckpt = latest_checkpoint(cfg.checkpoint_root)
        model_path = str(ckpt / "model") if ckpt else None
    elif (target / "model").is_dir() and (target.parent.parent / "config.yaml").is_file():
        cfg = load_config(target.parent.parent / "config.yaml", overrides)
        ckpt, model_path = target, str(target / "model")
    else:
        raise ConfigError(f"{target}: not a config file, a run folder or a checkpoint folder")
    if model_path:
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"path": model_path})})
    return EvalTarget(eval_engine_config(cfg), ckpt)


def evaluate_target(target: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Evaluate a run folder's newest checkpoint, a checkpoint folder, or a config's starting model."""
    return dict(evaluate_targets([("target", target, overrides)]))["target"]


#: Config sections an engine is built from (``rollout.factory``, ``rollout.vllm_build``, the rollout worker):
#: targets that agree on them (``model`` apart from its path) can be scored by one engine.
ENGINE_SECTIONS = ("model", "rollout", "weight_sync", "algorithm", "canary", "seed")
#: ``config.json`` keys that do not change the network an engine runs (the engine's dtype is the config's).
_HARMLESS_MODEL_KEYS = frozenset({"_name_or_path", "dtype", "torch_dtype", "transformers_version", "use_cache"})


def engine_mismatch(host: EvalTarget, other: EvalTarget) -> str | None:
    """Why ``other``'s weights cannot be loaded into the engine built for ``host`` (None: they can).

    They can when both configs build the same engine (``ENGINE_SECTIONS``, ``data.system_prompt``) and both
    models are folders of the same architecture (``config.json`` equal up to ``_HARMLESS_MODEL_KEYS``) with the
    same tensor names, so a reload replaces every weight the engine holds."""
    import json

    from safetensors import safe_open

    def engine_part(cfg: RunConfig) -> dict[str, Any]:
        d = cfg.model_dump(include=set(ENGINE_SECTIONS))
        d["model"].pop("path", None)
        return d | {"system_prompt": cfg.data.system_prompt}

    if engine_part(host.cfg) != engine_part(other.cfg):
        return "the configs build different engines"
    folders = [Path(t.cfg.model.path) if t.cfg.model.path else None for t in (host, other)]
    if not all(f is not None and (f / "config.json").is_file() for f in folders):
        return "a model without a checkpoint folder (preset) has no weights to load"
    archs = [{k: v for k, v in json.loads((f / "config.json").read_text()).items() if k not in _HARMLESS_MODEL_KEYS}
             for f in folders]
    if archs[0] != archs[1]:
        return "the models' config.json differ"
    names = []
    for f in folders:
        keys: set[str] = set()
        for file in sorted(f.glob("*.safetensors")):
            with safe_open(str(file), framework="pt") as st:
                keys.update(st.keys())
        names.append(keys)
    return None if names[0] and names[0] == names[1] else "the models' safetensors hold different tensors"


def evaluate_targets(targets: Sequence[tuple[str, str | Path, list[str] | None]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(name, result)`` of each ``(name, target, overrides)``, in order, as ``evaluate_target`` scores it.

    One set of rollout workers serves consecutive targets that ``engine_mismatch`` allows: the next model's
    folder is loaded into the running engine (a ``file`` weight update: vLLM's ``reload_weights(weights_path=)``,
    a state dict for the torch engine), since an engine's start-up (a Ray actor, vLLM's compilation, CUDA
    graphs and kernel JIT) costs far more than a few hundred greedy answers (34-94 s per model on an H100,
    2026-12-07). A reload that fails falls back to a fresh engine. Every target is resolved before the first
    engine starts, so a bad one fails at once."""
    import ray

    from zaya_rl.pipeline.actors import create_actors

    resolved = [(name, resolve_target(target, overrides)) for name, target, overrides in targets]
    if not resolved:
        return
    owns_ray = init_ray(resolved[0][1].cfg)
    actors, host = None, None
    try:
        for version, (name, tgt) in enumerate(resolved):
            if actors is not None:
                if why := engine_mismatch(host, tgt):
                    log.info("eval %s: a new engine (%s)", name, why)
                else:
                    try:
                        asyncio.run(_load_folder(actors, tgt.cfg.model.path, version))
                    except Exception as e:  # an engine that cannot reload: this target gets its own, as before
                        why = f"reloading the engine failed ({type(e).__name__}: {e})"
                        log.warning("eval %s: %s; starting a new one", name, why)
                if why:
                    actors.kill()
                    actors = None
            if actors is None:
                actors, host = create_actors(_reloadable(tgt.cfg), Accounting(), with_trainer=False), tgt
            start = tgt.cfg.model.path or f"preset {tgt.cfg.model.preset}"
            yield name, asyncio.run(_eval_only(tgt.cfg, actors, tgt.ckpt)) | {"model": start}
    finally:
        if actors is not None:
            actors.kill()
        if owns_ray:
            ray.shutdown()


def _reloadable(cfg: RunConfig) -> RunConfig:
    """``cfg`` with vLLM's prefix cache dropped at every weight load: the next model is asked the same prompts,
    and must not reuse the KV the previous model computed for them."""
    return _with_vllm(cfg, clear_cache_on_update=True)


def _with_vllm(cfg: RunConfig, **fields: Any) -> RunConfig:
    """``cfg`` with these ``rollout.vllm`` fields replaced."""
    vllm = cfg.rollout.vllm.model_copy(update=fields)
    return cfg.model_copy(update={"rollout": cfg.rollout.model_copy(update={"vllm": vllm})})


async def _load_folder(actors: Any, folder: str, version: int) -> None:
    """Every rollout worker reloads its weights from a checkpoint folder (``*.safetensors``)."""
    from zaya_rl.weights.base import WeightUpdate

    update = WeightUpdate(version, "file", (), folder)
    await asyncio.gather(*(h.apply_weight_update.remote(update) for h in actors.workers.handles))


def eval_engine_config(cfg: RunConfig) -> RunConfig:
    """``cfg`` with the vLLM engine at the trainer's precision when ``eval.engine_dtype`` is ``model`` (a weight
    read from disk is then evaluated as trained, not rounded to the rollout engine's dtype)."""
    v = cfg.rollout.vllm
    if cfg.eval.engine_dtype != "model" or v.engine_kwargs.get("dtype", cfg.model.dtype) == cfg.model.dtype:
        return cfg
    return _with_vllm(cfg, engine_kwargs={**v.engine_kwargs, "dtype": cfg.model.dtype})


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
