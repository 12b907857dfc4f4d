"""``VLLMEngine``'s own logic on CPU with a fake AsyncLLM (no vLLM needed).

python -m pytest tests/rollout/test_vllm_engine_cpu.py -q

Covers: DELTA streaming into tokens / processed log-probs / versions, stop and length, the canary abort,
routed-experts conversion (MoE-layer subset, int16, NO_ROUTE padding), pause → load → resume ordering and
per-token versions across an in-flight update, the state-dict / file / NCCL receive paths, ``abort``,
the ZAYA error, engine arguments, and ``SteppedLLM`` over a fake in-process ``LLMEngine``.
"""

from __future__ import annotations

import asyncio
import sys
import types
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests.rollout.fake_async_llm import FakeAsyncLLM, logprob_of
from zaya_rl.config import ConfigError, config_from_dict
from zaya_rl.rollout.base import NO_ROUTE, CanarySpec, GenerationRequest, SamplingParams
from zaya_rl.rollout.vllm_convert import moe_layer_indices, routed_experts_from_vllm
from zaya_rl.rollout.vllm_engine import RoutingSpec, VLLMEngine
from zaya_rl.weights.base import WeightUpdate
from zaya_rl.weights.buckets import TensorMeta

EOS = 7


def _engine(llm, **kw) -> VLLMEngine:
    from zaya_rl.models.tokenizer import build_byte_tokenizer

    return VLLMEngine(llm, build_byte_tokenizer(), make_params=lambda p: p, **kw)


def _req(rid="r0", prompt=(1, 2, 3), max_new=10, stop=(EOS,), canary=None) -> GenerationRequest:
    return GenerationRequest(rid, list(prompt), SamplingParams(max_new_tokens=max_new, stop_token_ids=stop), canary)


@pytest.fixture
def vllm_stub(monkeypatch):
    """The two request classes of ``vllm.distributed.weight_transfer.base``, without vLLM."""

    @dataclass
    class WeightTransferUpdateRequest:
        update_info: dict = field(default_factory=dict)

    @dataclass
    class WeightTransferInitRequest:
        init_info: dict = field(default_factory=dict)

    mod = types.ModuleType("vllm.distributed.weight_transfer.base")
    mod.WeightTransferUpdateRequest, mod.WeightTransferInitRequest = WeightTransferUpdateRequest, WeightTransferInitRequest
    for name in ("vllm", "vllm.distributed", "vllm.distributed.weight_transfer"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "vllm.distributed.weight_transfer.base", mod)
    return mod


def test_streaming_tokens_logprobs_versions_and_stop():
    llm = FakeAsyncLLM(lambda ids: [10, 11, 12, EOS, 13], chunk=2)
    res = asyncio.run(_engine(llm).generate(_req()))
    assert res.token_ids == [10, 11, 12, EOS]  # the stop token is kept, nothing after it
    assert res.logprobs == pytest.approx([logprob_of(i) for i in range(4)])
    assert res.versions == [0, 0, 0, 0] and res.finish_reason == "stop"
    assert res.routed_experts is None  # no RoutingSpec: recording off


def test_length_finish_and_routed_experts_subset():
    llm = FakeAsyncLLM(lambda ids: list(range(20, 40)), chunk=3, num_layers=3, top_k=2, num_experts=8)
    eng = _engine(llm, routing=RoutingSpec(layers=(0, 2), top_k=2))
    res = asyncio.run(eng.generate(_req(max_new=5)))
    assert res.finish_reason == "length" and len(res.token_ids) == 5
    r = res.routed_experts
    assert r.dtype == np.int16 and r.shape == (3 + 5 - 1, 2, 2)
    # row i, kept layer l in {0, 2}, slot k -> (i + l + k) % 8 (the fake's formula)
    assert r[6, 1, 1] == (6 + 2 + 1) % 8 and r[0, 0, 0] == 0 and r[4, 0, 1] == 5


