"""Per-token version bookkeeping and the frontend choice, without vLLM (fake output processors and classes).

python -m pytest tests/rollout/test_vllm_versions.py -q

The real engine checks the same exactness end to end: tests/rollout/test_vllm_real_cpu.py.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from zaya_rl.config import ConfigError
from zaya_rl.rollout.vllm_frontend import choose_frontend, version_capabilities
from zaya_rl.rollout.vllm_versions import CoreTimestamps, WeightVersionSpans, spans_to_versions


def test_spans_to_versions_covers_every_token_or_says_which_is_missing():
    spans = [SimpleNamespace(version="4", start=0, end=2), ("5", 2, 9)]
    assert spans_to_versions(spans, 5, "r") == [4, 4, 5, 5, 5]  # spans past the kept tokens (canary) are cut
    with pytest.raises(RuntimeError, match=r"request 'r'.*tokens \[2, 3\]"):
        spans_to_versions([("1", 0, 2)], 4, "r")
    with pytest.raises(RuntimeError, match="'default', not a policy version"):
        spans_to_versions([("default", 0, 3)], 3, "r")


def test_weight_version_spans_read_the_final_output():
    book = WeightVersionSpans()
    final = SimpleNamespace(weight_versions=[("0", 0, 3), ("1", 3, 4)])
    assert book.versions("r", final, 4) == [0, 0, 0, 1]
    assert book.versions("r", None, 0) == []
    with pytest.raises(RuntimeError, match="no weight_versions"):
        book.versions("r", SimpleNamespace(), 2)


class _Processor:
    """vLLM's OutputProcessor as the timestamp book sees it: ``request_states`` (internal id -> state with
    ``external_req_id``) and ``process_outputs(outputs, engine_core_timestamp, iteration_stats)``."""

    def __init__(self) -> None:
        self.request_states = {"a-int": SimpleNamespace(external_req_id="a"),
                               "b-int": SimpleNamespace(external_req_id="b")}
        self.processed: list[float] = []

    def process_outputs(self, engine_core_outputs, engine_core_timestamp=None, iteration_stats=None):
        self.processed.append(engine_core_timestamp)
        return "processed"


def _batch(*pairs):
    return [SimpleNamespace(request_id=rid, new_token_ids=list(range(n))) for rid, n in pairs]


def test_core_timestamps_split_a_lagging_stream_at_the_pause():
    """The frontend processes every batch *after* the update (a backlog), yet each token gets the version of
    the weights that computed it: batches stamped before the boundary are v0, after it v1."""
    processor = _Processor()
    llm = SimpleNamespace(output_processor=processor)
    now = [0.0]
    book = CoreTimestamps(clock=lambda: now[0])
    asyncio.run(book.start(llm, 0))
    # core: three batches at t = 1, 2, 3; pause; load; boundary at t = 3.5; resume; batches at t = 4, 5
    now[0] = 3.5
    asyncio.run(book.set_version(llm, 1))
    for t, batch in [(1.0, _batch(("a-int", 1), ("b-int", 1))), (2.0, _batch(("a-int", 2))),
                     (3.0, _batch(("b-int", 1), ("gone", 3))), (4.0, _batch(("a-int", 1), ("b-int", 2))),
                     (5.0, _batch(("a-int", 1), ("b-int", 0)))]:
        assert processor.process_outputs(batch, t, None) == "processed"  # vLLM's own processing still runs
    assert processor.processed == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert book.versions("a", None, 5) == [0, 0, 0, 1, 1]
    assert book.versions("b", None, 4) == [0, 0, 1, 1]
    assert book.versions("a", None, 2) == [0, 0]  # a canary stop keeps a prefix
    book.release("a")
    with pytest.raises(RuntimeError, match="no weight version recorded"):
        book.versions("a", None, 1)


def test_core_timestamps_need_the_timestamped_output_processor():
    class Old:
        def process_outputs(self, engine_core_outputs):
            return None

    with pytest.raises(RuntimeError, match="rollout.vllm.frontend: stepped"):
        asyncio.run(CoreTimestamps().start(SimpleNamespace(output_processor=Old()), 0))


class _LLM032:
    async def update_weight_version(self, v): ...


class _LLM024:
    pass


def test_capabilities_and_choice():
    assert version_capabilities(_LLM032, _Processor) == (True, True)
    assert version_capabilities(_LLM024, _Processor) == (False, True)
    assert version_capabilities(_LLM024, object) == (False, False)
    pick = choose_frontend
    assert (pick("auto", "0.32.0", True, True).frontend, pick("auto", "0.32.0", True, True).versions) == (
        "async_llm", "weight_versions")
    assert (pick("auto", "0.24.0", False, True).frontend, pick("auto", "0.24.0", False, True).versions) == (
        "async_llm", "core_timestamps")
    assert pick("auto", "x", False, False).frontend == "stepped"
    assert pick("stepped", "0.32.0", True, True).frontend == "stepped"
    assert pick("async_llm", "0.24.0", False, True).versions == "core_timestamps"
    assert "0.24.0" in pick("auto", "0.24.0", False, True).reason
    with pytest.raises(ConfigError, match="rollout.vllm.frontend=async_llm"):
        pick("async_llm", "x", False, False)
