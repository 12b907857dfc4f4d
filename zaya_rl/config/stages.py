"""Curriculum stages as config: a stage's overrides, and how stage k's complete config dict is built.

A curriculum is ``RunConfig.stages``, a list of ``StageConfig`` (name, steps, per-section overrides).
``RunConfig.stage_configs()`` turns stage k into a complete, validated ``RunConfig`` from ``stage_dict``:

    d = every section of the run config except ``stages`` (with sft.enabled = false for k > 0)
    d = deep_merge(d, stage k's section overrides)      mappings merge key by key; lists and values replace
    pipeline.total_steps = steps
    run_dir          = <run_dir>/stages/<kk>_<name>     (a set checkpoint.dir gets the same suffix)
    seed             = seed + k                         stages sharing an environment draw other problems
    model            = stage k-1's final HF weights     k > 0: <its checkpoints>/step_<steps>/model
    logging.run_name = <run name>/<kk>_<name>

A stage's final checkpoint is always ``step_<steps>`` (a run checkpoints its last step, and pruning keeps
the newest), so stage k's starting weights are known at load time and the whole chain validates before
anything runs: ``RunConfig``'s validator builds every stage's config, and ``located`` re-raises a stage's
errors at ``("stages", k, ...)``, so a bad stage reads ``stages.2.algorithm.max_len: ...``.

This module sits below ``schema.py`` (which imports it) and knows plain dicts only, so the config package
has no import circle. Pure: no I/O. ``python -m pytest tests/curriculum/test_stages.py -q``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_serializer, model_validator
from pydantic_core import InitErrorDetails

from zaya_rl.config.base import Section

#: Folder of the stage runs inside the curriculum's run folder.
STAGES_DIR = "stages"


class StageConfig(Section):
    """One stage of a curriculum (``stages``; ``zaya_rl.curriculum``).

    A stage's config is the run config outside ``stages`` deep-merged with the stage's section overrides
    (mappings merge key by key; lists such as ``data.environments`` and plain values replace), with
    ``pipeline.total_steps = steps``. Stage k > 0 starts from stage k-1's final HF weights; the base
    ``sft`` warm start runs before stage 0 only (a later stage may set its own ``sft``). ``model``,
    ``ray``, ``logging``, ``weight_sync``, ``placement``, ``run_dir`` and ``seed`` are run-wide."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    """Stage name (letters, digits, ``_.-``): its folder is ``<run_dir>/stages/<index>_<name>``."""
    steps: int = Field(ge=1)
    """Optimizer steps of the stage."""
    rollout: dict[str, Any] = Field(default_factory=dict)
    """Overrides of ``rollout`` (e.g. ``{sampling: {max_new_tokens: 8192}}``)."""
    algorithm: dict[str, Any] = Field(default_factory=dict)
    """Overrides of ``algorithm`` (advantage, group size, loss options)."""
    optim: dict[str, Any] = Field(default_factory=dict)
    """Overrides of ``optim``."""
    trainer: dict[str, Any] = Field(default_factory=dict)
    """Overrides of ``trainer`` (e.g. a smaller micro-batch for a longer budget)."""
    pipeline: dict[str, Any] = Field(default_factory=dict)
    """Overrides of ``pipeline`` (not ``total_steps``: that is ``steps``)."""
    data: dict[str, Any] = Field(default_factory=dict)
    """Overrides of ``data``: the stage's environment mixture and adaptive-difficulty rule."""
    canary: dict[str, Any] = Field(default_factory=dict)
    """Overrides of ``canary``."""
    sft: dict[str, Any] = Field(default_factory=dict)
    """A supervised warm start before this stage (stage 0 inherits the base ``sft``)."""
    eval: dict[str, Any] = Field(default_factory=dict)
    """Overrides of ``eval`` (held-out accuracy before and after the stage)."""
    checkpoint: dict[str, Any] = Field(default_factory=dict)
    """Overrides of ``checkpoint`` (a set ``dir`` gets the stage's folder name appended)."""
    ttc: dict[str, Any] = Field(default_factory=dict)
    """Overrides of ``ttc`` (aggregation prompts in RL)."""
    behavioral: dict[str, Any] = Field(default_factory=dict)
    """Overrides of ``behavioral`` (reward model + IF checks)."""

    @model_validator(mode="before")
    @classmethod
    def _run_wide_sections(cls, data: Any) -> Any:
        run_wide = ("model", "ray", "logging", "weight_sync", "placement", "run_dir", "seed", "stages")
        if isinstance(data, dict):
            for key in run_wide:
                if key in data:
                    raise ValueError(f"{key} is run-wide and cannot change per stage (set it outside stages)")
            if isinstance(data.get("pipeline"), dict) and "total_steps" in data["pipeline"]:
                raise ValueError("pipeline.total_steps: a stage's length is its `steps`")
        return data

    @model_serializer(mode="wrap")
    def _without_empty_sections(self, handler: Any) -> dict[str, Any]:
        # a dumped config.yaml lists only what each stage overrides (an absent section loads back as {})
        return {k: v for k, v in handler(self).items() if v != {}}


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


def stage_dict(run: Mapping[str, Any], stage: StageConfig, index: int, previous_model: Path | None) -> dict[str, Any]:
    """Stage ``index``'s config as a plain dict (module docstring), before validation.

    ``run`` is the run config dumped to JSON types without ``stages``; ``previous_model`` is stage
    ``index - 1``'s final HF weights (None for the first stage, which starts from the run's model).
    """
    d = copy.deepcopy(dict(run))
    if index > 0:
        d["sft"]["enabled"] = False
    d = deep_merge(d, {s: getattr(stage, s) for s in SECTIONS if getattr(stage, s)})
    folder = stage_folder(index, stage.name)
    d["pipeline"]["total_steps"] = stage.steps
    d["run_dir"] = str(Path(run["run_dir"]) / STAGES_DIR / folder)
    d["seed"] = run["seed"] + index
    if d["checkpoint"].get("dir"):
        d["checkpoint"]["dir"] = str(Path(d["checkpoint"]["dir"]) / folder)
    d["logging"]["run_name"] = f"{run['logging']['run_name'] or Path(run['run_dir']).name}/{folder}"
    if previous_model is not None:
        d["model"] = {**d["model"], "path": str(previous_model), "preset": None}
    return d


def check_stage_names(stages: list[StageConfig]) -> None:
    """Stage names are unique (each names a folder); raises ``ValidationError`` at ``stages.k.name``."""
    seen: dict[str, int] = {}
    for k, stage in enumerate(stages):
        if stage.name in seen:
            raise ValidationError.from_exception_data("RunConfig", [_value_error(
                ("stages", k, "name"), f"duplicate stage name (also stages.{seen[stage.name]}.name)", stage.name)])
        seen[stage.name] = k


def located(err: ValidationError, index: int, name: str) -> ValidationError:
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
