"""python -m pytest tests/rollout/test_torch_engine.py -q

The engine's behaviour log-probs are checked against independent recomputations: a plain full forward
(trainer-style, with router replay) for a fixed set of weights, and HF's own single-sequence cached
decoding for a sequence that spans a weight update.
"""

from __future__ import annotations

import asyncio
import copy

import pytest
import torch
from transformers import DynamicCache

from zaya_rl.models.policy import load_policy
from zaya_rl.models.router_replay import replay_routing, routes_to_batch, routing_shape
from zaya_rl.rollout.base import CanarySpec, GenerationRequest, SamplingParams, run_requests
from zaya_rl.rollout.torch_engine import TorchEngine


def _policy(preset="tiny-zaya", seed=0):
    model, tok = load_policy(preset, seed=seed)
    return model.eval(), tok


def _req(i, max_new=10, prompt_len=None, **params):
    n = prompt_len if prompt_len is not None else 2 + 3 * i
    prompt = [(37 * i + 11 * j) % 256 for j in range(n)]
    return GenerationRequest(f"r{i}", prompt, SamplingParams(max_new_tokens=max_new, seed=100 + i, **params))


def _trainer_logprobs(model, results, temperature):
    """Right-padded full forward of prompt + completion with replayed routing; log_softmax at T."""
    seqs = [r.prompt_ids + r.token_ids for r in results]
    lengths, width = [len(s) for s in seqs], max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), 256)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
    n_layers, k = routing_shape(model)
    idx, valid = routes_to_batch([r.routed_experts for r in results], lengths, width, n_layers, k)
    with torch.no_grad(), replay_routing(model, idx, valid) as stats:
        logp = (model(ids).logits.float() / temperature).log_softmax(-1)
    out = []
    for i, r in enumerate(results):
        p, g = len(r.prompt_ids), len(r.token_ids)
        out.append(logp[i, p - 1 : p + g - 1].gather(1, torch.tensor(r.token_ids)[:, None]).squeeze(1))
    return out, stats


@pytest.mark.parametrize("preset", ["tiny-zaya", "tiny-qwen3moe"])
def test_behaviour_logprobs_match_trainer_recompute_with_replay(preset):
    model, tok = _policy(preset)
    results = run_requests(
        TorchEngine(model, tok, max_batch_size=8), [_req(i, temperature=0.7) for i in range(5)]
    )
    n_layers, k = routing_shape(model)
    for r in results:
        assert r.routed_experts.shape == (len(r.prompt_ids) + len(r.token_ids) - 1, n_layers, k)
        assert (r.routed_experts >= 0).all() and r.versions == [0] * len(r.token_ids)
    recomputed, stats = _trainer_logprobs(model, results, 0.7)
    for r, lp in zip(results, recomputed, strict=True):
        torch.testing.assert_close(torch.tensor(r.logprobs), lp, atol=1e-5, rtol=0)
    assert stats.disagreement == 0.0


def test_padded_continuous_batching_equals_one_at_a_time():
    model, tok = _policy()
    # r5's prompt is longer than the running cache when it arrives (the running rows get left-padded);
    # r6's is shorter (the new row gets left-padded).
    requests = [_req(i, max_new=8 + i) for i in range(5)]
    requests += [_req(5, max_new=6, prompt_len=40), _req(6, max_new=5, prompt_len=3)]
    alone = run_requests(TorchEngine(model, tok, max_batch_size=1), requests)

    async def staggered():  # arrivals while others decode: admission merges caches of different lengths
        engine = TorchEngine(model, tok, max_batch_size=4)
        tasks = []
        for r in requests:
            tasks.append(asyncio.create_task(engine.generate(r)))
            for _ in range(3):
                await asyncio.sleep(0)
        return await asyncio.gather(*tasks)

    for batched in (
        run_requests(TorchEngine(model, tok, max_batch_size=6), requests),
        asyncio.run(staggered()),
    ):
        for a, b in zip(alone, batched, strict=True):
            assert a.token_ids == b.token_ids
            torch.testing.assert_close(torch.tensor(b.logprobs), torch.tensor(a.logprobs), atol=1e-5, rtol=0)
            assert (a.routed_experts == b.routed_experts).all()