def test_routed_experts_conversion_pads_and_cuts():
    raw = np.arange(4 * 3 * 1, dtype=np.uint8).reshape(4, 3, 1)
    short = routed_experts_from_vllm(raw, prompt_len=3, num_generated=4, moe_layers=[1, 2], top_k=1)
    assert short.shape == (6, 2, 1) and short[:4, :, 0].tolist() == [[1, 2], [4, 5], [7, 8], [10, 11]]
    assert (short[4:] == NO_ROUTE).all()
    cut = routed_experts_from_vllm(raw, prompt_len=2, num_generated=1, moe_layers=[0], top_k=1)
    assert cut.tolist() == [[[0]], [[3]]]
    assert (routed_experts_from_vllm(None, 2, 0, [0, 1], 2) == NO_ROUTE).all()
    with pytest.raises(ValueError, match="routed_experts from vLLM"):
        routed_experts_from_vllm(raw, 3, 2, [3], 1)  # layer 3 of a 3-layer array


def test_canary_aborts_early_with_degenerate():
    from zaya_rl.canary import CompressibilityCanary

    # "aaaa..." compresses to almost nothing: the canary flags once `patience` 64-byte chunks are below 0.3.
    ref = CompressibilityCanary(0.3, 2, 64)
    flag_at = next(i for i in range(400) if ref.feed("a"))  # index of the token that completes the flag
    llm = FakeAsyncLLM(lambda ids: [ord("a")] * 400, chunk=5)
    eng = _engine(llm, routing=RoutingSpec(layers=(0, 1, 2), top_k=2))
    res = asyncio.run(eng.generate(_req(max_new=400, canary=CanarySpec(threshold=0.3, patience=2, chunk_bytes=64))))
    assert res.finish_reason == "degenerate"
    assert len(res.token_ids) == flag_at + 1  # the flagging token is kept, the rest of its delta dropped
    assert ("abort", "r0") in llm.calls and res.canary_ratios == ref.ratios
    assert res.routed_experts.shape == (3 + len(res.token_ids) - 1, 3, 2)


def test_abort_returns_partial_result():
    llm = FakeAsyncLLM(lambda ids: list(range(20, 60)), chunk=1)
    eng = _engine(llm)

    async def run():
        task = asyncio.create_task(eng.generate(_req(max_new=40)))
        while llm.chunks_sent < 3:
            await asyncio.sleep(0)
        await eng.abort("r0")
        return await task

    res = asyncio.run(run())
    assert res.finish_reason == "abort" and 3 <= len(res.token_ids) < 40


def _state(v: float) -> dict[str, torch.Tensor]:
    return {"a.weight": torch.full((2, 3), v), "b.bias": torch.full((4,), v)}


@pytest.mark.parametrize("in_process", [True, False])
def test_inflight_update_orders_pause_load_resume_and_tags_versions(in_process, tmp_path):
    llm = FakeAsyncLLM(lambda ids: list(range(20, 40)), chunk=1)
    eng = _engine(llm, in_process=in_process, shm_dir=str(tmp_path))

    async def run():
        task = asyncio.create_task(eng.generate(_req(max_new=20, stop=())))
        while llm.chunks_sent < 5:
            await asyncio.sleep(0)
        await eng.update_weights(_state(1.0), version=3)
        return await task

    res = asyncio.run(run())
    assert llm.calls == [("label", "0"), ("pause", "keep", False), ("rpc", "reload_weights"), ("label", "3"),
                         ("resume",)]
    assert llm.loaded == [("iterator" if in_process else "path", ["a.weight", "b.bias"])]
    boundary = res.versions.index(3)
    assert 5 <= boundary < 20 and set(res.versions[:boundary]) == {0} and set(res.versions[boundary:]) == {3}
    assert eng.version == 3 and list(tmp_path.iterdir()) == []  # the scratch folder is removed


def test_file_update_reloads_folder(tmp_path):
    from zaya_rl.weights.files import write_folder

    metas = write_folder(_state(2.0).items(), tmp_path / "v1", bucket_bytes=16)
    llm = FakeAsyncLLM(lambda ids: [1])
    timings = asyncio.run(_engine(llm).apply_update(WeightUpdate(1, "file", tuple(metas), str(tmp_path / "v1"))))
    assert llm.loaded == [("path", ["a.weight", "b.bias"])] and set(timings) >= {"pause_s", "load_s", "resume_s"}


