"""Layered YAML configs: ``zaya-rl train BASE.yaml MORE.yaml ... key.sub=value``.

Files are deep-merged left to right (``zaya_rl.config.stages.deep_merge``: mappings merge key by key, lists and values
replace), then the overrides apply, then the one ``RunConfig`` validates. This is how
``configs/zaya1/_base.yaml`` (model and GPU engine settings; ``model.path`` left to the user) combines
with ``configs/zaya1/stages.yaml`` (the schedule). The run folder's ``config.yaml`` holds the merged
result, so ``zaya-rl resume`` needs no layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zaya_rl.config import ConfigError, RunConfig, config_from_dict
from zaya_rl.config.base import apply_overrides, read_yaml
from zaya_rl.config.stages import deep_merge

YAML_SUFFIXES = (".yaml", ".yml")


def is_config_file(arg: str) -> bool:
    """A command-line argument naming a YAML file (not a ``key=value`` override)."""
    return "=" not in arg and arg.endswith(YAML_SUFFIXES)


def merge_files(paths: Sequence[str | Path]) -> dict[str, Any]:
    """The deep merge of the YAML files, left to right."""
    data: dict[str, Any] = {}
    for path in paths:
        data = deep_merge(data, read_yaml(path))
    return data


def load_layered(args: Sequence[str]) -> RunConfig:
    """Validate a command line's YAML files (merged in order) and ``key.sub=value`` overrides, in any order.

    A model that is neither a preset nor a path is the one thing a base file may leave open: the error
    says how to give it.
    """
    files = [a for a in args if is_config_file(a)]
    overrides = [a for a in args if not is_config_file(a)]
    if not files:
        raise ConfigError("no config file given (a .yaml path)")
    data = apply_overrides(merge_files(files), overrides)
    model = data.get("model") or {}
    if "model" in data and model.get("path") is None and model.get("preset") is None:
        raise ConfigError(
            f"model.path: not set ({', '.join(files)} leave it to you). Add model.path=/path/to/checkpoint: "
            "an HF folder (config.json, weights, tokenizer) of your ZAYA1-8B or Qwen3-MoE SFT checkpoint"
        )
    return config_from_dict(data)
