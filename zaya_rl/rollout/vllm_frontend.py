"""Which vLLM frontend ``VLLMEngine`` drives, and how it books per-token versions: chosen from the installed vLLM.

| ``rollout.vllm.frontend`` | installed vLLM | frontend | versions (``zaya_rl.rollout.vllm_versions``) |
| --- | --- | --- | --- |
| ``auto`` (default) | has ``AsyncLLM.update_weight_version`` (>= 0.32) | ``async_llm`` | ``weight_versions`` |
| ``auto`` | no labels, output processor gets engine-core timestamps (0.24) | ``async_llm`` | ``core_timestamps`` |
| ``auto`` | neither | ``stepped`` | ``weight_versions`` (``SteppedLLM`` labels steps itself) |
| ``async_llm`` | as for ``auto``; neither available is a ``ConfigError`` | ``async_llm`` | as above |
| ``stepped`` | any | ``stepped`` | ``weight_versions`` |

Why ``async_llm`` wherever versions can be exact: its engine core (scheduling and the forward passes) runs
in its own process, so the frontend's per-token Python (log-prob dicts, our streams, the canary) overlaps
the device work, and the rollout actor's event loop never blocks on a step. ``stepped`` runs all of it in
the actor's thread, one step at a time. Both books are exact, so there is no drain to wait for at an
update (the old drain-based boundary cost 0.5-1.2 s per publish on an H100 and was still inexact).

``choose_frontend`` logs the choice and the reason once per engine. Test:
``python -m pytest tests/rollout/test_vllm_versions.py -q``.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Any

from zaya_rl.config import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrontendChoice:
    """``frontend``: ``async_llm`` | ``stepped``; ``versions``: a ``vllm_versions.BOOKS`` key; ``reason``: why."""

    frontend: str
    versions: str
    reason: str


def version_capabilities(async_llm_cls: Any, output_processor_cls: Any) -> tuple[bool, bool]:
    """``(has weight_versions labels, output processor takes engine-core timestamps)`` of a vLLM's classes."""
    labels = callable(getattr(async_llm_cls, "update_weight_version", None))
    process = getattr(output_processor_cls, "process_outputs", None)
    stamps = process is not None and "engine_core_timestamp" in inspect.signature(process).parameters
    return labels, stamps


def choose_frontend(requested: str, vllm_version: str, labels: bool, stamps: bool) -> FrontendChoice:
    """The frontend and version bookkeeping for ``rollout.vllm.frontend = requested`` (see the table above)."""
    if requested == "stepped":
        return FrontendChoice("stepped", "weight_versions", "rollout.vllm.frontend=stepped (in-process LLMEngine)")
    if labels:
        return FrontendChoice("async_llm", "weight_versions",
                              f"vLLM {vllm_version} labels every output with update_weight_version "
                              "(exact per-token versions, no drain at updates)")
    if stamps:
        return FrontendChoice("async_llm", "core_timestamps",
                              f"vLLM {vllm_version} has no weight_versions labels; versions come from the "
                              "engine core's output timestamps around each keep-pause (exact, no drain)")
    if requested == "async_llm":
        raise ConfigError(
            f"rollout.vllm.frontend=async_llm: vLLM {vllm_version} offers neither weight_versions labels nor "
            "engine-core output timestamps, so per-token versions could not be exact; use frontend auto or stepped"
        )
    return FrontendChoice("stepped", "weight_versions",
                          f"vLLM {vllm_version} offers no exact version bookkeeping for AsyncLLM; the in-process "
                          "stepped frontend labels each step itself")


def resolve_frontend(requested: str) -> FrontendChoice:
    """``choose_frontend`` for the installed vLLM; logs the choice."""
    import vllm
    from vllm.v1.engine.async_llm import AsyncLLM
    from vllm.v1.engine.output_processor import OutputProcessor

    choice = choose_frontend(requested, vllm.__version__, *version_capabilities(AsyncLLM, OutputProcessor))
    log.info("vLLM frontend %s, versions %s: %s", choice.frontend, choice.versions, choice.reason)
    return choice


def build_async_llm(kwargs: dict[str, Any], vcfg: Any = None) -> Any:
    """``AsyncLLM`` (engine core in a child process) from engine-argument fields (``vcfg``: the builders'
    common signature; nothing in ``rollout.vllm`` beyond the engine arguments acts on it)."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.v1.engine.async_llm import AsyncLLM

    return AsyncLLM.from_engine_args(AsyncEngineArgs(**kwargs))


def build_stepped(kwargs: dict[str, Any], vcfg: Any = None) -> Any:
    """``SteppedLLM`` (in-process ``LLMEngine``) from engine-argument fields and ``rollout.vllm`` (its
    ``stream_interval``; None: every step)."""
    from vllm.engine.arg_utils import EngineArgs

    from zaya_rl.rollout.vllm_stepped import SteppedLLM

    return SteppedLLM.from_engine_args(EngineArgs(**kwargs), 1 if vcfg is None else vcfg.stream_interval)


#: ``FrontendChoice.frontend`` -> builder of the AsyncLLM-like object from engine kwargs and ``rollout.vllm``.
FRONTENDS = {"async_llm": build_async_llm, "stepped": build_stepped}
