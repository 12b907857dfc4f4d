"""``train_step``'s one read from the device: its loss and metrics equal the per-micro-batch figures read one
by one (the way the step read them before); token ids and routes are checked on the host (errors name the
sample); positions found on the host equal the masks'; a dense model trains with router replay on.

python -m pytest tests/trainer/test_step.py -q
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.trainer.test_packing import SETTINGS, _samples
from zaya_rl.models.policy import build_preset
from zaya_rl.trainer.batch import make_micro_batches
from zaya_rl.trainer.packing import make_packed_micro_batches, plan_micro_batches, with_positions
from zaya_rl.trainer.step import _micro_batch_loss, train_step


@pytest.mark.parametrize("packing", ["never", "always"])
def test_the_step_reports_the_token_weighted_metrics_of_its_micro_batches(packing):
    settings = dataclasses.replace(SETTINGS, router_replay=False, packing=packing, micro_batch_tokens=24)
    model = build_preset("tiny-qwen3moe", seed=0)[0]
    samples = _samples(model, routes=False)
    micro = plan_micro_batches(model, samples, packing=packing, micro_batch_size=settings.micro_batch_size,
                               micro_batch_tokens=settings.micro_batch_tokens, pad_id=0)  # the step's own
    assert len(micro) > 1 and all((mb.packed is not None) == (packing == "always") for mb in micro)
    num_tokens, num_sequences = sum(len(s.token_ids) for s in samples), sum(1 for s in samples if s.token_ids)
    loss_sum, sums, weights = 0.0, {}, 0.0
    for mb in micro:  # the reference: every micro-batch's loss and metrics read as floats at once
        loss, m = _micro_batch_loss(model, mb, num_sequences=num_sequences, num_tokens=num_tokens, settings=settings)
        loss_sum += float(loss)
        w = float(mb.loss_mask.sum())
        weights += w
        for k, v in m.items():
            sums[k] = sums.get(k, 0.0) + v * w
    res = train_step(model, torch.optim.SGD(model.parameters(), lr=0.0), samples, settings=settings, pad_id=0)
    assert not res.skipped and res.metrics["train/loss"] == pytest.approx(loss_sum, rel=1e-5, abs=1e-7)
    for k, v in sums.items():
        assert res.metrics[k] == pytest.approx(v / weights, rel=1e-5, abs=1e-7), k


def test_a_token_outside_the_vocabulary_names_its_sample():
    model = build_preset("tiny-qwen3moe", seed=0)[0]
    samples = _samples(model, routes=False)
    samples[2] = dataclasses.replace(samples[2], token_ids=[*samples[2].token_ids[:-1], model.config.vocab_size])
    with pytest.raises(ValueError, match=rf"sample 2 .*outside the model's vocabulary \[0, {model.config.vocab_size}\)"):
        train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), samples, settings=SETTINGS, pad_id=0)


def test_positions_found_on_the_host_are_the_masks():
    model = build_preset("tiny-qwen3moe", seed=0)[0]
    samples = _samples(model)
    for mb in [*make_micro_batches(samples, 3, pad_id=0),
               *make_packed_micro_batches(samples, token_budget=40, micro_batch_size=3, separators=0, pad_id=0)]:
        pos = with_positions(mb).positions
        flat = mb.loss_mask.reshape(-1)
        assert pos.loss.tolist() == [i for i, on in enumerate(flat.tolist()) if on]
        rows = pos.loss if mb.packed is None else mb.packed.slot[flat]  # boolean indexing, as the mask says
        assert torch.equal(pos.rows, rows)
        assert torch.equal(mb.targets.reshape(-1)[pos.loss], mb.targets[mb.loss_mask])
        if mb.packed is None:
            assert pos.replay_from is None and pos.replay_to is None
        else:
            real = mb.packed.slot >= 0
            assert torch.equal(pos.replay_to, mb.packed.slot[real])
            assert pos.replay_from.tolist() == [i for i, on in enumerate(real.tolist()) if on]


@pytest.mark.parametrize("preset", ["tiny-zaya", "tiny-qwen3moe"])
def test_routes_outside_a_layers_choices_name_the_sample_and_layer(preset):
    """``check_routes`` runs on the host for the step (``replay_routing`` checks CPU tensors only); ZAYA's skip
    class E is a valid choice, E + 1 is not."""
    model = build_preset(preset, seed=0)[0]
    samples = _samples(model)
    choices = model.config.num_experts + (1 if preset == "tiny-zaya" else 0)
    routes = samples[4].routed_experts.copy()
    routes[0, 1, 0] = choices - 1
    samples[4] = dataclasses.replace(samples[4], routed_experts=routes)
    train_step(model, torch.optim.SGD(model.parameters(), lr=0.0), samples, settings=SETTINGS, pad_id=0)
    routes = routes.copy()
    routes[0, 1, 0] = choices
    samples[4] = dataclasses.replace(samples[4], routed_experts=routes)
    with pytest.raises(ValueError, match=rf"sample 4: routed_experts of MoE layer 1 hold {choices} .* {choices} choices"):
        train_step(model, torch.optim.SGD(model.parameters(), lr=0.0), samples, settings=SETTINGS, pad_id=0)


def test_a_dense_model_trains_with_router_replay_on():
    """``trainer.router_replay`` on and no routes (a dense model's rollouts have none): nothing to check or
    replay; the step still runs (the real-model benchmarks train Llama this way)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64))
    samples = [dataclasses.replace(s, routed_experts=None) for s in _samples(model, routes=False)]
    res = train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), samples, settings=SETTINGS, pad_id=0)
    assert not res.skipped and "replay/coverage" in res.metrics and res.metrics["replay/coverage"] == 0.0