def test_sequence_spanning_an_update_uses_new_weights_on_the_old_cache():
    """After the swap, token j is sampled from new-weight logits computed on a KV/CCA cache that the old
    weights built for positions before the swap. The reference builds exactly that with HF's own
    single-sequence cached decoding: old model over prompt + tokens[:k-1], then the new model steps
    token by token from that cache. No engine code (batching, merging, masks) is involved."""
    model, tok = _policy()
    old = copy.deepcopy(model)
    new = copy.deepcopy(model)
    with torch.no_grad():
        g = torch.Generator().manual_seed(3)
        for p in new.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    engine = TorchEngine(model, tok)
    request = _req(1, max_new=16, prompt_len=6)

    async def scenario():
        task = asyncio.create_task(engine.generate(request))
        while engine.tokens_generated("r1") < 5:
            await asyncio.sleep(0)
        await engine.update_weights(new.state_dict(), version=1)
        assert engine.version == 1
        return await task

    r = asyncio.run(scenario())
    k = r.versions.index(1)
    assert k >= 5 and r.versions == [0] * k + [1] * (len(r.token_ids) - k)
    seq = torch.tensor([r.prompt_ids + r.token_ids])
    p = len(r.prompt_ids)
    with torch.no_grad():
        before = old(seq).logits.log_softmax(-1)[0, p - 1 : p + k - 1]
        torch.testing.assert_close(
            torch.tensor(r.logprobs[:k]),
            before.gather(1, seq[0, p : p + k, None]).squeeze(1),
            atol=1e-5,
            rtol=0,
        )
        cache = DynamicCache(config=old.config)
        old(seq[:, : p + k - 1], past_key_values=cache, use_cache=True)
        after = []
        for j in range(p + k - 1, seq.shape[1] - 1):
            logits = new(seq[:, j : j + 1], past_key_values=cache, use_cache=True).logits[0, -1]
            after.append(logits.log_softmax(-1)[seq[0, j + 1]])
        full_new = (
            new(seq).logits.log_softmax(-1)[0, p + k - 1 : -1].gather(1, seq[0, p + k :, None]).squeeze(1)
        )
    torch.testing.assert_close(torch.tensor(r.logprobs[k:]), torch.stack(after), atol=1e-5, rtol=0)
    # The cache semantics matter: recomputing everything with the new weights gives other numbers.
    assert (torch.tensor(r.logprobs[k:]) - full_new).abs().max() > 1e-4


def test_update_weights_rejects_bad_tensors_and_leaves_the_engine_unchanged():
    model, tok = _policy()
    engine = TorchEngine(model, tok)
    before = {n: t.clone() for n, t in model.state_dict().items()}
    name = "model.embed_tokens.weight"
    good = {name: torch.zeros_like(before[name])}
    with pytest.raises(KeyError, match="model.not_a_param"):
        asyncio.run(engine.update_weights({**good, "model.not_a_param": torch.zeros(1)}, 5))
    with pytest.raises(ValueError, match="model.norm.weight.*shape"):
        asyncio.run(engine.update_weights({**good, "model.norm.weight": torch.zeros(3)}, 5))
    assert engine.version == 0
    assert all(torch.equal(t, before[n]) for n, t in model.state_dict().items())


def test_stop_tokens_end_the_sequence_and_are_kept():
    model, tok = _policy()
    free = run_requests(TorchEngine(model, tok), [_req(2, max_new=12)])[0]
    assert free.finish_reason == "length" and len(free.token_ids) == 12
    stop = free.token_ids[4]
    first = free.token_ids.index(stop)
    stopped = run_requests(TorchEngine(model, tok), [_req(2, max_new=12, stop_token_ids=(stop,))])[0]
    assert stopped.finish_reason == "stop"
    assert stopped.token_ids == free.token_ids[: first + 1]
    assert stopped.routed_experts.shape[0] == len(stopped.prompt_ids) + first


