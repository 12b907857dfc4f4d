"""Config machinery: strict frozen pydantic models, YAML loading, ``key.sub=value`` overrides.

Errors name the dotted field (``algorithm.loss.delta: Input should be less than 1``) and are raised before
any actor starts. This module imports neither torch nor ray, so ``zaya-rl --help`` and config errors are
instant (STYLE.md rule 7).
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

T = TypeVar("T", bound=BaseModel)


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, instances are immutable.

    Field descriptions come from the docstring under each field (``use_attribute_docstrings``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True, validate_default=True)


Device = Literal["auto", "cpu", "cuda"]


class ActorResources(Section):
    num_cpus: float = Field(1.0, ge=0.0)
    """CPUs Ray reserves for each actor of this kind."""
    num_gpus: float = Field(0.0, ge=0.0)
    """GPUs (may be fractional on a GPU cluster) Ray reserves for each actor of this kind."""
    resources: dict[str, float] = Field(default_factory=dict)
    """Custom Ray resources (e.g. ``{"rollout_node": 1}``) to pin actors to labelled nodes."""


class ConfigError(ValueError):
    """A config that cannot be used; the message names every offending dotted field."""


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "<root>"


def _model_of(tp: Any) -> type[BaseModel] | None:
    """The config model inside an annotation (``M``, ``list[M]``, ``M | None``), if exactly one."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    models = [m for m in map(_model_of, typing.get_args(tp)) if m is not None]
    return models[0] if len(models) == 1 else None


def _keys_at(model: type[BaseModel], path: tuple[Any, ...]) -> list[str]:
    """The field names of the section at ``path`` (list indices skipped); [] when it is not a section.

    A curriculum stage's section overrides (``stages.<k>.<section>...``) are plain dicts merged into the
    run config, so their keys are the run config's own.
    """
    if len(path) >= 3 and path[0] == "stages" and isinstance(path[1], int):
        path = path[2:]
    current: type[BaseModel] | None = model
    for part in path:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if current is not None else None
        current = _model_of(field.annotation) if field is not None else None
    return list(current.model_fields) if current is not None else []


def unknown_key_message(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> str:
    """``unknown key`` plus, for a misspelt key, ``; did you mean <dotted key>?``."""
    close = difflib.get_close_matches(str(loc[-1]), _keys_at(model, loc[:-1]), n=3, cutoff=0.6) if model else []
    if not close:
        return "unknown key"
    return "unknown key; did you mean " + " or ".join(_dotted((*loc[:-1], c)) for c in close) + "?"


def format_validation_error(err: ValidationError, prefix: str = "", model: type[BaseModel] | None = None) -> str:
    """One line per error, each naming the dotted field; ``model`` (the validated class) adds suggestions
    for misspelt keys."""
    lines = []
    for e in err.errors():
        where = _dotted(tuple(e["loc"]))
        where = f"{prefix}.{where}" if prefix else where
        if e["type"] == "extra_forbidden":
            lines.append(f"{where}: {unknown_key_message(model, tuple(e['loc']))}")
        elif not e["loc"] or isinstance(e.get("input"), dict):  # a cross-field check: the message names fields
            lines.append(f"{where}: {e['msg']}")
        else:
            lines.append(f"{where}: {e['msg']} (got {e.get('input')!r})")
    return "invalid config:\n  " + "\n  ".join(lines)


def parse_override(item: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value``; the value is read as YAML (``3``, ``0.1``, ``true``, ``[1, 2]``, ``null``)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key.sub=value")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {item!r} has an empty key part")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {key}: value {raw!r} is not valid YAML ({e})") from e
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``key.sub=value`` override applied (creating nested dicts)."""
    out = _deepcopy(data)
    for item in overrides:
        parts, value = parse_override(item)
        node = out
        for i, p in enumerate(parts[:-1]):
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {item!r}: {'.'.join(parts[: i + 1])} is not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def _deepcopy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deepcopy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deepcopy(v) for v in d]
    return d


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def validate(model: type[T], data: dict[str, Any]) -> T:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, model=model)) from None