def test_native_nccl_update_sends_metadata_in_one_session(vllm_stub):
    llm = FakeAsyncLLM(lambda ids: [1])
    metas = (TensorMeta("x.weight", "bfloat16", (4, 8)), TensorMeta("y", "float32", (3,)))
    packing = {"packed": True, "packed_buffer_size_bytes": 1024, "packed_num_buffers": 2}
    asyncio.run(_engine(llm).apply_update(WeightUpdate(5, "nccl", metas, packing)))
    kinds = [c[0] for c in llm.calls]
    assert kinds == ["label", "pause", "start_weight_update", "update_weights", "finish_weight_update", "label",
                     "resume"]
    info = llm.calls[3][1]
    assert info == {"names": ["x.weight", "y"], "dtype_names": ["bfloat16", "float32"], "shapes": [[4, 8], [3]],
                    **packing}


def test_init_weight_receiver_forwards_init_info(vllm_stub):
    llm = FakeAsyncLLM(lambda ids: [1])
    info = {"master_address": "10.0.0.1", "master_port": 1234, "rank_offset": 2, "world_size": 3}
    asyncio.run(_engine(llm).init_weight_receiver(info))
    assert llm.calls == [("init_weight_transfer_engine", info)]


def test_unknown_transport_is_rejected():
    with pytest.raises(ValueError, match="unknown weight transport 'carrier-pigeon'"):
        asyncio.run(_engine(FakeAsyncLLM(lambda ids: [1])).apply_update(WeightUpdate(1, "carrier-pigeon", ())))


def test_moe_layer_indices_match_the_torch_routers():
    from transformers import Qwen3MoeConfig

    from zaya_rl.models.policy import build_preset
    from zaya_rl.models.router_replay import moe_routers

    cfg = Qwen3MoeConfig(num_hidden_layers=6, num_experts=4, mlp_only_layers=[1], decoder_sparse_step=2)
    assert moe_layer_indices(cfg) == [3, 5]  # (i + 1) % 2 == 0 -> 1, 3, 5; minus mlp_only 1
    assert moe_layer_indices(SimpleNamespace(model_type="llama", num_hidden_layers=4)) is None
    ds = SimpleNamespace(model_type="deepseek_v3", num_hidden_layers=5, n_routed_experts=8, first_k_dense_replace=2)
    assert moe_layer_indices(ds) == [2, 3, 4]
    model, _ = build_preset("tiny-qwen3moe")
    assert len(moe_layer_indices(model.config)) == len(moe_routers(model))


def _fake_vllm_registry(monkeypatch, archs):
    vllm = types.ModuleType("vllm")
    vllm.ModelRegistry = SimpleNamespace(get_supported_archs=lambda: set(archs))
    plugins = types.ModuleType("vllm.plugins")
    plugins.load_general_plugins = lambda: None
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.plugins", plugins)


def test_zaya_on_vllm_is_a_clear_error(monkeypatch):
    from zaya_rl.rollout.vllm_build import check_vllm_supports

    _fake_vllm_registry(monkeypatch, {"Qwen3MoeForCausalLM"})
    with pytest.raises(ConfigError, match=r"ZayaForCausalLM.*rollout.engine=torch.*docs/zaya_vllm_plugin.md"):
        check_vllm_supports(config_from_dict({"model": {"preset": "tiny-zaya"}, "rollout": {"engine": "vllm"}}))
    check_vllm_supports(config_from_dict({"model": {"preset": "tiny-qwen3moe"}, "rollout": {"engine": "vllm"}}))


