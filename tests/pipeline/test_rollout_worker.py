"""``RolloutWorker.groups_in_flight`` (the multi-node drill waits for one before it kills a node) counts the
groups being generated, whether they came one per call (async mode) or together (sync mode,
``generate_groups``). Run ``python -m pytest tests/pipeline/test_rollout_worker.py -q``."""

from __future__ import annotations

import asyncio

from inproc import TOK

from zaya_rl.config import config_from_dict
from zaya_rl.pipeline.records import GroupSpec
from zaya_rl.pipeline.rollout_worker import RolloutWorker
from zaya_rl.rollout.base import SamplingParams
from zaya_rl.rollout.fake import ScriptedEngine


def test_groups_in_flight_counts_single_and_joint_generation():
    cfg = config_from_dict({"run_dir": "/tmp/unused", "rollout": {"engine": "fake"}, "canary": {"enabled": False}})
    engine = ScriptedEngine(lambda ids: [*TOK.encode("Answer: 1", add_special_tokens=False), TOK.eos_token_id],
                            tokenizer=TOK, token_delay=0.01)
    worker = RolloutWorker(cfg.model_dump(mode="json"), 0, built=(engine, TOK))  # as benchmarks/gpu/bench_vllm.py
    params = SamplingParams(max_new_tokens=16, temperature=1.0, seed=0)

    def spec(gid):
        return GroupSpec(gid, "arithmetic", gid, 0, {"messages": [{"role": "user", "content": "1+0="}]})

    async def main():
        seen = []
        one = asyncio.ensure_future(worker.generate_group(spec(0), 2, params))
        joint = asyncio.ensure_future(worker.generate_groups([(spec(1), 2, params, None), (spec(2), 2, params, None)]))
        await asyncio.sleep(0.03)  # every request is decoding (10 tokens of 10 ms each)
        seen.append(worker.groups_in_flight())
        rollouts = await one
        seen.append(worker.groups_in_flight())
        groups = await joint
        seen.append(worker.groups_in_flight())
        return seen, rollouts, groups

    seen, rollouts, groups = asyncio.run(main())
    assert seen[0] == 3 and seen[1] in (0, 2) and seen[2] == 0
    assert [r.text for r in rollouts] == ["Answer: 1"] * 2 and [len(g) for g in groups] == [2, 2]