def test_top_p_logprobs_are_renormalised_over_the_nucleus():
    model, tok = _policy()
    request = _req(3, max_new=1, temperature=0.9, top_p=0.3)
    with torch.no_grad():
        q = torch.softmax(model(torch.tensor([list(request.prompt_ids)])).logits[0, -1].double() / 0.9, -1)
    order = q.argsort(descending=True).tolist()
    nucleus, mass = [], 0.0
    for t in order:  # smallest prefix of the sorted distribution with mass >= 0.3
        if mass >= 0.3:
            break
        nucleus.append(t)
        mass += float(q[t])
    requests = [
        GenerationRequest(
            f"s{s}", request.prompt_ids, SamplingParams(max_new_tokens=1, temperature=0.9, top_p=0.3, seed=s)
        )
        for s in range(40)
    ]
    seen = {
        r.token_ids[0]: r.logprobs[0]
        for r in run_requests(TorchEngine(model, tok, max_batch_size=40), requests)
    }
    assert set(seen) <= set(nucleus) and len(nucleus) > 1
    for t, lp in seen.items():
        assert lp == pytest.approx(float((q[t] / mass).log()), abs=1e-5)
    assert sum(float(q[t] / mass) for t in nucleus) == pytest.approx(1.0)


def test_canary_stops_a_looping_sequence():
    model, tok = _policy()
    with torch.no_grad():
        model.model.norm.weight.zero_()  # all logits 0: greedy emits token 0 forever (a byte loop)
    # 32 zero bytes compress to 8-10 bytes with zlib's sync flush: ratios 0.31, then 0.25.
    canary = CanarySpec(threshold=0.35, patience=2, chunk_bytes=32)
    request = GenerationRequest(
        "loop", [257, 260, 65], SamplingParams(max_new_tokens=400, temperature=0.0), canary=canary
    )
    r = run_requests(TorchEngine(model, tok), [request])[0]
    assert r.finish_reason == "degenerate"
    assert set(r.token_ids) == {0} and len(r.token_ids) == 64  # flagged by the byte closing chunk 2
    assert len(r.canary_ratios) == 2 and all(x < 0.35 for x in r.canary_ratios)


def test_abort_running_and_queued_requests():
    model, tok = _policy()
    engine = TorchEngine(model, tok, max_batch_size=1)

    async def scenario():
        running = asyncio.create_task(engine.generate(_req(0, max_new=200)))
        queued = asyncio.create_task(engine.generate(_req(1, max_new=200)))
        while engine.tokens_generated("r0") < 3:
            await asyncio.sleep(0)
        await engine.abort("r1")
        await engine.abort("r0")
        await engine.abort("unknown")  # no-op, like vLLM
        return await running, await queued

    running, queued = asyncio.run(scenario())
    assert running.finish_reason == "abort" and 3 <= len(running.token_ids) < 200
    assert running.routed_experts.shape[0] == len(running.prompt_ids) + len(running.token_ids) - 1
    assert queued.finish_reason == "abort" and queued.token_ids == []


def test_close_aborts_in_flight_and_rejects_new_work():
    model, tok = _policy()
    engine = TorchEngine(model, tok)

    async def scenario():
        task = asyncio.create_task(engine.generate(_req(0, max_new=200)))
        while engine.tokens_generated("r0") < 2:
            await asyncio.sleep(0)
        await engine.close()
        return await task

    assert asyncio.run(scenario()).finish_reason == "abort"
    with pytest.raises(RuntimeError, match="closed"):
        run_requests(engine, [_req(1)])


def test_bad_requests_are_rejected_by_name():
    model, tok = _policy()
    engine = TorchEngine(model, tok)
    with pytest.raises(ValueError, match="'e'.*empty"):
        run_requests(engine, [GenerationRequest("e", [], SamplingParams(max_new_tokens=2))])
    with pytest.raises(ValueError, match="'v'.*outside the vocabulary"):
        run_requests(engine, [GenerationRequest("v", [1, 9999], SamplingParams(max_new_tokens=2))])
