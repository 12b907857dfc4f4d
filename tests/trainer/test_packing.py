"""Sequence packing: the packed forward's log-probs, loss and gradients equal the right-padded ones.

The reference is the padded layout the trainer used before packing (``make_micro_batches``: one sequence per
row, right-padded), run through the same loss. Router replay is on with random routes, so a route landing on
the wrong packed slot would change the output; ZAYA without separators shows that its CCA conv would leak.

Run: python -m pytest tests/trainer/test_packing.py -q
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from zaya_rl.models.policy import build_preset
from zaya_rl.models.router_replay import routing_shape
from zaya_rl.trainer.batch import TrainSample, make_micro_batches
from zaya_rl.trainer.packing import (
    choose_capacity,
    layout_cost,
    make_packed_micro_batches,
    pack_rows,
    packing_separators,
    padded_fraction,
    padding_fraction,
    plan_micro_batches,
)
from zaya_rl.trainer.step import LossSettings, _micro_batch_loss, sequence_logprobs, train_step

SETTINGS = LossSettings(temperature=0.7, delta=0.2, tis_cap=5.0, aggregation="seq-mean-token-sum-norm", max_len=32,
                        logprob_chunk_size=16, router_replay=True, grad_clip=1e9, micro_batch_size=3)
LENGTHS = [(5, 7), (3, 1), (9, 12), (2, 4), (4, 0), (6, 3), (1, 9)]  # (prompt, generated); one empty completion


def _samples(model, seed=0, routes=True):
    rng = np.random.default_rng(seed)
    vocab = model.config.vocab_size
    if routes:
        n_layers, k = routing_shape(model)
        choices = model.config.num_experts + (1 if model.config.model_type == "zaya" else 0)
    out = []
    for i, (p, g) in enumerate(LENGTHS):
        r = None
        if routes:  # distinct experts per (token, layer), chosen at random
            r = np.argsort(rng.random((p + g - 1, n_layers, choices)), axis=-1)[..., :k].astype(np.int16)
            if i == 3:
                r[1] = -1  # one unrecorded position: routes natively in both layouts
        out.append(TrainSample(rng.integers(3, vocab, p).tolist(), rng.integers(3, vocab, g).tolist(),
                               (-rng.random(g) * 3).tolist(), float(i) - 3.0, r))
    return out


@pytest.fixture(scope="module", params=["tiny-zaya", "tiny-qwen3moe"])
def model(request):
    m, _ = build_preset(request.param, seed=0)
    return m


def _per_sample_logprobs(model, micro, settings=SETTINGS):
    """{advantage (the sample's id): its log-probs at loss positions}."""
    out = {}
    with torch.no_grad():
        for mb in micro:
            lp = sequence_logprobs(model, mb, settings=settings)
            for b in range(lp.shape[0]):
                out[float(mb.advantages[b])] = lp[b][mb.loss_mask[b]]
    return out


def _loss_and_grads(model, micro, samples):
    model.zero_grad(set_to_none=True)
    num_tokens = sum(len(s.token_ids) for s in samples)
    total = 0.0
    for mb in micro:
        loss, _ = _micro_batch_loss(model, mb, num_sequences=sum(1 for s in samples if s.token_ids),
                                    num_tokens=num_tokens, settings=SETTINGS)
        loss.backward()
        total += float(loss.detach())
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return total, grads


def test_packed_logprobs_loss_and_gradients_equal_padded(model):
    samples = _samples(model)
    separators, why = packing_separators(model)
    assert separators == (2 if model.config.model_type == "zaya" else 0), why
    padded = make_micro_batches(samples, 3, pad_id=0)
    packed = make_packed_micro_batches(samples, token_budget=40, micro_batch_size=3, separators=separators, pad_id=0)
    assert all(mb.packed is not None for mb in packed) and len(packed) < len(padded)
    assert any((mb.packed.position_ids == 0).sum() > mb.packed.input_ids.shape[0] for mb in packed)  # rows hold >1
    ref, got = _per_sample_logprobs(model, padded), _per_sample_logprobs(model, packed)
    assert ref.keys() == got.keys()
    for key in ref:
        torch.testing.assert_close(got[key], ref[key], rtol=1e-5, atol=1e-5)
    # replay really acts: without it the log-probs move, so the equality above needs the routes in place
    off = _per_sample_logprobs(model, padded, dataclasses.replace(SETTINGS, router_replay=False))
    assert max(float((off[k] - ref[k]).abs().max()) for k in ref if ref[k].numel()) > 1e-3
    loss_ref, grads_ref = _loss_and_grads(model, padded, samples)
    loss_got, grads_got = _loss_and_grads(model, packed, samples)
    assert loss_got == pytest.approx(loss_ref, rel=1e-5, abs=1e-7)
    assert grads_ref.keys() == grads_got.keys()
    for name in grads_ref:
        torch.testing.assert_close(grads_got[name], grads_ref[name], rtol=1e-4, atol=1e-6, msg=name)


def test_zaya_without_separators_leaks_through_the_cca_conv():
    """Why ZAYA needs separators: packed back to back, the conv and delayed value read the previous sequence."""
    zaya, _ = build_preset("tiny-zaya", seed=0)
    samples = _samples(zaya, routes=False)
    ref = _per_sample_logprobs(zaya, make_micro_batches(samples, 3, pad_id=0))
    leaky = _per_sample_logprobs(
        zaya, make_packed_micro_batches(samples, token_budget=64, micro_batch_size=3, separators=0, pad_id=0)
    )
    assert max(float((leaky[k] - ref[k]).abs().max()) for k in ref if ref[k].numel()) > 1e-3


def test_llama_packs_without_separators():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64))
    samples = [dataclasses.replace(s, prompt_ids=[t % 64 for t in s.prompt_ids], token_ids=[t % 64 for t in s.token_ids])
               for s in _samples(llama, routes=False)]
    assert packing_separators(llama) == (0, "")
    ref = _per_sample_logprobs(llama, make_micro_batches(samples, 3, pad_id=0))
    got = _per_sample_logprobs(llama, plan_micro_batches(llama, samples, packing="always", micro_batch_size=3,
                                                         micro_batch_tokens=40, pad_id=0))
    for key in ref:
        torch.testing.assert_close(got[key], ref[key], rtol=1e-5, atol=1e-5)