def test_engine_kwargs_processed_logprobs_routing_and_transfer_backend():
    from zaya_rl.rollout.vllm_build import engine_kwargs

    cfg = config_from_dict({"model": {"preset": "tiny-qwen3moe", "dtype": "bfloat16"},
                            "rollout": {"engine": "vllm", "vllm": {"enable_prefix_caching": False,
                                                                   "engine_kwargs": {"max_num_batched_tokens": 512}}},
                            "weight_sync": {"transport": "nccl"}})
    kw = engine_kwargs(cfg, "/m", routed=True)
    assert kw["logprobs_mode"] == "processed_logprobs" and kw["enable_return_routed_experts"]
    assert kw["enable_prefix_caching"]  # routed experts need it, whatever the config says
    assert kw["weight_transfer_config"] == {"backend": "nccl"} and kw["max_num_batched_tokens"] == 512
    assert kw["dtype"] == "bfloat16" and kw["max_num_seqs"] == cfg.rollout.max_batch_size
    # enforce_eager unset: CUDA graphs on a GPU, eager on a CPU-only vLLM; an explicit value wins on both
    assert kw["enforce_eager"] is False and engine_kwargs(cfg, "/m", routed=True, on_cpu=True)["enforce_eager"] is True
    eager = config_from_dict({"model": {"preset": "tiny-qwen3moe"},
                              "rollout": {"engine": "vllm", "vllm": {"enforce_eager": True}}})
    assert engine_kwargs(eager, "/m", routed=False)["enforce_eager"] is True
    graphs = config_from_dict({"model": {"preset": "tiny-qwen3moe"},
                               "rollout": {"engine": "vllm", "vllm": {"enforce_eager": False}}})
    assert engine_kwargs(graphs, "/m", routed=False, on_cpu=True)["enforce_eager"] is False


class _FakeLLMEngine:
    """In-process ``LLMEngine`` stand-in: each ``step`` emits one token per request (``length`` in all; token
    ``i`` is ``token(i)``, its log-prob ``-i / 10``)."""

    def __init__(self, length: int = 4, token=lambda i: 100 + i) -> None:
        self.length, self.token = length, token
        self.reqs: dict[str, list[int]] = {}
        self.steps = 0
        self.output_processor = SimpleNamespace(
            external_req_ids={}, request_states={})

    def add_request(self, rid, prompt, params):
        self.reqs[rid] = []
        self.output_processor.external_req_ids[rid] = [rid + "-x"]
        self.output_processor.request_states[rid + "-x"] = SimpleNamespace(
            routed_experts_chunks=[np.zeros((2, 1, 1), np.uint8)])

    def step(self):
        self.steps += 1
        outs = []
        for rid, toks in list(self.reqs.items()):
            toks.append(self.token(len(toks)))
            done = len(toks) == self.length
            lp = [{toks[-1]: SimpleNamespace(logprob=-(len(toks) - 1) / 10)}]
            outs.append(SimpleNamespace(request_id=rid, finished=done, outputs=[SimpleNamespace(
                token_ids=[toks[-1]], logprobs=lp, finish_reason="length" if done else None, routed_experts=None)]))
            if done:
                del self.reqs[rid]
        return outs

    def abort_request(self, ids):
        for rid in ids:
            self.reqs.pop(rid, None)

    def collective_rpc(self, method, timeout, args, kwargs):
        return ["ok"]


def test_stepped_llm_streams_pauses_and_aborts():
    from zaya_rl.rollout.vllm_stepped import Span, SteppedLLM

    core = _FakeLLMEngine()
    llm = SteppedLLM(core)

    async def run():
        async def collect(rid):
            return [o async for o in llm.generate({"prompt_token_ids": [1]}, None, rid)]

        await llm.update_weight_version("0")
        a = asyncio.create_task(collect("a"))
        while core.steps < 1:
            await asyncio.sleep(0)
        await llm.pause_generation(mode="keep")
        frozen = core.steps
        for _ in range(20):
            await asyncio.sleep(0)
        assert core.steps == frozen  # keep: no step while paused
        await llm.update_weight_version("1")
        await llm.resume_generation()
        outs_a = await a
        b = asyncio.create_task(collect("b"))
        while core.steps < frozen + 5:
            await asyncio.sleep(0)
        await llm.abort("b")
        return outs_a, await b

    outs_a, outs_b = asyncio.run(run())
    assert [o.outputs[0].token_ids[0] for o in outs_a] == [100, 101, 102, 103] and outs_a[-1].finished
    assert outs_a[-1].outputs[0].weight_versions == [Span("0", 0, 1), Span("1", 1, 4)]
    assert outs_b[-1].outputs[0].finish_reason == "abort" and outs_b[-1].outputs[0].routed_experts.shape == (2, 1, 1)
    n_b = sum(len(o.outputs[0].token_ids) for o in outs_b)
    assert n_b >= 1 and outs_b[-1].outputs[0].weight_versions == [Span("1", 0, n_b)]


