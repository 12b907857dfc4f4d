"""Config machinery: strict frozen pydantic models, YAML loading, ``key.sub=value`` overrides.

Errors name the dotted field (``algorithm.loss.delta: Input should be less than 1``) and are raised before
any actor starts. This module imports neither torch nor ray, so ``zaya-rl --help`` and config errors are
instant (STYLE.md rule 7).
"""

from __future__ import annotations

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


def format_validation_error(err: ValidationError, prefix: str = "") -> str:
    lines = []
    for e in err.errors():
        where = _dotted(tuple(e["loc"]))
        where = f"{prefix}.{where}" if prefix else where
        if e["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key")
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
        raise ConfigError(format_validation_error(e)) from None
