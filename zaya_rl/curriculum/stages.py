"""Curriculum stages as config: each stage's complete ``RunConfig``, built from the base and its overrides.

A curriculum is ``RunConfig.stages``, a list of ``StageConfig`` (name, steps, per-section overrides).
``stage_configs`` turns stage k into a complete, validated ``RunConfig``:

    d = every section of the run config except ``stages`` (with sft.enabled = false for k > 0)
    d = deep_merge(d, stage k's section overrides)      mappings merge key by key; lists and values replace
    pipeline.total_steps = steps
    run_dir          = <run_dir>/stages/<kk>_<name>     (a set checkpoint.dir gets the same suffix)
    seed             = seed + k                         stages sharing an environment draw other problems
    model            = stage k-1's final HF weights     k > 0: <its checkpoints>/step_<steps>/model
    logging.run_name = <run name>/<kk>_<name>

A stage's final checkpoint is always ``step_<steps>`` (a run checkpoints its last step, and pruning keeps
the newest), so stage k's starting weights are known at load time and the whole chain validates before
anything runs. ``validate_stages`` is called by ``RunConfig``'s validator: its errors are pydantic errors
whose location starts with ``("stages", k)``, so a bad stage reads ``stages.2.algorithm.max_len: ...``.

Pure: no I/O; imports only config code and two path helpers. ``python -m pytest tests/curriculum -q``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails

from zaya_rl.config.schema import RunConfig, StageConfig

#: Folder of the stage runs inside the curriculum's run folder.
STAGES_DIR = "stages"
#: The ``StageConfig`` fields that override run sections (everything but the stage's name and length).
SECTIONS = tuple(f for f in StageConfig.model_fields if f not in ("name", "steps"))


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``override`` merged in: mappings merge key by key, other values replace."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def stage_folder(index: int, name: str) -> str:
    """``<kk>_<name>``: the stage's folder name (under ``<run_dir>/stages`` and a set ``checkpoint.dir``)."""
    return f"{index:02d}_{name}"


def final_model_dir(stage: RunConfig) -> Path:
    """The HF weights a completed stage run ends with: its ``step_<total_steps>`` checkpoint's ``model``."""
    from zaya_rl.pipeline.run import checkpoint_root  # light: run.py imports heavy modules lazily
    from zaya_rl.trainer.checkpoint import step_dir

    return step_dir(checkpoint_root(stage), stage.pipeline.total_steps) / "model"


def global_step_offsets(cfg: RunConfig) -> list[int]:
    """Optimizer steps done before each stage starts (stage k spans offsets[k] .. offsets[k] + steps)."""
    offsets, total = [], 0
    for stage in cfg.stages:
        offsets.append(total)
        total += stage.steps
    return offsets


def stage_dict(cfg: RunConfig, index: int, previous: RunConfig | None) -> dict[str, Any]:
    """Stage ``index``'s config as a plain dict (module docstring), before validation."""
    stage = cfg.stages[index]
    d = cfg.model_dump(mode="json", exclude={"stages"})
    if index > 0:
        d["sft"]["enabled"] = False
    d = deep_merge(d, {s: getattr(stage, s) for s in SECTIONS if getattr(stage, s)})
    folder = stage_folder(index, stage.name)
    d["pipeline"]["total_steps"] = stage.steps
    d["run_dir"] = str(Path(cfg.run_dir) / STAGES_DIR / folder)
    d["seed"] = cfg.seed + index
    if d["checkpoint"].get("dir"):
        d["checkpoint"]["dir"] = str(Path(d["checkpoint"]["dir"]) / folder)
    d["logging"]["run_name"] = f"{cfg.logging.run_name or Path(cfg.run_dir).name}/{folder}"
    if previous is not None:
        d["model"] = {**d["model"], "path": str(final_model_dir(previous)), "preset": None}
    return d


def stage_configs(cfg: RunConfig) -> list[RunConfig]:
    """Every stage's validated ``RunConfig``, in order; raises ``ValidationError`` at ``("stages", k, ...)``."""
    out: list[RunConfig] = []
    for k, stage in enumerate(cfg.stages):
        try:
            out.append(RunConfig.model_validate(stage_dict(cfg, k, out[-1] if out else None)))
        except ValidationError as e:
            raise _located(e, k, stage.name) from None
    return out


def validate_stages(cfg: RunConfig) -> None:
    """Load-time check of a curriculum: unique names, and every stage merges into a valid config."""
    seen: dict[str, int] = {}
    for k, stage in enumerate(cfg.stages):
        if stage.name in seen:
            raise ValidationError.from_exception_data("RunConfig", [_value_error(
                ("stages", k, "name"), f"duplicate stage name (also stages.{seen[stage.name]}.name)", stage.name)])
        seen[stage.name] = k
    stage_configs(cfg)


def _located(err: ValidationError, index: int, name: str) -> ValidationError:
    """``err`` with every location prefixed by ``("stages", index)``; a whole-config error shows the name."""
    details: list[InitErrorDetails] = []
    for e in err.errors():
        detail: dict[str, Any] = {"type": e["type"], "loc": ("stages", index, *e["loc"]),
                                  "input": e["input"] if e["loc"] else f"<stage {name!r}>"}
        if "ctx" in e:
            detail["ctx"] = e["ctx"]
        details.append(detail)  # type: ignore[arg-type]
    return ValidationError.from_exception_data("RunConfig", details)


def _value_error(loc: tuple, message: str, value: Any) -> InitErrorDetails:
    return {"type": "value_error", "loc": loc, "input": value, "ctx": {"error": ValueError(message)}}