def test_refused_models_fail_with_on_and_train_padded_with_auto():
    from transformers import ZayaConfig, ZayaForCausalLM

    biased = ZayaForCausalLM(ZayaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                        head_dim=16, moe_intermediate_size=32, num_experts=2, router_hidden_size=16,
                                        vocab_size=64, attention_bias=True))
    separators, why = packing_separators(biased)
    assert separators is None and "attention_bias=True" in why
    samples = [TrainSample([1, 2], [3, 4], [-1.0, -1.0], 1.0)]
    with pytest.raises(ValueError, match="trainer.packing=always: ZAYA with attention_bias=True"):
        plan_micro_batches(biased, samples, packing="always", micro_batch_size=2, micro_batch_tokens=None, pad_id=0)
    (mb,) = plan_micro_batches(biased, samples, packing="auto", micro_batch_size=2, micro_batch_tokens=None, pad_id=0)
    assert mb.packed is None
    gpt2 = SimpleNamespace(config=SimpleNamespace(model_type="gpt2", _attn_implementation="sdpa"))
    assert "not 'gpt2'" in packing_separators(gpt2)[1]
    flash = SimpleNamespace(config=SimpleNamespace(model_type="llama", _attn_implementation="flash_attention_2"))
    assert "not 'flash_attention_2'" in packing_separators(flash)[1]
    with pytest.raises(ValueError, match="expected auto, always or never"):
        plan_micro_batches(biased, samples, packing="yes", micro_batch_size=2, micro_batch_tokens=None, pad_id=0)


def test_best_fit_decreasing_rows_by_hand():
    assert pack_rows([5, 3, 3, 2, 1], 5, separators=0) == [[0], [1, 3], [2, 4]]
    # with 2 separator slots between sequences, 3 + 2 + 1 = 6 no longer fits a row of 5, 2 + 2 + 1 = 5 does
    assert pack_rows([5, 3, 3, 2, 1], 5, separators=2) == [[0], [1], [2], [3, 4]]
    # 4 + 3 leave 1 slot of 8, so the second 3 opens a row, and the 2 joins the row with room for it
    assert pack_rows([4, 3, 3, 2], 8, separators=0) == [[0, 1], [2, 3]]


