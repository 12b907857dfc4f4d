"""Reward-model scorer, in-process and as a Ray actor: python -m pytest tests/rewards/test_reward_model.py -q

One tiny randomly initialised RM and one local Ray instance serve the whole module (Ray takes seconds
to start).
"""

from __future__ import annotations

import math
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

torch = pytest.importorskip("torch")

from rewards.reward_model import (  # noqa: E402
    RewardModelConfig,
    RewardModelScorer,
    build_tiny_reward_model,
    reward_model_actor,
)
from rewards.rm_transforms import TransformConfig  # noqa: E402

PROMPTS = [[{"role": "user", "content": "Say hi."}], "What is 2+2?", [{"role": "system", "content": "Be brief."},
                                                                   {"role": "user", "content": "Name a colour."}]]
RESPONSES = ["Hello there, friend!", "4", "Blue" * 40]


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory):
    return build_tiny_reward_model(str(tmp_path_factory.mktemp("tiny_rm")), seed=0)


@pytest.fixture(scope="module")
def scorer(rm_dir):
    return RewardModelScorer(RewardModelConfig(path=rm_dir, max_length=512, batch_size=3))


def single_forward(scorer: RewardModelScorer, text: str, max_length: int | None = None) -> float:
    """Independent path: one unpadded sequence, truncated by hand from the left."""
    ids = scorer.tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = ids[-max_length:] if max_length else ids
    with torch.no_grad():
        return scorer.model(input_ids=torch.tensor([ids])).logits[0, 0].item()


def test_chat_template_formatting(scorer):
    assert scorer.format_pair("Hi?", "Yo") == "<|bos|><|user|>Hi?<|eos|><|assistant|>Yo<|eos|>"


def test_batched_padded_scores_match_single_sequences(scorer):
    raw = scorer.raw_scores(PROMPTS, RESPONSES)
    expected = [single_forward(scorer, scorer.format_pair(p, r)) for p, r in zip(PROMPTS, RESPONSES, strict=True)]
    assert raw == pytest.approx(expected, abs=1e-5)
    assert len(set(round(x, 6) for x in raw)) == 3  # the random model tells inputs apart


def test_truncation_keeps_the_end(rm_dir):
    short = RewardModelScorer(RewardModelConfig(path=rm_dir, max_length=16, batch_size=2))
    raw = short.raw_scores(PROMPTS[:2], ["x" * 100, "ok"])
    expected = [single_forward(short, short.format_pair(p, r), 16) for p, r in zip(PROMPTS[:2], ["x" * 100, "ok"],
                                                                                     strict=True)]
    assert raw == pytest.approx(expected, abs=1e-5)


def test_score_applies_the_transform(rm_dir, scorer):
    raw = scorer.raw_scores(PROMPTS, RESPONSES)
    sig = RewardModelScorer(RewardModelConfig(path=rm_dir, transform=TransformConfig("sigmoid", temperature=0.5)))
    assert sig.score(PROMPTS, RESPONSES) == pytest.approx([1 / (1 + math.exp(-x / 0.5)) for x in raw], abs=1e-6)
    ranked = RewardModelScorer(RewardModelConfig(path=rm_dir, transform=TransformConfig("group_rank")))
    out = ranked.score(PROMPTS, RESPONSES, groups=[0, 0, 1])
    assert out[2] == 0.5 and sorted(out[:2]) == [0.0, 1.0]


def test_config_validation(rm_dir, scorer):
    with pytest.raises(ValueError, match="max_length"):
        RewardModelConfig(path=rm_dir, max_length=1)
    with pytest.raises(ValueError, match="prompts"):
        scorer.raw_scores(PROMPTS, RESPONSES[:1])


def test_ray_actor_matches_in_process(rm_dir, scorer):
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        actor = reward_model_actor(RewardModelConfig(path=rm_dir, max_length=512, batch_size=2), num_cpus=1)
        remote = ray.get(actor.score.remote(PROMPTS, RESPONSES), timeout=120)
        assert remote == pytest.approx(scorer.score(PROMPTS, RESPONSES), abs=1e-5)
    finally:
        ray.shutdown()
