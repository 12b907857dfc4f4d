"""The trainer step waits for the GPU a fixed number of times, however many micro-batches it runs.

``train_step`` finds loss positions and checks token ids on the host, moves micro-batches from pinned memory,
keeps every loss and metric on the device and reads them once (``trainer.step._read_from_device``). A wait
per micro-batch (a ``.item()``, a boolean index, a blocking copy) idles the GPU while the host catches up;
``torch.cuda.set_sync_debug_mode`` reports every one. A small dense Llama (transformers' eager MoE blocks
synchronise per expert by design, so no MoE model here), float32, the default log-prob implementation.

``python -m pytest tests/gpu/test_trainer_syncs_gpu.py -q``
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import torch

from zaya_rl.trainer.batch import TrainSample
from zaya_rl.trainer.step import LossSettings, train_step

SETTINGS = LossSettings(temperature=0.7, delta=0.2, tis_cap=5.0, aggregation="seq-mean-token-sum-norm", max_len=32,
                        logprob_chunk_size=64, router_replay=False, grad_clip=1.0, micro_batch_size=4,
                        packing="never")


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


def _syncs(model, samples, settings: LossSettings = SETTINGS) -> int:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    train_step(model, opt, samples, settings=settings, pad_id=0)  # warm-up: kernels, the pinned-memory pool
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            res = train_step(model, opt, samples, settings=settings, pad_id=0)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert not res.skipped
    return sum("synchronizing" in str(w.message) for w in caught)


def test_the_step_waits_for_the_device_as_often_with_six_micro_batches_as_with_two():
    model = _model()
    two, six = _syncs(model, _samples(8)), _syncs(model, _samples(24))
    assert six == two, (two, six)
    assert two <= 3, two  # the final read, and at most two more of the step's own


def test_the_packed_layout_does_not_wait_per_micro_batch_either():
    packed = dataclasses.replace(SETTINGS, packing="always", micro_batch_tokens=48)
    model = _model()
    assert _syncs(model, _samples(8), packed) == _syncs(model, _samples(24), packed)


def _forward_syncs(model, ids, replay) -> int:
    """Host waits of one forward of ``model``, inside ``replay_routing`` when ``replay`` is ``(idx, valid)``."""
    from zaya_rl.models.router_replay import ReplayStats, replay_routing

    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            if replay is None:
                model(ids)
            else:
                with replay_routing(model, *replay, ReplayStats()):
                    model(ids)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchronizing" in str(w.message) for w in caught)


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
    _forward_syncs(model, ids, None), _forward_syncs(model, ids, (idx, valid))  # warm-up
    assert _forward_syncs(model, ids, (idx, valid)) == _forward_syncs(model, ids, None)
