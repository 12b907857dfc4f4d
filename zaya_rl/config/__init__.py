"""The validated config tree of a run (``RunConfig``) and how to load it.

``load_config("configs/tiny_cpu.yaml", ["pipeline.max_lag=2"])`` reads the YAML, applies the overrides and
validates the result; any unknown or ill-typed key raises ``ConfigError`` naming the dotted field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from zaya_rl.config.base import ConfigError, Section, apply_overrides, read_yaml, validate
from zaya_rl.config.schema import RunConfig

__all__ = ["ConfigError", "RunConfig", "Section", "load_config", "config_from_dict", "dump_config"]


def config_from_dict(data: dict[str, Any], overrides: list[str] | None = None) -> RunConfig:
    """Validate ``data`` (after applying ``key.sub=value`` overrides) into a ``RunConfig``."""
    return validate(RunConfig, apply_overrides(data, list(overrides or [])))


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML config file, apply overrides, validate."""
    return config_from_dict(read_yaml(path), overrides)


def dump_config(cfg: RunConfig) -> str:
    """The config as YAML (what a run writes to ``<run_dir>/config.yaml``; loading it gives ``cfg`` back)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
