"""Held-out evaluation levels (``eval.difficulty``) and accuracy per level, with an adaptive environment
on the real orchestrator and scorer (``inproc``). Run ``python -m pytest tests/pipeline/test_evaluate.py -q``.
"""

from __future__ import annotations

import pytest
from inproc import arithmetic_answer, inproc_orchestrator, run_bounded

from zaya_rl.config import ConfigError, config_from_dict
from zaya_rl.pipeline.evaluate import eval_levels, evaluate
from zaya_rl.pipeline.setup import make_sampler, preflight


def _cfg(difficulty=None, **adaptive):
    return config_from_dict({
        "run_dir": "/tmp/unused", "rollout": {"engine": "fake", "sampling": {"max_new_tokens": 32}},
        "algorithm": {"group_size": 4}, "pipeline": {"groups_per_step": 2, "max_lag": 0},
        "data": {"environments": [{"name": "arithmetic", "difficulty": "adaptive"},
                                  {"name": "reverse", "difficulty": 2}],
                 "adaptive": {"min_prompts_before_check": 1, **adaptive}},
        "canary": {"enabled": False}, "eval": {"num_problems": 3, "difficulty": difficulty},
    })


@pytest.mark.parametrize(
    ("difficulty", "expected"),
    [
        (None, {"arithmetic": [0], "reverse": [2]}),  # today's default: comparable before and after
        (3, {"arithmetic": [3], "reverse": [3]}),
        ([1, 4], {"arithmetic": [1, 4], "reverse": [1, 4]}),
        ("train_levels", {"arithmetic": [2, 3, 4, 5], "reverse": [2]}),  # h = 5, window 4; the fixed level
    ],
)
def test_eval_levels_follow_eval_difficulty(difficulty, expected):
    cfg = _cfg(difficulty)
    sampler = make_sampler(cfg)
    sampler.controller.ladders["arithmetic"].h = 5
    assert eval_levels(cfg, sampler) == expected


def test_an_evaluation_level_outside_an_environments_range_fails_before_the_run():
    with pytest.raises(ConfigError, match=r"eval.difficulty: level 8 is outside arithmetic's range 0..7"):
        preflight(_cfg([1, 8]))
    with pytest.raises(ConfigError, match="eval.difficulty"):
        config_from_dict({"eval": {"difficulty": []}})


def test_after_rl_train_levels_evaluates_where_the_adaptive_ladder_climbed_per_level():
    cfg = _cfg("train_levels")
    orch, scorer = inproc_orchestrator(cfg, arithmetic_answer)  # always right: the arithmetic ladder climbs
    try:
        before = run_bounded(evaluate(orch, cfg, orch.sampler))
        run_bounded(orch.run(8))
        after = run_bounded(evaluate(orch, cfg, orch.sampler))
        fixed = run_bounded(evaluate(orch, cfg.model_copy(update={"eval": cfg.eval.model_copy(
            update={"difficulty": None})}), orch.sampler))
    finally:
        scorer.pool.close()
    h = orch.sampler.controller.ladders["arithmetic"].h
    assert h >= 2  # training reached level h; `reverse` at level 2 is answered wrong (the script adds)
    levels = orch.sampler.train_levels("arithmetic")
    assert levels[-1] == h
    assert {k for k in before if "/d" in k} == {"arithmetic/d0", "reverse/d2"}
    assert {k for k in after if "/d" in k} == {f"arithmetic/d{d}" for d in levels} | {"reverse/d2"}
    assert all(after[f"arithmetic/d{d}"] == 1.0 for d in levels) and after["reverse/d2"] == 0.0, after
    assert after["arithmetic"] == 1.0 and after["accuracy"] == 0.5 and after["errors"] == 0.0
    assert {k for k in fixed if "/d" in k} == {"arithmetic/d0", "reverse/d2"}  # the default stays at level 0


def _vllm_cfg(**over):
    d = {"run_dir": "/tmp/unused", "model": {"dtype": "float32"},
         "rollout": {"engine": "vllm", "vllm": {"engine_kwargs": {"dtype": "bfloat16", "max_num_batched_tokens": 4096}}}}
    for key, value in over.items():
        section, field = key.split("__")
        d.setdefault(section, {})[field] = value
    return config_from_dict(d)


def test_evaluating_a_checkpoint_runs_vllm_at_the_trainers_precision(monkeypatch, tmp_path):
    """``zaya-rl eval`` (``evaluate_target``) hands the actors a config whose vLLM engine holds float32 weights:
    a float32 checkpoint is not rounded to the rollout engine's bfloat16."""
    import zaya_rl.pipeline.actors as actors_mod
    from zaya_rl.config import dump_config
    from zaya_rl.pipeline import run

    seen = []

    class Stop(Exception):
        pass

    def create_actors(cfg, accounting, with_trainer):
        seen.append(cfg)
        raise Stop

    monkeypatch.setattr(run, "init_ray", lambda cfg: False)
    monkeypatch.setattr(actors_mod, "create_actors", create_actors)
    for engine_dtype, expected in (("model", "float32"), ("rollout", "bfloat16")):
        path = tmp_path / f"{engine_dtype}.yaml"
        path.write_text(dump_config(_vllm_cfg(eval__engine_dtype=engine_dtype)))
        with pytest.raises(Stop):
            run.evaluate_target(path)
        kw = seen[-1].rollout.vllm.engine_kwargs
        assert kw == {"dtype": expected, "max_num_batched_tokens": 4096}