def test_stepped_versions_are_booked_at_step_time_not_when_consumed():
    """An update that runs right after a step, before the streams took that step's tokens from their
    queues: those tokens were sampled with the old weights and must keep the old version."""
    from zaya_rl.rollout.vllm_stepped import SteppedLLM

    core = _FakeLLMEngine()
    llm = SteppedLLM(core)
    eng = _engine(llm, in_process=True)
    original_step = core.step

    def step_then_update():
        outs = original_step()
        if core.steps == 2:  # queue the update so it runs before the consumers wake up
            asyncio.get_running_loop().create_task(eng.update_weights(_state(1.0), version=1))
        return outs

    core.step = step_then_update
    res = asyncio.run(eng.generate(_req(max_new=4, stop=())))
    assert res.token_ids == [100, 101, 102, 103] and res.versions == [0, 0, 1, 1]


def test_failed_load_resumes_generation_and_keeps_the_version(tmp_path):
    llm = FakeAsyncLLM(lambda ids: [1, 2])

    async def broken(*a, **k):
        raise OSError("disk full")

    llm.collective_rpc = broken
    eng = _engine(llm, shm_dir=str(tmp_path))
    with pytest.raises(OSError, match="disk full"):
        asyncio.run(eng.update_weights(_state(1.0), version=6))
    assert llm.calls[-1] == ("resume",) and ("label", "6") not in llm.calls and eng.version == 0


def test_state_dict_is_written_before_generation_pauses(tmp_path):
    """Out of process, a state dict becomes a safetensors folder while the engine still generates; the
    pause covers vLLM's reload only."""
    from zaya_rl.weights.flat import HostStager

    llm = FakeAsyncLLM(lambda ids: [1, 2])
    seen_at_pause = []
    pause = llm.pause_generation

    async def recording_pause(**kw):
        seen_at_pause.append(sorted(p.name for p in tmp_path.glob("engine-*/*")))
        await pause(**kw)

    llm.pause_generation = recording_pause
    flat = HostStager().stage(_state(2.0).items())
    asyncio.run(_engine(llm, shm_dir=str(tmp_path)).update_weights(flat, version=1))
    assert seen_at_pause == [["model-00000.safetensors"]] and llm.loaded == [("path", ["a.weight", "b.bias"])]
    assert list(tmp_path.iterdir()) == []  # removed after the load


def test_a_finished_request_without_routes_gets_no_route_rows_and_one_warning(caplog):
    """vLLM 0.24 returned finished outputs without ``routed_experts`` (``vllm_compat``): the engine must say so."""
    llm = FakeAsyncLLM(lambda ids: list(range(20, 40)), chunk=3)
    stream = llm.generate

    async def without_routes(*args, **kwargs):
        async for out in stream(*args, **kwargs):
            if out.finished:
                out.outputs[0].routed_experts = None
            yield out

    llm.generate = without_routes
    eng = _engine(llm, routing=RoutingSpec(layers=(0, 2), top_k=2))
    with caplog.at_level("WARNING", logger="zaya_rl.rollout.vllm_engine"):
        a = asyncio.run(eng.generate(_req("a", max_new=4)))
        b = asyncio.run(eng.generate(_req("b", max_new=4)))
    for r in (a, b):
        assert r.routed_experts.shape == (3 + 4 - 1, 2, 2) and (r.routed_experts == NO_ROUTE).all()
    warnings = [m for m in caplog.messages if "no routed experts" in m]
    assert len(warnings) == 1 and "request a" in warnings[0]


def _stepped_stream(core, stream_interval: int, n: int = 1):
    """Every output each of ``n`` requests' consumers took from a ``SteppedLLM`` over ``core``."""
    from zaya_rl.rollout.vllm_stepped import SteppedLLM

    llm = SteppedLLM(core, stream_interval=stream_interval)

    async def run():
        async def collect(rid):
            return [o async for o in llm.generate({"prompt_token_ids": [1]}, None, rid)]

        return await asyncio.gather(*(collect(f"r{i}") for i in range(n)))

    return asyncio.run(run())


