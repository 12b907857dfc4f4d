"""``train_step``'s one read from the device: its loss and metrics equal the per-micro-batch figures read one
by one (the way the step read them before), token ids are checked on the host, and loss positions found on
the host equal the mask's.

python -m pytest tests/trainer/test_step.py -q
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.trainer.test_packing import SETTINGS, _samples
from zaya_rl.models.policy import build_preset
from zaya_rl.trainer.batch import make_micro_batches
from zaya_rl.trainer.packing import make_packed_micro_batches, plan_micro_batches, with_loss_positions
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


def test_loss_positions_found_on_the_host_are_the_masks():
    model = build_preset("tiny-qwen3moe", seed=0)[0]
    samples = _samples(model, routes=False)
    for mb in [*make_micro_batches(samples, 3, pad_id=0),
               *make_packed_micro_batches(samples, token_budget=40, micro_batch_size=3, separators=0, pad_id=0)]:
        got = with_loss_positions(mb)
        flat = mb.loss_mask.reshape(-1)
        assert got.loss_index.tolist() == [i for i, on in enumerate(flat.tolist()) if on]
        rows = got.loss_index if mb.packed is None else mb.packed.slot[flat]  # boolean indexing, as the mask says
        assert torch.equal(got.loss_rows, rows)
        assert torch.equal(mb.targets.reshape(-1)[got.loss_index], mb.targets[mb.loss_mask])