def test_eval_engine_config_leaves_matching_or_unset_dtypes_alone():
    from zaya_rl.pipeline.run import eval_engine_config

    same = _vllm_cfg(model__dtype="bfloat16")
    assert eval_engine_config(same) is same
    unset = config_from_dict({"run_dir": "/tmp/unused", "rollout": {"engine": "vllm"}})
    assert eval_engine_config(unset) is unset and "dtype" not in unset.rollout.vllm.engine_kwargs


def _model_folder(path, hidden=8, names=("model.embed_tokens.weight", "model.norm.weight"), **extra):
    import json

    import torch
    from safetensors.torch import save_file

    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": hidden,
                                                  "model_type": "llama", **extra}))
    save_file({n: torch.zeros(hidden) for n in names}, str(path / "model.safetensors"))
    return path


def _target(path, **over):
    from zaya_rl.pipeline.run import EvalTarget

    return EvalTarget(_vllm_cfg(model__path=str(path) if path else None, **over), None)


def test_engine_mismatch_allows_one_engine_only_for_the_same_engine_and_network(tmp_path):
    """A model's weights are reloaded into another's engine only when both configs build the same engine and
    both folders hold the same architecture and tensor names (what a TRL save and our checkpoint differ in,
    ``dtype`` and ``use_cache``, does not count)."""
    from zaya_rl.pipeline.run import engine_mismatch

    a = _target(_model_folder(tmp_path / "a", dtype="bfloat16", use_cache=True))
    assert engine_mismatch(a, _target(_model_folder(tmp_path / "trl", dtype="float32", use_cache=False))) is None
    assert "config.json" in engine_mismatch(a, _target(_model_folder(tmp_path / "wide", hidden=16)))
    other_names = _model_folder(tmp_path / "untied", names=("model.embed_tokens.weight", "lm_head.weight"))
    assert "different tensors" in engine_mismatch(a, _target(other_names))
    b = tmp_path / "b"
    _model_folder(b)
    assert "different engines" in engine_mismatch(a, _target(b, rollout__max_batch_size=7))
    assert "preset" in engine_mismatch(a, _target(None))


def test_evaluate_targets_reloads_weights_into_one_engine_where_it_can(monkeypatch, tmp_path):
    """Consecutive targets of one network share the rollout workers (the next folder is loaded into them, with
    vLLM's prefix cache dropped at each load); a target that cannot starts a new engine, the old one killed."""
    import zaya_rl.pipeline.actors as actors_mod
    from zaya_rl.config import dump_config
    from zaya_rl.pipeline import run

    events = []

    class Actors:
        def __init__(self, cfg):
            self.cfg = cfg

        def kill(self):
            events.append(("kill", self.cfg.model.path))

    def create_actors(cfg, accounting, with_trainer):
        events.append(("engine", cfg.model.path, cfg.rollout.vllm.clear_cache_on_update))
        return Actors(cfg)

    async def load_folder(actors, folder, version):
        events.append(("load", folder, version, actors.cfg.model.path))

    async def eval_only(cfg, actors, ckpt):
        return {"accuracy": 0.5, "engine": actors.cfg.model.path}

    monkeypatch.setattr(run, "init_ray", lambda cfg: False)
    monkeypatch.setattr(actors_mod, "create_actors", create_actors)
    monkeypatch.setattr(run, "_load_folder", load_folder)
    monkeypatch.setattr(run, "_eval_only", eval_only)
    folders = [_model_folder(tmp_path / n, hidden=h) for n, h in (("a", 8), ("b", 8), ("c", 16), ("d", 16))]
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text(dump_config(_vllm_cfg()))
    targets = [(n, cfg_file, [f"model.path={f}"]) for n, f in zip("abcd", folders, strict=True)]
    out = list(run.evaluate_targets(targets[:3]))
    a, b, c, d = (str(f) for f in folders)
    assert [name for name, _ in out] == ["a", "b", "c"]
    assert [(r["model"], r["engine"]) for _, r in out] == [(a, a), (b, a), (c, c)]
    assert events == [("engine", a, True), ("load", b, 1, a), ("kill", a), ("engine", c, True), ("kill", c)]

    async def failing_load(actors, folder, version):
        raise RuntimeError("reload_weights is not supported")

    monkeypatch.setattr(run, "_load_folder", failing_load)  # an engine that cannot reload: d gets its own
    events.clear()
    out = list(run.evaluate_targets(targets[2:]))
    assert [(r["model"], r["engine"]) for _, r in out] == [(c, c), (d, d)]
    assert events == [("engine", c, True), ("kill", c), ("engine", d, True), ("kill", d)]


def test_zaya_rl_eval_takes_several_targets_and_applies_the_overrides_to_each(monkeypatch, capsys):
    import json

    from zaya_rl import cli
    from zaya_rl.pipeline import run

    calls = []

    def evaluate_targets(targets):
        calls.append(list(targets))
        return iter([(name, {"accuracy": 0.25 * i}) for i, (name, _, _) in enumerate(targets)])

    monkeypatch.setattr(run, "evaluate_targets", evaluate_targets)
    assert cli.main(["eval", "runs/a", "eval.num_problems=3", "runs/b"]) == 0
    assert calls[-1] == [("runs/a", "runs/a", ["eval.num_problems=3"]), ("runs/b", "runs/b", ["eval.num_problems=3"])]
    assert json.loads(capsys.readouterr().out) == {"runs/a": {"accuracy": 0.0}, "runs/b": {"accuracy": 0.25}}
    assert cli.main(["eval", "runs/a"]) == 0  # one target: its result, as before
    assert calls[-1] == [("runs/a", "runs/a", [])]
    assert json.loads(capsys.readouterr().out) == {"accuracy": 0.0}
