"""Behavioural rewards: RM score transformed to [0, 1] and mixed with the IF checks, through the RM actor.

The combination is checked against numbers computed here by hand (sigmoid with ``math.exp``, ranks by
counting) from an independent in-process ``RewardModelScorer`` on the same tiny RM folder.
Run ``python -m pytest tests/pipeline/test_behavioral.py -q`` (the actor test is ``slow``: add ``-m slow``).
"""

from __future__ import annotations

import asyncio
import math

import pytest

from environments.base import Problem
from environments.registry import get_spec
from zaya_rl.config import config_from_dict
from zaya_rl.pipeline.behavioral import BehavioralScorer, RMBatcher, reward_model_path, stop_reward_model


def _cfg(tmp_path, **rm):
    return config_from_dict({"run_dir": str(tmp_path), "behavioral": {
        "enabled": True, "rm_weight": 2.0, "if_weight": 1.0,
        "reward_model": {"build_tiny": True, "max_length": 256, "batch_size": 16, "max_wait_s": 0.5, **rm}}})


def _ifeval_group(seed: int):
    env = get_spec("ifeval").create()
    problem = env.generate(seed, 0)
    responses = [env.reference_response(problem), "no", "A short reply about the topic."]
    scores = [env.verify(problem, r).to_dict() for r in responses]
    scores[1] = {**scores[1], "status": "error", "reason": "verifier timed out"}
    return problem.to_dict(), responses, scores


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@pytest.mark.slow  # ~70 s on 2 cores: Ray, then the RM actor's process imports torch and transformers
def test_rm_and_if_rewards_combine_through_the_actor_in_one_batched_call(ray_local, tmp_path):
    from rewards.reward_model import RewardModelConfig, RewardModelScorer

    cfg = _cfg(tmp_path, transform="sigmoid", temperature=0.5, shift=0.1)
    scorer = BehavioralScorer(cfg)
    groups = [_ifeval_group(0), _ifeval_group(1)]

    async def both():
        return await asyncio.gather(*(scorer.rescore(p, r, s) for p, r, s in groups))

    try:
        outs = asyncio.run(both())
        assert scorer.batcher.calls == 1 and scorer.batcher.pairs_sent == 4  # 2 groups × 2 verified samples
        metrics = scorer.metrics()
    finally:
        stop_reward_model(cfg)
    reference = RewardModelScorer(RewardModelConfig(path=str(reward_model_path(cfg)), max_length=256))
    for (problem, responses, scores), out in zip(groups, outs, strict=True):
        assert out[1] == scores[1]  # the verifier failed: unchanged, excluded later
        for i in (0, 2):
            raw = reference.raw_scores([problem["messages"]], [responses[i]])[0]
            expected = (2.0 * _sigmoid((raw - 0.1) / 0.5) + 1.0 * scores[i]["reward"]) / 3.0
            assert out[i]["reward"] == pytest.approx(expected, abs=1e-5)
            assert out[i]["accuracy"] == scores[i]["accuracy"] and out[i]["status"] == "ok"
    assert groups[0][2][0]["reward"] == 1.0  # the reference response follows every constraint
    assert metrics["behavioral/samples"] == 4.0 and 0.0 <= metrics["behavioral/rm_reward"] <= 1.0
    import ray

    with pytest.raises(ValueError):  # the actor is gone after the run ends
        from zaya_rl.pipeline.actors import actor_name

        ray.get_actor(actor_name(cfg, "reward_model"))


def test_group_rank_transform_and_weights_with_a_scripted_rm(tmp_path):
    cfg = _cfg(tmp_path, transform="group_rank", batch_size=2, max_wait_s=0.0)
    calls = []

    async def start():
        async def raw(prompts, responses):
            calls.append(len(responses))
            return [float(len(r)) for r in responses]  # longer response, higher score
        return raw

    scorer = BehavioralScorer(cfg, start=start)
    problem = Problem("ifeval", 0, 0, [{"role": "user", "content": "hi"}]).to_dict()
    responses = ["aaa", "a", "aa", "aaaa"]
    scores = [{"reward": r, "accuracy": 0.0, "status": "ok", "reason": ""} for r in (0.0, 1.0, 0.5, 0.5)]
    out = asyncio.run(scorer.rescore(problem, responses, scores))
    ranks = [2 / 3, 0.0, 1 / 3, 1.0]  # (rank - 1) / (n - 1) by length
    expected = [(2 * q + v) / 3 for q, v in zip(ranks, (0.0, 1.0, 0.5, 0.5), strict=True)]
    assert [o["reward"] for o in out] == pytest.approx(expected)
    assert calls == [4]  # one group: sent at once (>= batch_size pairs)


def test_rm_failure_marks_the_group_error_and_no_verified_sample_passes_unscored(tmp_path):
    async def start():
        async def raw(prompts, responses):
            raise RuntimeError("CUDA out of memory")
        return raw

    scorer = BehavioralScorer(_cfg(tmp_path), start=start)
    problem = Problem("ifeval", 0, 0, [{"role": "user", "content": "hi"}]).to_dict()
    scores = [{"reward": 1.0, "accuracy": 1.0, "status": "ok", "reason": ""},
              {"reward": 0.0, "accuracy": 0.0, "status": "timeout", "reason": "slow"}]
    out = asyncio.run(scorer.rescore(problem, ["x", "y"], scores))
    assert out[0]["status"] == "error" and "CUDA out of memory" in out[0]["reason"]
    assert out[1] == scores[1]
    assert scorer.metrics()["behavioral/rm_errors"] == 1.0


def test_batcher_flushes_on_size_and_on_time_and_splits_results_in_order():
    sent = []

    async def call(prompts, responses):
        sent.append(list(responses))
        return [float(r) for r in responses]

    async def main():
        b = RMBatcher(call, flush_pairs=3, max_wait_s=0.05)
        first = await asyncio.gather(b.raw_scores(["p"] * 2, ["1", "2"]), b.raw_scores(["p"] * 2, ["3", "4"]))
        last = await b.raw_scores(["p"], ["5"])  # alone: sent when the wait ends
        return first, last

    first, last = asyncio.run(main())
    assert first == [[1.0, 2.0], [3.0, 4.0]] and last == [5.0]
    assert sent == [["1", "2", "3", "4"], ["5"]]