@pytest.mark.parametrize("interval", [1, 3, 4, 10, 11])
def test_stepped_stream_interval_hands_over_every_token_in_fewer_outputs(interval):
    """Consumers are woken once per ``interval`` tokens (or at the end) and get exactly the tokens and
    log-probs of waking after every step."""
    for outs in _stepped_stream(_FakeLLMEngine(length=10), interval, n=3):
        sizes = [len(o.outputs[0].token_ids) for o in outs]
        expected = [interval] * (10 // interval) + ([10 % interval] if 10 % interval else [])
        assert sizes == expected and [o.finished for o in outs] == [False] * (len(outs) - 1) + [True]
        tokens = [t for o in outs for t in o.outputs[0].token_ids]
        logprobs = [lp for o in outs for entry in o.outputs[0].logprobs for lp in [list(entry.values())[0].logprob]]
        assert tokens == list(range(100, 110)) and logprobs == pytest.approx([-i / 10 for i in range(10)])
        assert outs[-1].outputs[0].finish_reason == "length"


def test_stepped_stream_interval_books_versions_per_step_and_keeps_the_canary_cut():
    """An update inside a held window splits the versions at the step it ran after, not at a hand-over; the
    canary still cuts at its flagging token (the engine reads merged deltas token by token)."""
    from zaya_rl.canary import CompressibilityCanary
    from zaya_rl.rollout.vllm_stepped import SteppedLLM

    core = _FakeLLMEngine(length=10)
    eng = _engine(SteppedLLM(core, stream_interval=4), in_process=True)
    original_step = core.step

    def step_then_update():
        outs = original_step()
        if core.steps == 6:  # two tokens into the second window of 4
            asyncio.get_running_loop().create_task(eng.update_weights(_state(1.0), version=1))
        return outs

    core.step = step_then_update
    res = asyncio.run(eng.generate(_req(max_new=10, stop=())))
    assert res.token_ids == list(range(100, 110)) and res.versions == [0] * 6 + [1] * 4

    ref = CompressibilityCanary(0.3, 2, 64)
    flag_at = next(i for i in range(400) if ref.feed("a"))
    core = _FakeLLMEngine(length=400, token=lambda i: ord("a"))
    eng = _engine(SteppedLLM(core, stream_interval=10), in_process=True)
    res = asyncio.run(eng.generate(_req(max_new=400, stop=(), canary=CanarySpec(threshold=0.3, patience=2,
                                                                                chunk_bytes=64))))
    assert flag_at % 10 != 9  # the flag lands inside a window, not on a hand-over
    assert res.finish_reason == "degenerate" and len(res.token_ids) == flag_at + 1
    assert core.steps < flag_at + 11  # aborted within one window of the flag


def test_stepped_abort_hands_over_the_held_tokens():
    from zaya_rl.rollout.vllm_stepped import SteppedLLM

    core = _FakeLLMEngine(length=50)
    llm = SteppedLLM(core, stream_interval=8)

    async def run():
        async def collect():
            return [o async for o in llm.generate({"prompt_token_ids": [1]}, None, "a")]

        task = asyncio.create_task(collect())
        while core.steps < 11:  # one window handed over, some tokens held
            await asyncio.sleep(0)
        steps = core.steps
        await llm.abort("a")
        return steps, await task

    steps, outs = asyncio.run(run())
    assert 11 <= steps < 16
    tokens = [t for o in outs for t in o.outputs[0].token_ids]
    assert outs[-1].outputs[0].finish_reason == "abort" and tokens == list(range(100, 100 + steps))
    assert len(outs) == 2 and len(outs[-1].outputs[0].logprobs) == len(outs[-1].outputs[0].token_ids) == steps - 8


def test_stream_interval_is_for_the_stepped_frontend():
    base = {"model": {"preset": "tiny-qwen3moe"}}
    with pytest.raises(ConfigError, match="rollout.vllm.stream_interval"):
        config_from_dict({**base, "rollout": {"engine": "vllm", "vllm": {"frontend": "async_llm", "stream_interval": 8}}})
    assert config_from_dict({**base, "rollout": {"engine": "vllm", "vllm": {"stream_interval": 8}}}).rollout.vllm.stream_interval == 8
    assert config_from_dict({**base, "rollout": {"engine": "vllm", "vllm": {"frontend": "async_llm"}}}).rollout.vllm.stream_interval == 16
