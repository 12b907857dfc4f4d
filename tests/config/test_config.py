"""Config tree: defaults validate, overrides apply, bad keys and values fail naming the dotted field."""

import pytest
import yaml

from zaya_rl.config import ConfigError, config_from_dict, dump_config, load_config
from zaya_rl.config.base import apply_overrides, parse_override


def test_defaults_validate_and_roundtrip():
    cfg = config_from_dict({})
    assert cfg.algorithm.advantage == "maxrl" and cfg.algorithm.delta == 0.1
    assert config_from_dict(yaml.safe_load(dump_config(cfg))) == cfg


def test_overrides_are_typed_yaml_values():
    cfg = config_from_dict({}, ["algorithm.delta=0.2", "pipeline.mode=sync", "optim.betas=[0.8, 0.9]",
                                "algorithm.max_len=null"])
    assert cfg.algorithm.delta == 0.2 and cfg.pipeline.mode == "sync" and cfg.optim.betas == (0.8, 0.9)


def test_override_creates_nested_and_rejects_non_section():
    assert apply_overrides({}, ["a.b.c=1"]) == {"a": {"b": {"c": 1}}}
    with pytest.raises(ConfigError, match="a.b is not a section"):
        apply_overrides({"a": {"b": 3}}, ["a.b.c=1"])
    with pytest.raises(ConfigError, match="key.sub=value"):
        parse_override("novalue")


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("algorithm.deltaa=0.1", "algorithm.deltaa: unknown key"),
        ("algorithm.delta=1.5", "algorithm.delta"),
        ("algorithm.group_size=many", "algorithm.group_size"),
        ("pipeline.mode=fast", "pipeline.mode"),
        ("rollout.sampling.top_p=0", "rollout.sampling.top_p"),
        ("data.environments=[]", "data.environments"),
        ("algorithm.max_len=8", "algorithm.max_len"),
    ],
)
def test_bad_values_name_the_field(override, field):
    with pytest.raises(ConfigError) as e:
        config_from_dict({}, [override])
    assert field in str(e.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(lst)


def test_configs_in_repo_validate():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "configs"
    files = sorted(root.rglob("*.yaml"))
    assert files, "no configs found"
    for f in files:
        if f.parent.name == "zaya1" and f.name.startswith("_"):
            continue
        load_config(f)


# ------------------------------------------------------------------ sampling and loop options (issue 11)
@pytest.mark.parametrize("value", [0, 0.0, -0.5])
def test_greedy_training_rollouts_are_rejected_at_load_naming_the_field(value):
    with pytest.raises(ConfigError, match=r"rollout\.sampling\.temperature: .*temperature > 0") as e:
        config_from_dict({}, [f"rollout.sampling.temperature={value}"])
    assert "eval.temperature" in str(e.value)  # says where greedy decoding belongs
    assert config_from_dict({}, ["eval.temperature=0"]).eval.temperature == 0.0  # greedy evaluation stays


@pytest.mark.parametrize("value", [0.5, 0.95])
def test_nucleus_sampling_is_rejected_with_the_reason(value):
    with pytest.raises(ConfigError, match=r"rollout\.sampling\.top_p: .*nucleus") as e:
        config_from_dict({}, [f"rollout.sampling.top_p={value}"])
    assert "importance weights" in str(e.value)
    assert config_from_dict({}, ["rollout.sampling.top_p=1"]).rollout.sampling.top_p == 1.0


def test_a_stage_cannot_switch_on_nucleus_sampling():
    with pytest.raises(ConfigError, match=r"top_p"):
        config_from_dict({"stages": [{"name": "a", "steps": 1, "rollout": {"sampling": {"top_p": 0.5}}}]})


def test_router_replay_needs_recorded_routes():
    with pytest.raises(ConfigError, match=r"algorithm\.router_replay=true needs rollout\.record_routing=true"):
        config_from_dict({}, ["rollout.record_routing=false"])
    cfg = config_from_dict({}, ["rollout.record_routing=false", "algorithm.router_replay=false"])
    assert not cfg.algorithm.router_replay


def test_default_stale_policy_keeps_every_sample():
    assert config_from_dict({}).pipeline.stale_policy == "wait"
    assert config_from_dict({}, ["pipeline.stale_policy=drop"]).pipeline.stale_policy == "drop"


def test_maxrl_on_reward_model_rewards_is_cross_checked():
    behavioral = ["behavioral.enabled=true", "behavioral.reward_model.build_tiny=true"]
    assert config_from_dict({}, behavioral).algorithm.nonbinary_advantage == "dr_grpo"
    with pytest.raises(ConfigError, match=r"nonbinary_advantage=error with behavioral\.enabled"):
        config_from_dict({}, [*behavioral, "algorithm.nonbinary_advantage=error"])
    rank = [*behavioral, "behavioral.reward_model.transform=group_rank", "algorithm.nonbinary_advantage=maxrl"]
    with pytest.raises(ConfigError, match=r"group_rank.*2× Dr-GRPO"):
        config_from_dict({}, rank)
    assert config_from_dict({}, [*rank, "algorithm.advantage=dr_grpo"])  # no MaxRL: nothing to check


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"algoritm": {"delta": 0.2}}, "algoritm: unknown key; did you mean algorithm?"),
        ({"rollout": {"sampling": {"temprature": 0.5}}},
         "rollout.sampling.temprature: unknown key; did you mean rollout.sampling.temperature?"),
        ({"data": {"environments": [{"name": "arithmetic", "weigth": 2}]}},
         "data.environments.0.weigth: unknown key; did you mean data.environments.0.weight?"),
        ({"stages": [{"name": "a", "steps": 1, "algorithm": {"deltaa": 0.1}}]},
         "stages.0.algorithm.deltaa: unknown key; did you mean stages.0.algorithm.delta?"),
        ({"stages": [{"name": "a", "stpes": 1}]}, "stages.0.stpes: unknown key; did you mean stages.0.steps?"),
        ({"zzz": 1}, "zzz: unknown key"),
    ],
)
def test_misspelt_keys_get_a_did_you_mean(data, message):
    with pytest.raises(ConfigError) as e:
        config_from_dict(data)
    assert message in str(e.value)
    if "did you mean" not in message:
        assert "did you mean" not in str(e.value)
