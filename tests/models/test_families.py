"""Router replay on a model it cannot apply to fails at config time (``pipeline.setup.preflight``), from the
checkpoint's ``config.json`` alone. Run ``python -m pytest tests/models/test_families.py -q``."""

from __future__ import annotations

import json

import pytest

from zaya_rl.config import ConfigError, config_from_dict
from zaya_rl.models.families import REPLAY_MODEL_TYPES
from zaya_rl.models.router_replay import ROUTER_FAMILIES
from zaya_rl.pipeline.setup import preflight


def test_the_model_types_name_the_replayed_router_classes():
    assert set(REPLAY_MODEL_TYPES.values()) == set(ROUTER_FAMILIES)


@pytest.mark.parametrize("preset", ["tiny-zaya", "tiny-qwen3moe"])
def test_presets_are_replayable_model_types(preset, tmp_path):
    from zaya_rl.models.policy import load_policy, save_policy

    model, tok = load_policy(preset, seed=0)
    save_policy(model, tok, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] in REPLAY_MODEL_TYPES
    preflight(config_from_dict({"model": {"path": str(tmp_path)}}))


@pytest.mark.parametrize(("config", "words"), [
    ({"model_type": "llama", "hidden_size": 576}, "a dense model"),
    ({"model_type": "mixtral", "num_local_experts": 8}, "an MoE family without replay support"),
])
def test_router_replay_on_an_unsupported_checkpoint_fails_at_preflight(config, words, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(config))
    cfg = config_from_dict({"model": {"path": str(tmp_path)}})
    with pytest.raises(ConfigError, match=rf"algorithm\.router_replay: .*'{config['model_type']}', {words}.*"
                                          r"algorithm\.router_replay=false"):
        preflight(cfg)
    preflight(config_from_dict({"model": {"path": str(tmp_path)}, "algorithm": {"router_replay": False},
                                "rollout": {"record_routing": False}}))