def test_layout_choice_weighs_padding_against_attention_by_hand():
    assert layout_cost([(2, 10), (3, 6)], 1.0) == 2 * 10 * 11 + 3 * 6 * 7
    lengths, kw = [10, 6, 6, 6, 4], {"micro_batch_size": 2, "budget": 20, "separators": 0}
    # padded, sorted, 2 per micro-batch: [4, 6] [6, 6] [10] = 12 + 12 + 10 slots = 34.
    # capacity 10: rows [10] [6, 4] [6] [6] -> micro-batches 2 x 10 and 2 x 6 = 32 slots;
    # capacity 20: rows [10, 6, 4] [6, 6] -> 20 + 12 = 32 slots too, but one row 20 wide.
    assert choose_capacity(lengths, attention_weight=0.0, allow_padded=True, **kw) == 10  # fewest slots, first found
    # alpha = 1: attention grows with the square of a row's width: capacity 10 costs 2*10*11 + 2*6*7 = 304,
    # capacity 20 costs 20*21 + 12*13 = 576, padded 2*6*7 + 2*6*7 + 10*11 = 278: padding wins under auto
    assert choose_capacity(lengths, attention_weight=1.0, allow_padded=True, **kw) is None
    assert choose_capacity(lengths, attention_weight=1.0, allow_padded=False, **kw) == 10
    assert choose_capacity([7] * 6, attention_weight=0.0, allow_padded=True, **kw | {"budget": 14}) is None  # a tie


def test_packed_layout_by_hand():
    # input lengths 2, 1 and 4: rows of capacity 4 (the longest); a and b share one (2 + 1 separator + 1 = 4)
    a = TrainSample([10, 11], [12], [-0.5], 1.0)  # inputs [10, 11], targets [11, 12]
    b = TrainSample([20], [21], [-0.7], 2.0)  # inputs [20], target [21]
    c = TrainSample([30, 31, 32, 33], [34], [-0.9], 3.0)  # inputs of length 4 set the capacity
    (mb_c, mb_ab) = make_packed_micro_batches([a, b, c], token_budget=4, micro_batch_size=1, separators=1, pad_id=9)
    assert mb_c.packed.input_ids.tolist() == [[30, 31, 32, 33]]
    p = mb_ab.packed
    assert p.input_ids.tolist() == [[10, 11, 9, 20]]  # a, one separator, b
    assert p.position_ids.tolist() == [[0, 1, 2, 0]]  # the separator continues a; b restarts at 0
    assert p.keep.tolist() == [[True, True, False, True]]
    assert mb_ab.input_ids.tolist() == [[10, 11], [20, 9]]  # the per-sequence view the loss reads
    assert p.slot.tolist() == [0, 1, 3, -1]
    assert padding_fraction([mb_c, mb_ab]) == pytest.approx(1 / 8)


def test_padding_fraction_both_layouts_and_the_step_metric():
    samples = _samples(build_preset("tiny-qwen3moe")[0], routes=False)
    padded = make_micro_batches(samples, 3, pad_id=0)
    # input lengths sorted [3, 3, 5, 8, 9, 11, 20]: micro-batches of 3 padded to 5, 11 and 20 slots per row
    expected = 1 - 59 / (3 * 5 + 3 * 11 + 1 * 20)
    assert padding_fraction(padded) == pytest.approx(expected)
    assert padded_fraction(samples, 3) == pytest.approx(expected)
    packed = make_packed_micro_batches(samples, token_budget=None, micro_batch_size=3, separators=0, pad_id=0)
    assert padding_fraction(packed) < padding_fraction(padded)


