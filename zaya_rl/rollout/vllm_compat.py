"""Fixes for released vLLMs, each applied only where a behaviour probe finds the bug in the installed one.

**Routed experts lost when streamed outputs merge** (``keep_routes_in_merged_outputs``). ``AsyncLLM`` hands a
request's DELTA outputs to its consumer through a ``RequestOutputCollector``; when the engine gets ahead of
the consumer, the collector merges the pending output with the next one (``RequestOutput.add(next,
aggregate=True)``). vLLM 0.24's ``add`` appends token ids and log-probs and takes the finish reason, but not
``routed_experts``, which only the final output carries: whenever the final output was merged into a pending
one, the request came back with no routes at all (``NO_ROUTE`` rows, native routing in the trainer). Seen on
an H100 on 2026-12-07 (tiny Qwen3-MoE, router replay, the default ``async_llm`` frontend): ``replay/coverage``
per step anywhere between 0.004 and 1.0 over 22 async and 10 sync steps, and
``tests/gpu/test_vllm_engine_gpu.py::test_routes_and_logprobs_match_the_trainer`` failing on ``NO_ROUTE``
rows. vLLM 0.32's ``add`` keeps them ("R3 is returned on the terminal output and must survive aggregation",
``vllm/outputs.py``); the patch does the same for releases without it. The ``stepped`` frontend reads
``LLMEngine.step`` outputs unmerged and never lost them.

Test: ``python -m pytest tests/rollout/test_vllm_compat.py -q``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: Attribute that marks ``RequestOutput.add`` as already wrapped by ``keep_routes_in_merged_outputs``.
_PATCHED = "_zaya_keeps_routes"


def merges_drop_routes(request_output_cls: Any, completion_cls: Any) -> bool:
    """Whether ``request_output_cls.add(next, aggregate=True)`` loses the final output's ``routed_experts``."""
    import numpy as np

    def output(finished: bool, routes: Any) -> Any:
        completion = completion_cls(index=0, text="", token_ids=[1], cumulative_logprob=None, logprobs=None)
        completion.routed_experts = routes
        return request_output_cls(request_id="probe", prompt=None, prompt_token_ids=[0], prompt_logprobs=None,
                                  outputs=[completion], finished=finished)

    pending = output(False, None)
    pending.add(output(True, np.zeros((1, 1, 1), dtype=np.int16)), aggregate=True)
    return pending.outputs[0].routed_experts is None


def _keeping_routes(add: Callable[..., None]) -> Callable[..., None]:
    """``RequestOutput.add`` that also moves a merged completion's ``routed_experts`` onto the pending one."""

    @functools.wraps(add)
    def merged(self: Any, next_output: Any, aggregate: bool) -> None:
        add(self, next_output, aggregate)
        if not aggregate:  # the pending completions were replaced by the next ones, routes included
            return
        for nxt in next_output.outputs:
            if getattr(nxt, "routed_experts", None) is None:
                continue
            for completion in self.outputs:
                if completion.index == nxt.index:
                    completion.routed_experts = nxt.routed_experts
                    break

    setattr(merged, _PATCHED, True)
    return merged


def keep_routes_in_merged_outputs(request_output_cls: Any = None, completion_cls: Any = None) -> bool:
    """Make merged streamed outputs keep their routed experts (module docstring); True if a patch was applied.

    Defaults to the installed ``vllm.outputs`` classes. Idempotent; a vLLM that already keeps them is left as is.
    """
    if request_output_cls is None or completion_cls is None:
        from vllm.outputs import CompletionOutput, RequestOutput

        request_output_cls, completion_cls = RequestOutput, CompletionOutput
    if getattr(request_output_cls.add, _PATCHED, False):
        return False
    try:
        drops = merges_drop_routes(request_output_cls, completion_cls)
    except Exception as e:  # noqa: BLE001 - a vLLM whose classes the probe cannot build must still serve
        log.warning("could not probe vLLM's RequestOutput.add (%s: %s); if it drops routed_experts when streamed "
                    "outputs merge, replay/coverage will show it", type(e).__name__, e)
        return False
    if not drops:
        return False
    request_output_cls.add = _keeping_routes(request_output_cls.add)
    log.info("vLLM's RequestOutput.add drops routed_experts when streamed outputs merge; patched to keep them")
    return True
