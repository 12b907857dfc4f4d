"""The trainer step waits for the GPU a fixed number of times, however many micro-batches it runs.

``train_step`` finds loss positions and checks token ids on the host, moves micro-batches from pinned memory,
keeps every loss and metric on the device and reads them once (``trainer.step._read_from_device``). A wait
per micro-batch (a ``.item()``, a boolean index, a blocking copy) idles the GPU while the host catches up;
``torch.cuda.set_sync_debug_mode`` reports every one. transformers' own forward may wait too (its mask
helpers test ``.all()`` of a mask): those waits are counted in a bare forward of the same layout and allowed
once per micro-batch; the rest must not grow with the micro-batch count. A small dense Llama (transformers'
eager MoE blocks wait per expert by design), float32, our chunked log-probs (a fused kernel's internals are not
what this tests).

``python -m pytest tests/gpu/test_trainer_syncs_gpu.py -q``
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch

from zaya_rl.trainer.batch import TrainSample
from zaya_rl.trainer.packing import forward_view, plan_micro_batches, with_positions
from zaya_rl.trainer.step import LossSettings, base_and_head, train_step

SETTINGS = LossSettings(temperature=0.7, delta=0.2, tis_cap=5.0, aggregation="seq-mean-token-sum-norm", max_len=32,
                        logprob_chunk_size=64, router_replay=False, grad_clip=1.0, micro_batch_size=4,
                        logprob_impl="chunked", packing="never")
PACKED = dataclasses.replace(SETTINGS, packing="always", micro_batch_tokens=48)


def _model(device: str = "cuda"):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    return LlamaForCausalLM(cfg).to(device)


def _samples(n: int) -> list[TrainSample]:
    rng = np.random.default_rng(0)
    return [TrainSample(rng.integers(3, 512, 6).tolist(), rng.integers(3, 512, 10).tolist(),
                        (-rng.random(10)).tolist(), float(i % 3) - 1.0) for i in range(n)]


def _waits(fn: Callable[[], object]) -> int:
    """Host waits for the device while ``fn`` runs (after a full synchronisation)."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchronizing" in str(w.message) for w in caught)


def _micro(model, samples, settings):
    return plan_micro_batches(model, samples, packing=settings.packing, micro_batch_size=settings.micro_batch_size,
                              micro_batch_tokens=settings.micro_batch_tokens, pad_id=0)


def _step_waits(model, samples, settings) -> int:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    train_step(model, opt, samples, settings=settings, pad_id=0)  # warm-up: kernels, the pinned-memory pool
    results = []
    waits = _waits(lambda: results.append(train_step(model, opt, samples, settings=settings, pad_id=0)))
    assert not results[0].skipped
    return waits


def _forward_waits(model, samples, settings) -> int:
    """transformers' own waits in one forward of the layout's first micro-batch (not the step's to remove)."""
    view = forward_view(model, with_positions(_micro(model, samples, settings)[0]).to("cuda", non_blocking=True))
    base = base_and_head(model)[0]
    with torch.no_grad():
        base(**view.inputs)
        return _waits(lambda: base(**view.inputs))


@pytest.mark.parametrize("settings", [SETTINGS, PACKED], ids=["padded", "packed"])
def test_the_step_waits_no_more_per_micro_batch_than_transformers_forward(settings):
    model = _model()
    few, many = _samples(8), _samples(24)
    n_few, n_many = len(_micro(model, few, settings)), len(_micro(model, many, settings))
    assert n_many > n_few > 1
    per_forward = _forward_waits(model, few, settings)
    w_few, w_many = _step_waits(model, few, settings), _step_waits(model, many, settings)
    assert w_many - w_few == (n_many - n_few) * per_forward, (w_few, w_many, n_few, n_many, per_forward)
    assert w_few - n_few * per_forward <= 2, (w_few, n_few, per_forward)  # the step's one read (+ one spare)


def _replayed_forward_waits(model, ids, replay) -> int:
    """Host waits of one forward of ``model``, inside ``replay_routing`` when ``replay`` is ``(idx, valid)``."""
    from zaya_rl.models.router_replay import ReplayStats, replay_routing

    def forward():
        with torch.no_grad():
            if replay is None:
                model(ids)
                return
            with replay_routing(model, *replay, ReplayStats()):
                model(ids)

    forward()  # warm-up
    return _waits(forward)


def test_router_replay_adds_no_waits_to_the_forward():
    """The replay hooks keep their counts on the device: a replayed forward waits for the GPU as often as a
    native one (transformers' own MoE blocks may wait; the difference is what replay adds)."""
    from zaya_rl.models.policy import build_preset
    from zaya_rl.models.router_replay import routing_shape

    model = build_preset("tiny-qwen3moe", seed=0)[0].cuda()
    layers, k = routing_shape(model)
    g = torch.Generator(device="cuda").manual_seed(0)
    ids = torch.randint(3, model.config.vocab_size, (4, 32), device="cuda", generator=g)
    idx = torch.rand(4, 32, layers, model.config.num_experts, device="cuda", generator=g).topk(k, dim=-1).indices
    valid = torch.ones(4, 32, layers, dtype=torch.bool, device="cuda")
    assert _replayed_forward_waits(model, ids, (idx, valid)) == _replayed_forward_waits(model, ids, None)
