"""python -m pytest tests/rollout/test_fake.py -q"""

from __future__ import annotations

import asyncio

import pytest

from zaya_rl.models.tokenizer import build_byte_tokenizer
from zaya_rl.rollout.base import CanarySpec, GenerationRequest, SamplingParams, run_requests
from zaya_rl.rollout.fake import ScriptedEngine


def _echo_plus_one(prompt):
    return [t + 1 for t in prompt] + [258]


def _req(rid, prompt, max_new=32, **kw):
    return GenerationRequest(rid, prompt, SamplingParams(max_new_tokens=max_new, **kw))


def test_scripted_completion_with_stop_and_length():
    engine = ScriptedEngine(_echo_plus_one, routing=(2, 1, 8))
    stop, length = run_requests(
        engine, [_req("a", [1, 2, 3], stop_token_ids=(258,)), _req("b", [5, 6, 7], max_new=2)]
    )
    assert stop.token_ids == [2, 3, 4, 258] and stop.finish_reason == "stop"
    assert length.token_ids == [6, 7] and length.finish_reason == "length"
    assert stop.logprobs == pytest.approx([-0.3, -0.4, -0.5, -0.4])  # -0.1 * (1 + token % 5)
    assert stop.routed_experts.shape == (3 + 4 - 1, 2, 1)
    assert stop.routed_experts[5, 1, 0] == (5 + 1) % 8
    assert engine.requests_seen == ["a", "b"]


def test_versions_span_an_update_and_updates_are_recorded():
    engine = ScriptedEngine(lambda p: list(range(10)), token_delay=0.001)

    async def scenario():
        task = asyncio.create_task(engine.generate(_req("a", [1])))
        await asyncio.sleep(0.004)
        await engine.update_weights({"w": object(), "b": object()}, version=3)
        return await task

    r = asyncio.run(scenario())
    assert r.versions[0] == 0 and r.versions[-1] == 3
    assert r.versions == sorted(r.versions) and set(r.versions) == {0, 3}
    assert engine.weight_updates == [(3, ["w", "b"])] and engine.version == 3


def test_abort_returns_the_partial_completion():
    engine = ScriptedEngine(lambda p: list(range(1000)))

    async def scenario():
        task = asyncio.create_task(engine.generate(_req("a", [1], max_new=1000)))
        for _ in range(5):
            await asyncio.sleep(0)
        await engine.abort("a")
        return await task

    r = asyncio.run(scenario())
    assert r.finish_reason == "abort" and 0 < len(r.token_ids) < 1000


def test_canary_plumbing_flags_a_scripted_loop():
    engine = ScriptedEngine(lambda p: list(b"ab" * 200), tokenizer=build_byte_tokenizer())
    canary = CanarySpec(threshold=0.3, patience=2, chunk_bytes=64)
    r = run_requests(
        engine, [GenerationRequest("loop", [1], SamplingParams(max_new_tokens=400), canary=canary)]
    )[0]
    assert r.finish_reason == "degenerate" and len(r.token_ids) == 128
    assert len(r.canary_ratios) == 2


def test_canary_without_tokenizer_is_an_error():
    engine = ScriptedEngine(_echo_plus_one)
    with pytest.raises(ValueError, match="'x' has a canary"):
        run_requests(
            engine, [GenerationRequest("x", [1], SamplingParams(max_new_tokens=2), canary=CanarySpec())]
        )
