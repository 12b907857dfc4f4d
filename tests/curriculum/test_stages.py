"""Stage configs: merging into complete run configs, load-time validation errors, layered YAML, the shipped
curricula. Run ``python -m pytest tests/curriculum/test_stages.py -q``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from zaya_rl.config import ConfigError, config_from_dict, dump_config, load_config
from zaya_rl.config.stages import deep_merge
from zaya_rl.curriculum.layers import load_layered
from zaya_rl.curriculum.runner import preflight

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

BASE = {
    "run_dir": "/runs/c", "seed": 7,
    "rollout": {"max_batch_size": 32, "sampling": {"max_new_tokens": 16, "temperature": 0.9}},
    "algorithm": {"group_size": 4},
    "sft": {"enabled": True, "steps": 3},
    "checkpoint": {"dir": "/ckpt"},
    "data": {"environments": [{"name": "arithmetic"}, {"name": "reverse", "weight": 2}]},
}


def _cfg(*stages, **top):
    return config_from_dict({**BASE, **top, "stages": list(stages)})


def test_deep_merge_merges_mappings_and_replaces_lists_and_values():
    base = {"a": {"b": 1, "c": {"d": 2}}, "l": [1, 2], "x": 1}
    out = deep_merge(base, {"a": {"c": {"e": 3}}, "l": [9], "x": {"y": 1}})
    assert out == {"a": {"b": 1, "c": {"d": 2, "e": 3}}, "l": [9], "x": {"y": 1}}
    assert base == {"a": {"b": 1, "c": {"d": 2}}, "l": [1, 2], "x": 1}  # inputs untouched


def test_stage_configs_merge_the_base_and_chain_through_final_checkpoints():
    cfg = _cfg({"name": "warm", "steps": 3, "rollout": {"sampling": {"max_new_tokens": 32}}},
               {"name": "rl", "steps": 5, "data": {"environments": [{"name": "count_char", "difficulty": 2}]},
                "algorithm": {"advantage": "dr_grpo"}})
    warm, rl = cfg.stage_configs()
    # overrides merge key by key: the stage's budget, the base's temperature and batch size stay
    assert warm.rollout.sampling.max_new_tokens == 32 and warm.rollout.sampling.temperature == 0.9
    assert warm.rollout.max_batch_size == 32 and rl.rollout.sampling.max_new_tokens == 16
    # lists replace: the second stage's mixture is its own
    assert [e.name for e in warm.data.environments] == ["arithmetic", "reverse"]
    assert [(e.name, e.difficulty) for e in rl.data.environments] == [("count_char", 2)]
    assert (warm.algorithm.advantage, rl.algorithm.advantage) == ("maxrl", "dr_grpo")
    assert (warm.pipeline.total_steps, rl.pipeline.total_steps) == (3, 5)
    assert (warm.run_dir, rl.run_dir) == ("/runs/c/stages/00_warm", "/runs/c/stages/01_rl")
    assert (warm.checkpoint.dir, rl.checkpoint.dir) == ("/ckpt/00_warm", "/ckpt/01_rl")
    assert (warm.seed, rl.seed) == (7, 8)
    assert (warm.logging.run_name, rl.logging.run_name) == ("c/00_warm", "c/01_rl")
    # stage 0 starts from the base model and runs the warm start; stage 1 from stage 0's last checkpoint
    assert (warm.model.preset, warm.model.path, warm.sft.enabled) == ("tiny-zaya", None, True)
    assert (rl.model.preset, rl.model.path, rl.sft.enabled) == (None, "/ckpt/00_warm/step_000003/model", False)
    assert warm.stages == [] and rl.stages == []


def test_a_later_stage_may_ask_for_its_own_warm_start():
    _, rl = _cfg({"name": "a", "steps": 1}, {"name": "b", "steps": 1, "sft": {"enabled": True}}).stage_configs()
    assert rl.sft.enabled and rl.sft.steps == 3  # the rest of the base sft section is inherited


@pytest.mark.parametrize(
    ("stage", "expected"),
    [
        ({"name": "b", "steps": 2, "algorithm": {"delta": 1.5}}, "stages.1.algorithm.delta"),
        ({"name": "b", "steps": 2, "algorithm": {"deltaa": 0.1}}, "stages.1.algorithm.deltaa: unknown key"),
        ({"name": "b", "steps": 2, "data": {"environments": []}}, "stages.1.data"),
        ({"name": "b", "steps": 2, "data": {"environments": [{"name": "x", "difficulty": "hard"}]}},
         "stages.1.data.environments.0.difficulty"),
        ({"name": "b", "steps": 2, "algorithm": {"max_len": 4}}, "stages.1: Value error, algorithm.max_len (4)"),
        ({"name": "b", "steps": 2, "ttc": {"fraction": 0.5, "tails_per_prompt": 8, "completions_per_problem": 8}},
         "ttc.tails_per_prompt (8) must be <= algorithm.group_size (4)"),
        ({"name": "b", "steps": 2, "behavioral": {"enabled": True}}, "stages.1.behavioral"),
        ({"name": "b", "steps": 0}, "stages.1.steps"),
        ({"name": "b c", "steps": 1}, "stages.1.name"),
        ({"name": "a", "steps": 1}, "stages.1.name: Value error, duplicate stage name (also stages.0.name)"),
        ({"name": "b", "steps": 1, "model": {"preset": "tiny-qwen3moe"}}, "stages.1: Value error, model is run-wide"),
        ({"name": "b", "steps": 1, "pipeline": {"total_steps": 9}}, "pipeline.total_steps: a stage's length"),
        ({"name": "b", "steps": 1, "modle": {}}, "stages.1.modle: unknown key"),
    ],
)
def test_bad_stages_fail_at_load_naming_the_stage_and_field(stage, expected):
    with pytest.raises(ConfigError) as e:
        _cfg({"name": "a", "steps": 1}, stage)
    assert expected in str(e.value)


def test_preflight_resolves_environments_of_every_stage_before_anything_runs():
    cfg = _cfg({"name": "a", "steps": 1}, {"name": "b", "steps": 1, "data": {"environments": [{"name": "arithmtic"}]}})
    with pytest.raises(ConfigError, match=r"stages\.1 \(b\): .*arithmtic"):
        preflight(cfg)
    cfg = _cfg({"name": "a", "steps": 1, "data": {"environments": [{"name": "arithmetic", "difficulty": 99}]}})
    with pytest.raises(ConfigError, match=r"stages\.0 \(a\): data\.environments\[0\]\.difficulty"):
        preflight(cfg)
    with pytest.raises(ConfigError, match="model.path: /nowhere is not an HF checkpoint folder"):
        preflight(_cfg({"name": "a", "steps": 1}, model={"path": "/nowhere"}))


def test_tiny_curriculum_has_the_five_stages_and_passes_preflight():
    cfg = load_config(CONFIGS / "tiny_curriculum.yaml")
    stages = preflight(cfg)
    assert [s.name for s in cfg.stages] == ["reasoning_warmup", "rlve_gym", "math_code_ttc_1", "math_code_ttc_2",
                                           "behavioral"]
    assert any(e.difficulty == "adaptive" for e in stages[1].data.environments)
    assert stages[2].ttc.fraction > 0 and stages[4].behavioral.enabled and stages[4].behavioral.reward_model.build_tiny
    dumped = yaml.safe_load(dump_config(cfg))  # what a run folder's config.yaml holds, and resume reads
    assert config_from_dict(dumped) == cfg and "algorithm" not in dumped["stages"][0]  # only the overrides


def test_zaya1_schedule_needs_the_user_s_checkpoints_and_then_validates(tmp_path):
    files = [str(CONFIGS / "zaya1" / "_base.yaml"), str(CONFIGS / "zaya1" / "_stages.yaml")]
    with pytest.raises(ConfigError, match=r"model\.path: not set .*Add model\.path="):
        load_layered(files)
    ckpt, rm = tmp_path / "zaya1", tmp_path / "rm"
    for d in (ckpt, rm):
        d.mkdir()
        (d / "config.json").write_text('{"model_type": "zaya"}')  # an MoE model: router replay applies
    with pytest.raises(ConfigError, match=r"stages\.4\.behavioral: .*behavioral\.reward_model\.path: required"):
        load_layered([*files, f"model.path={ckpt}"])
    cfg = load_layered([*files, f"model.path={ckpt}", f"behavioral.reward_model.path={rm}", "run_dir=/r"])
    stages = preflight(cfg)  # every environment name resolves, every fixed level is in range
    assert [(s.name, s.steps) for s in cfg.stages] == [("reasoning_warmup", 232), ("rlve_gym", 400),
                                                       ("math_code_ttc_1", 384), ("math_code_ttc_2", 464),
                                                       ("behavioral", 384)]
    assert all(e.difficulty == "adaptive" and e.name.startswith("rlve/") for e in stages[1].data.environments)
    assert stages[0].model.path == str(ckpt) and stages[0].rollout.engine == "vllm"
    assert stages[4].behavioral.enabled and stages[4].rollout.num_workers == 3
    assert stages[4].algorithm.advantage == "dr_grpo" and stages[2].ttc.fraction == 0.25
