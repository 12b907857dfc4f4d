"""Router replay in the trainer is per sample, and its coverage and disagreement are measured every step.

A micro-batch mixing a sample with recorded routes and one without must replay the first exactly as if it
were alone and route the second natively (the old behaviour switched replay off for the whole micro-batch).
Checked against separate forwards of each sample (replayed / native), and against the model's own native
routes, recorded independently by ``record_routing`` (replaying them must disagree nowhere).
Run ``python -m pytest tests/trainer/test_replay_step.py -q``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zaya_rl.models.router_replay import ReplayStats, record_routing, routing_shape, to_routed_experts
from zaya_rl.rollout.base import NO_ROUTE
from zaya_rl.trainer.batch import TrainSample, collate
from zaya_rl.trainer.step import LossSettings, sequence_logprobs

SETTINGS = LossSettings(temperature=1.0, delta=0.1, tis_cap=10.0, aggregation="seq-mean-token-sum-norm", max_len=16,
                        logprob_chunk_size=64, router_replay=True, grad_clip=1.0, micro_batch_size=8)


@pytest.fixture(scope="module")
def model():
    from zaya_rl.models.policy import load_policy

    m, _ = load_policy("tiny-zaya", seed=0)
    return m.eval()


def _random_routes(model, rows: int, seed: int) -> np.ndarray:
    layers, k = routing_shape(model)
    choices = model.config.num_experts + 1  # ZAYA: E experts + the skip class
    g = np.random.default_rng(seed)
    return g.integers(0, choices, size=(rows, layers, k)).astype(np.int16)


def _samples(model):
    a = TrainSample([5, 6, 7, 8, 9], [20, 21, 22, 23], [-1.0] * 4, 1.0)
    a.routed_experts = _random_routes(model, len(a.prompt_ids) + len(a.token_ids) - 1, seed=0)
    b = TrainSample([30, 31, 32], [40, 41], [-1.0] * 2, -1.0)  # no routes (e.g. a dense-path worker)
    return a, b


def test_a_micro_batch_replays_every_sample_that_has_routes():
    routes = np.array([[[1]], [[2]], [[3]]], dtype=np.int16)
    a = TrainSample([1, 2], [3, 4], [-1.0, -2.0], 1.0, routes)
    b = TrainSample([5], [6, 7], [-3.0, -4.0], -1.0, None)
    mb = collate([b, a], pad_id=0)
    assert mb.replay_indices is not None
    assert mb.replay_valid[..., 0].tolist() == [[False, False, False], [True, True, True]]
    assert mb.replay_indices[1, :, 0, 0].tolist() == [1, 2, 3]
    assert collate([b], pad_id=0).replay_indices is None  # nothing to replay at all


def test_mixed_micro_batch_equals_each_sample_alone(model):
    a, b = _samples(model)
    with torch.no_grad():
        stats = ReplayStats()
        mixed = sequence_logprobs(model, collate([a, b], 0), settings=SETTINGS, replay_stats=stats)
        a_replayed = sequence_logprobs(model, collate([a], 0), settings=SETTINGS)
        a_native = sequence_logprobs(model, collate([a], 0), settings=SETTINGS, replay=False)
        b_native = sequence_logprobs(model, collate([b], 0), settings=SETTINGS, replay=False)
    n_a, n_b = len(a.token_ids), len(b.token_ids)
    lp_a, lp_b = mixed[0][mixed[0] != 0], mixed[1][mixed[1] != 0]
    assert lp_a.shape == (n_a,) and lp_b.shape == (n_b,)
    torch.testing.assert_close(lp_a, a_replayed[0][a_replayed[0] != 0], rtol=0, atol=1e-5)
    torch.testing.assert_close(lp_b, b_native[0][b_native[0] != 0], rtol=0, atol=1e-5)
    assert (lp_a - a_native[0][a_native[0] != 0]).abs().max() > 1e-3  # replay did change sample a
    # coverage by hand: a's 8 input positions of 8 + 4 real ones; one of two samples
    m = stats.metrics()
    assert m["replay/coverage"] == 8 / 12 and m["replay/sample_coverage"] == 0.5
    assert 0.0 < m["replay/disagreement"] <= 1.0  # random routes differ from the router's own choices


def test_replaying_the_native_routes_disagrees_nowhere(model):
    a, _ = _samples(model)
    mb = collate([a], 0)
    with torch.no_grad(), record_routing(model) as rec:
        native = sequence_logprobs(model, mb, settings=SETTINGS, replay=False)
    a.routed_experts = to_routed_experts(rec.indices[0], rec.valid[0])
    stats = ReplayStats()
    with torch.no_grad():
        replayed = sequence_logprobs(model, collate([a], 0), settings=SETTINGS, replay_stats=stats)
    assert stats.metrics() == {"replay/coverage": 1.0, "replay/sample_coverage": 1.0, "replay/disagreement": 0.0}
    assert stats.counts()["total"] == 8 * routing_shape(model)[0]  # every (position, layer) pair was compared
    torch.testing.assert_close(replayed, native, rtol=0, atol=1e-6)


def test_trainer_step_logs_replay_metrics():
    from zaya_rl.config import config_from_dict
    from zaya_rl.pipeline.trainer_actor import TrainerActor

    trainer = TrainerActor(config_from_dict({}).model_dump(mode="json"))
    a, b = _samples(trainer.model)
    half = _random_routes(trainer.model, 8, seed=1)
    half[4:] = NO_ROUTE  # positions 4.. were not recorded
    c = TrainSample([5, 6, 7, 8, 9], [24, 25, 26, 27], [-1.0] * 4, -1.0, half)
    m = trainer.train_step([a, b, c])
    assert m["replay/coverage"] == (8 + 4) / (8 + 4 + 8)
    assert m["replay/sample_coverage"] == 2 / 3 and 0.0 < m["replay/disagreement"] <= 1.0


def test_trainer_step_reports_its_compute_time():
    from zaya_rl.config import config_from_dict
    from zaya_rl.pipeline.trainer_actor import TrainerActor

    trainer = TrainerActor(config_from_dict({}).model_dump(mode="json"))
    a, b = _samples(trainer.model)
    t = trainer.train_step([a, b])["perf/train_compute_s"]
    assert 0.0 < t < 60.0