def test_train_step_reports_padding_and_keeps_dr_grpo_denominators(model):
    samples = _samples(model)
    results = {}
    for packing in ("never", "always"):
        m = build_preset(model.config.model_type.replace("qwen3_moe", "tiny-qwen3moe").replace("zaya", "tiny-zaya"))[0]
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        res = train_step(m, opt, samples, settings=dataclasses.replace(SETTINGS, packing=packing), pad_id=0)
        results[packing] = (res.metrics, [p.detach().clone() for p in m.parameters()])
    (off, params_off), (on, params_on) = results["never"], results["always"]
    for key in ("train/num_sequences", "train/num_tokens"):
        assert on[key] == off[key]
    assert on["train/loss"] == pytest.approx(off["train/loss"], rel=1e-5)
    assert on["train/padding_frac_unpacked"] == pytest.approx(off["train/padding_frac"])
    assert on["train/padding_frac"] <= off["train/padding_frac"]
    assert "train/padding_frac_unpacked" not in off
    for a, b in zip(params_on, params_off, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_replay_metrics_equal_packed_and_padded(model):
    """``replay/coverage``, ``replay/sample_coverage`` and ``replay/disagreement`` do not depend on the layout.

    Per-sample replay: one sample without routes (routes natively), one unrecorded position, and an empty
    completion with one route row past its P + G - 1 = P - 1 input positions (what ``FakeEngine`` records for
    G = 0): that row routes no input, so neither layout may count it. The counts are checked by hand from the
    samples' routes, the layouts against each other (ReplayStats of every micro-batch, and the step's metrics).
    """
    import copy

    from zaya_rl.models.router_replay import ReplayStats

    samples = _samples(model)
    samples[5] = dataclasses.replace(samples[5], routed_experts=None)  # per-sample: no routes at all
    p, g = LENGTHS[4]
    assert g == 0
    samples[4] = dataclasses.replace(samples[4], routed_experts=_samples(model, seed=1)[0].routed_experts[:p])
    n_layers = routing_shape(model)[0]
    inputs = [len(s.prompt_ids) + len(s.token_ids) - 1 for s in samples]
    rows = [None if s.routed_experts is None else (s.routed_experts[:n] >= 0).all(-1)  # valid [position, layer]
            for s, n in zip(samples, inputs, strict=True)]
    covered = sum(int(r.all(-1).sum()) for r in rows if r is not None)  # positions replayed in every layer
    pairs = sum(int(r.sum()) for r in rows if r is not None)  # replayed (position, layer) pairs
    with_routes = sum(1 for r in rows if r is not None and r.any())
    assert covered == sum(inputs) - inputs[5] - 1 and pairs == covered * n_layers  # the unrecorded row of sample 3

    separators, _ = packing_separators(model)
    layouts = {
        "padded": make_micro_batches(samples, 3, pad_id=0),
        "packed": make_packed_micro_batches(samples, token_budget=40, micro_batch_size=3, separators=separators,
                                            pad_id=0),
    }
    # the overlong row of the empty completion sits next to real positions of a longer sample in its padded row
    assert any(mb.input_ids.shape[1] > inputs[4] and float(mb.advantages[b]) == 1.0
               for mb in layouts["padded"] for b in range(mb.num_sequences))
    counts = {}
    for name, micro in layouts.items():
        stats = ReplayStats()
        with torch.no_grad():
            for mb in micro:
                sequence_logprobs(model, mb, settings=SETTINGS, replay_stats=stats)
        c = counts[name] = stats.counts()
        assert (c["covered"], c["positions"], c["total"]) == (covered, sum(inputs), pairs), name
        assert (c["samples_covered"], c["samples"]) == (with_routes, len(samples)), name
    assert counts["packed"]["mismatched"] == counts["padded"]["mismatched"] > 0  # random routes vs the router's own

    metrics = {}
    for packing in ("never", "always"):
        m = copy.deepcopy(model)
        res = train_step(m, torch.optim.SGD(m.parameters(), lr=0.0), samples,
                         settings=dataclasses.replace(SETTINGS, packing=packing), pad_id=0)
        metrics[packing] = {k: v for k, v in res.metrics.items() if k.startswith("replay/")}
    assert metrics["always"] == metrics["never"] == {
        "replay/coverage": covered / sum(inputs), "replay/sample_coverage": with_routes / len(samples),
        "replay/disagreement": counts["padded"]["mismatched"] / pairs,
    }
