"""``zaya_rl.rollout.vllm_compat``: merged streamed outputs keep their routed experts.

python -m pytest tests/rollout/test_vllm_compat.py -q

The stand-in classes below behave as vLLM 0.24's ``RequestOutput.add`` does (token ids and log-probs
appended, finish reason taken, ``routed_experts`` of the merged completion not taken) or as 0.32's (taken);
the last test probes the vLLM installed here, if any.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from zaya_rl.rollout.vllm_compat import keep_routes_in_merged_outputs, merges_drop_routes


@dataclass
class Completion:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: list[Any] | None
    routed_experts: np.ndarray | None = None
    finish_reason: str | None = None


def output_classes(keeps_routes: bool):
    """A fresh ``RequestOutput`` stand-in (patching one must not leak into another test)."""

    @dataclass
    class Output:
        request_id: str
        prompt: str | None
        prompt_token_ids: list[int] | None
        prompt_logprobs: Any
        outputs: list[Completion] = field(default_factory=list)
        finished: bool = False

        def add(self, next_output: Output, aggregate: bool) -> None:
            self.finished |= next_output.finished
            for nxt in next_output.outputs:
                for i, c in enumerate(self.outputs):
                    if c.index == nxt.index:
                        if aggregate:
                            c.text += nxt.text
                            c.token_ids.extend(nxt.token_ids)
                            c.finish_reason = nxt.finish_reason
                            if keeps_routes and nxt.routed_experts is not None:
                                c.routed_experts = nxt.routed_experts
                        else:
                            self.outputs[i] = nxt
                        break
                else:
                    self.outputs.append(nxt)

    return Output


def _out(cls, tokens, *, finished=False, routes=None, index=0):
    c = Completion(index, "", list(tokens), None, None, routes, "length" if finished else None)
    return cls("r", None, [5, 6], None, [c], finished)


def test_the_probe_tells_a_release_that_drops_routes_from_one_that_keeps_them():
    assert merges_drop_routes(output_classes(keeps_routes=False), Completion)
    assert not merges_drop_routes(output_classes(keeps_routes=True), Completion)


def test_after_the_patch_a_final_output_merged_into_a_pending_delta_keeps_its_routes():
    cls = output_classes(keeps_routes=False)
    routes = np.arange(12, dtype=np.int16).reshape(3, 2, 2)
    pending = _out(cls, [1])
    pending.add(_out(cls, [2, 3], finished=True, routes=routes), aggregate=True)
    assert pending.outputs[0].routed_experts is None  # the bug, as vLLM 0.24 has it

    assert keep_routes_in_merged_outputs(cls, Completion) is True
    pending = _out(cls, [1])
    pending.add(_out(cls, [2], routes=None), aggregate=True)  # a middle delta: no routes, none invented
    assert pending.outputs[0].routed_experts is None
    pending.add(_out(cls, [3], finished=True, routes=routes), aggregate=True)
    c = pending.outputs[0]
    assert c.token_ids == [1, 2, 3] and c.finish_reason == "length" and pending.finished
    assert c.routed_experts is routes
    # a merge with another completion index must not touch this one
    other = _out(cls, [9], finished=True, routes=routes + 1, index=1)
    pending.add(other, aggregate=True)
    assert pending.outputs[0].routed_experts is routes and pending.outputs[1].routed_experts is other.outputs[0].routed_experts


def test_the_patch_is_applied_once_and_leaves_non_aggregating_merges_alone():
    cls = output_classes(keeps_routes=False)
    assert keep_routes_in_merged_outputs(cls, Completion) is True
    wrapped = cls.add
    assert keep_routes_in_merged_outputs(cls, Completion) is False and cls.add is wrapped
    pending = _out(cls, [1], routes=np.zeros((1, 1, 1), dtype=np.int16))
    nxt = _out(cls, [1, 2], finished=True, routes=None)
    pending.add(nxt, aggregate=False)  # CUMULATIVE/FINAL_ONLY: the next completion replaces the pending one
    assert pending.outputs[0] is nxt.outputs[0] and pending.outputs[0].routed_experts is None


def test_a_release_that_keeps_routes_is_not_patched():
    cls = output_classes(keeps_routes=True)
    add = cls.add
    assert keep_routes_in_merged_outputs(cls, Completion) is False and cls.add is add


def test_a_release_the_probe_cannot_build_is_left_alone_with_a_warning(caplog):
    class Unbuildable:
        def __init__(self, *args, new_required_field, **kwargs):  # a constructor the probe does not know
            pass

        def add(self, next_output, aggregate):
            pass

    add = Unbuildable.add
    with caplog.at_level("WARNING", logger="zaya_rl.rollout.vllm_compat"):
        assert keep_routes_in_merged_outputs(Unbuildable, Completion) is False
    assert Unbuildable.add is add and "could not probe" in caplog.text


@pytest.mark.vllm
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed")
def test_the_probe_runs_on_the_installed_vllm():
    import vllm
    from vllm.outputs import CompletionOutput, RequestOutput

    drops = merges_drop_routes(RequestOutput, CompletionOutput)
    assert keep_routes_in_merged_outputs() is drops
    assert not merges_drop_routes(RequestOutput, CompletionOutput)
    if tuple(int(x) for x in vllm.__version__.split(".")[:2]) >= (0, 32):  # its vllm/outputs.py keeps them
        assert not drops
