"""Micro-batch layout: alignment of targets, loss mask, behaviour log-probs and routes (hand-built cases)."""

import numpy as np
import pytest
import torch

from zaya_rl.rollout.base import NO_ROUTE
from zaya_rl.trainer.batch import TrainSample, collate, count_nonempty, make_micro_batches


def test_alignment_of_one_sample():
    # prompt [10, 11, 12], generated [20, 21]: input = [10,11,12,20], targets = [11,12,20,21]
    s = TrainSample(prompt_ids=[10, 11, 12], token_ids=[20, 21], logprobs=[-0.5, -1.5], advantage=2.0)
    mb = collate([s], pad_id=0)
    assert mb.input_ids.tolist() == [[10, 11, 12, 20]]
    assert mb.targets.tolist() == [[11, 12, 20, 21]]
    assert mb.loss_mask.tolist() == [[False, False, True, True]]
    assert mb.behaviour_logp.tolist() == [[0.0, 0.0, -0.5, -1.5]]
    assert mb.advantages.tolist() == [2.0]


def test_right_padding_and_routes():
    routes_a = np.array([[[1]], [[2]], [[3]]], dtype=np.int16)  # [P+G-1=3, L=1, K=1]
    routes_b = np.array([[[4]], [[NO_ROUTE]]], dtype=np.int16)  # [2, 1, 1], second position unrecorded
    a = TrainSample([1, 2], [3, 4], [-1.0, -2.0], 1.0, routes_a)
    b = TrainSample([5], [6, 7], [-3.0, -4.0], -1.0, routes_b)
    mb = collate([a, b], pad_id=9)
    assert mb.input_ids.tolist() == [[1, 2, 3], [5, 6, 9]]
    assert mb.attention_mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert mb.loss_mask.tolist() == [[False, True, True], [True, True, False]]
    assert mb.replay_indices[..., 0, 0].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert mb.replay_valid[..., 0].tolist() == [[True, True, True], [True, False, False]]


def test_empty_completion_and_errors():
    empty = TrainSample([1, 2], [], [], 0.0)
    full = TrainSample([1], [2], [-1.0], 0.0)
    assert count_nonempty([empty, full]) == 1
    mb = collate([empty, full], pad_id=0)
    assert mb.num_sequences == 1
    with pytest.raises(ValueError, match="sample 0"):
        collate([TrainSample([1], [2, 3], [-1.0], 0.0)], pad_id=0)
    with pytest.raises(ValueError, match="empty prompt"):
        collate([TrainSample([], [2], [-1.0], 0.0)], pad_id=0)


def test_micro_batches_cover_every_sample_once():
    samples = [TrainSample([1] * (i % 3 + 1), [2] * (i % 5 + 1), [-1.0] * (i % 5 + 1), float(i)) for i in range(11)]
    mbs = make_micro_batches(samples, micro_batch_size=4, pad_id=0)
    assert [mb.input_ids.shape[0] for mb in mbs] == [4, 4, 3]
    assert sorted(torch.cat([mb.advantages for mb in mbs]).tolist()) == [float(i) for i in range(11)]
    assert sum(int(mb.loss_mask.sum()) for mb in mbs) == sum(i % 5 + 1 for i in range(11))
