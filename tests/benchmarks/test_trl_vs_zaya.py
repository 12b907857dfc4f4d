"""The pure parts of benchmarks/trl_vs_zaya.py: reward shaping that gives TRL our MaxRL advantage, the
time-to-samples comparison, TRL's batch layout, the config refusals and the metrics.jsonl reader."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest
import torch

from zaya_rl.algorithms.advantages import dr_grpo, maxrl
from zaya_rl.config import ConfigError

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "trl_vs_zaya.py"
_spec = importlib.util.spec_from_file_location("trl_vs_zaya", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def trl_dr_grpo_advantage(rewards: list[float], groups: list[int]) -> list[float]:
    """TRL's advantage under scale_rewards='none': reward minus its group's mean (grpo_trainer.py)."""
    means = {g: sum(r for r, h in zip(rewards, groups, strict=True) if h == g) / groups.count(g) for g in set(groups)}
    return [r - means[g] for r, g in zip(rewards, groups, strict=True)]


def test_maxrl_shaping_makes_trl_advantage_equal_maxrl():
    rng = random.Random(0)
    for _ in range(50):
        G, n = rng.choice([2, 4, 8]), rng.randint(1, 4)
        rewards = [float(rng.random() < rng.random()) for _ in range(G * n)]
        groups = [i // G for i in range(G * n)]
        shaped = bench.shaped_rewards(rewards, groups, "maxrl", "dr_grpo")
        got = trl_dr_grpo_advantage(shaped, groups)
        want = maxrl(torch.tensor(rewards, dtype=torch.float64).view(n, G)).flatten().tolist()
        assert got == pytest.approx(want, abs=1e-12)


def test_maxrl_shaping_by_hand_and_nonbinary_groups():
    # group 0: one success of 4 -> mu = 1/4, r' = 4, 0, 0, 0 -> A = 3, -1, -1, -1 (N r / K - 1)
    # group 1: all fail -> A = 0; group 2: non-binary rewards -> left as they are (Dr-GRPO: r - mean)
    rewards = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 1.0, 0.0, 0.5]
    groups = [7, 7, 7, 7, 3, 3, 3, 3, 9, 9, 9, 9]  # group ids are keys, not positions
    shaped = bench.shaped_rewards(rewards, groups, "maxrl", "dr_grpo")
    assert trl_dr_grpo_advantage(shaped, groups) == pytest.approx([3, -1, -1, -1, 0, 0, 0, 0, 0, 0.5, -0.5, 0])
    want_nonbinary = dr_grpo(torch.tensor([0.5, 1.0, 0.0, 0.5])).tolist()
    assert trl_dr_grpo_advantage(shaped, groups)[8:] == pytest.approx(want_nonbinary)
    assert bench.shaped_rewards(rewards, groups, "dr_grpo", "dr_grpo") == rewards


def test_time_to_samples_and_compare():
    curve = [(10.0, 8), (19.0, 16), (31.0, 24)]
    assert bench.time_to_samples(curve, 16) == 19.0
    assert bench.time_to_samples(curve, 25) is None
    trl = {"samples_trained": 16, "loop_s": 40.0, "curve": [(20.0, 8), (40.0, 16)], "accuracy_after": 0.25,
           "process_s": 90.0}
    zaya = {"samples_trained": 24, "loop_s": 31.0, "curve": curve, "accuracy_after": 0.30, "process_s": 60.0}
    c = bench.compare(trl, zaya, budget=24)
    assert c["common_samples"] == 16 and not c["both_reached_budget"]
    assert c["speedup_loop"] == pytest.approx(40.0 / 19.0, abs=1e-3)
    assert c["speedup_samples_per_s"] == pytest.approx((24 / 31) / (16 / 40), abs=1e-3)
    assert "speedup_process" not in c  # setup-included wall is only comparable at the same samples
    assert c["accuracy_points_zaya_minus_trl"] == pytest.approx(5.0)
    assert c["time_comparison"].startswith("samples/s")


def test_micro_batch_divides_the_batch():
    assert bench.micro_batch(64, 8) == 8
    assert bench.micro_batch(48, 10) == 8
    assert bench.micro_batch(6, 64) == 6


def test_wilson_interval():
    lo, hi = bench.wilson(50, 100)  # textbook: 0.4038 .. 0.5962
    assert (lo, hi) == (pytest.approx(0.4038, abs=1e-4), pytest.approx(0.5962, abs=1e-4))
    assert bench.wilson(0, 0) is None


def test_zaya_curve_reads_steps_after_the_before_eval(tmp_path):
    recs = [{"step": 0, "time_s": 5.0, "eval/before/accuracy": 0.0},
            {"step": 1, "time_s": 9.0, "samples/trained": 8.0, "train/loss": 0.1},
            {"step": 1, "time_s": 9.5, "perf/publish_s": 0.2},
            {"step": 2, "time_s": 14.0, "samples/trained": 16.0, "train/loss": 0.2}]
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    assert bench.zaya_curve(path) == ([(4.0, 8), (9.0, 16)], 16, 9.0)


@pytest.mark.parametrize("override, field", [
    ([], "model.path"),
    (["model.path=/x", "sft.enabled=true"], "sft.enabled"),
    (["model.path=/x", "ttc.fraction=0.5"], "ttc.fraction"),
])
def test_resolve_config_refuses_what_trl_cannot_match(tmp_path, override, field):
    with pytest.raises(ConfigError, match=field):
        bench.resolve_config("configs/tiny_cpu.yaml", ["sft.enabled=false", *override], tmp_path, None)


def test_trl_settings_match_the_config(tmp_path):
    cfg, path = bench.resolve_config(
        "configs/tiny_cpu.yaml", ["model.path=/m", "sft.enabled=false", "optim.warmup_steps=3",
                                  "trainer.micro_batch_size=16"], tmp_path, 5)
    assert path.read_text().count("num_problems: 0") == 1  # the timed run evaluates nothing
    kw = bench.trl_settings(cfg, tmp_path, cuda=True, advantage="config")
    assert kw["max_steps"] == 5 and kw["num_generations"] == cfg.algorithm.group_size
    assert kw["per_device_train_batch_size"] * kw["gradient_accumulation_steps"] == cfg.batch_size
    assert (kw["loss_type"], kw["beta"], kw["scale_rewards"]) == ("dr_grpo", 0.0, "none")
    assert kw["lr_scheduler_type"] == "constant_with_warmup" and kw["warmup_steps"] == 3
    assert kw["vllm_mode"] == "colocate" and kw["vllm_importance_sampling_clip_max"] == cfg.algorithm.tis_cap
    assert kw["tf32"] is False
    tf32, _ = bench.resolve_config("configs/tiny_cpu.yaml", ["model.path=/m", "sft.enabled=false",
                                                            "trainer.matmul_precision=high"], tmp_path, 5)
    assert bench.trl_settings(tf32, tmp_path, cuda=True, advantage="config")["tf32"] is True
    cpu = bench.trl_settings(cfg, tmp_path, cuda=False, advantage="dr_grpo")
    assert not cpu["use_vllm"] and "vllm_mode" not in cpu


@pytest.mark.parametrize("system_prompt", [None, "Answer with a number."])
def test_trl_prompt_tokens_equal_ours(system_prompt):
    from environments.registry import get_environment
    from zaya_rl.models.tokenizer import build_byte_tokenizer

    env = get_environment("arithmetic")
    prompts = [env.generate(seed, 0).messages for seed in range(4)]
    tok = build_byte_tokenizer()
    assert bench.prompt_mismatches(tok, prompts, system_prompt) == []
    with_system = bench.trl_messages(prompts[0], system_prompt)
    assert (with_system[0]["role"] == "system") == (system_prompt is not None)


def _fake_sides(monkeypatch, tmp_path, eval_rc, eval_targets):
    """main() with its subprocesses faked: TRL writes its result, zaya returns its run, the evaluation writes
    ``eval_targets`` (of the requested ones) and exits ``eval_rc``; returns the evaluation's time limits."""
    limits = []
    curve = [[1.0, 8], [2.0, 16]]

    def sub(py, args, limit, log_path, env):
        if args[0] == "_trl":
            Path(args[-1]).write_text(json.dumps({"samples_trained": 16, "loop_s": 4.0, "curve": [[2.0, 8], [4.0, 16]],
                                                  "stopped_by_time_box": False, "model_dir": str(tmp_path / "trl")}))
            return 0, False
        limits.append(limit)
        evals = {name: {"accuracy": 0.5} for name, *_ in json.loads(args[2]) if name in eval_targets}
        if evals:
            Path(args[3]).write_text(json.dumps(evals))
        return eval_rc, eval_rc != 0

    def zaya(cfg, cfg_path, py, box, env):
        return {"samples_trained": 16, "loop_s": 2.0, "curve": curve, "stopped_by_time_box": False,
                "process_s": 9.0, "run_dir": str(cfg.run_dir)}

    monkeypatch.setattr(bench, "_sub", sub)
    monkeypatch.setattr(bench, "run_zaya", zaya)
    return limits


def test_a_cut_evaluation_keeps_the_speed_record(monkeypatch, tmp_path):
    limits = _fake_sides(monkeypatch, tmp_path, eval_rc=124, eval_targets=())
    out = tmp_path / "r.json"
    argv = ["--config", "configs/tiny_cpu.yaml", "model.path=/m", "sft.enabled=false", "--steps", "2",
            "--work", str(tmp_path / "w"), "--out", str(out), "--deadline-s", "100"]
    with pytest.raises(RuntimeError, match="evaluation failed"):
        bench.main(argv)
    rec = json.loads(out.read_text())
    assert rec["comparison"]["speedup_loop"] == pytest.approx(2.0) and rec["eval"] == {}
    assert "not finished" in rec["eval_not_finished"]
    assert len(limits) == 1 and limits[0] <= 100  # the evaluation never outlives --deadline-s


def test_a_partial_evaluation_is_recorded_as_cut(monkeypatch, tmp_path):
    _fake_sides(monkeypatch, tmp_path, eval_rc=124, eval_targets=("trl",))
    out = tmp_path / "r.json"
    bench.main(["--config", "configs/tiny_cpu.yaml", "model.path=/m", "sft.enabled=false", "--steps", "2",
                "--work", str(tmp_path / "w"), "--out", str(out), "--no-base-eval"])
    rec = json.loads(out.read_text())
    assert rec["trl"]["accuracy_after"] == 0.5 and rec["zaya"]["accuracy_after"] is None
    assert rec["eval_not_finished"].startswith("cut") and "trl" in rec["eval_not_finished"]


def test_the_first_model_is_evaluated_again_after_the_others_were_reloaded(monkeypatch, tmp_path):
    """The shared evaluation engine's check: the first model, reloaded last, must score as it did fresh."""
    _fake_sides(monkeypatch, tmp_path, eval_rc=0, eval_targets=("trl", "base", bench.RELOAD_CHECK))
    out = tmp_path / "r.json"
    bench.main(["--config", "configs/tiny_cpu.yaml", "model.path=/m", "sft.enabled=false", "--steps", "2",
                "--work", str(tmp_path / "w"), "--out", str(out)])
    rec = json.loads(out.read_text())
    assert rec["eval_reload_check"] == {"model": "trl", "equal": True}
    fresh = {"accuracy": 0.5, "rg/chain_sum": 0.5, "model": "/a", "eval_s": 9.0, "ci95": [0.1, 0.9]}
    assert bench.reload_equal(fresh, {**fresh, "model": "/a", "eval_s": 1.0})
    assert not bench.reload_equal(fresh, {**fresh, "rg/chain_sum": 0.4375})


@pytest.mark.parametrize("variant, field", [("pipeline.total_steps=3", "total_steps"), ("seed=7", "seed"),
                                            ("pipeline.groups_per_step=3", "batch"), ("data.system_prompt=x", "data")])
def test_a_variant_may_not_change_what_trl_shares(tmp_path, variant, field):
    base, _ = bench.resolve_config("configs/tiny_cpu.yaml", ["model.path=/m", "sft.enabled=false"], tmp_path, None)
    with pytest.raises(ConfigError, match=field):
        bench.resolve_variant(base, "configs/tiny_cpu.yaml", ["model.path=/m", "sft.enabled=false"], variant,
                              tmp_path / "v", None)
    ok, _ = bench.resolve_variant(base, "configs/tiny_cpu.yaml", ["model.path=/m", "sft.enabled=false"],
                                  "optim.muon=false", tmp_path / "v", None)
    assert not ok.optim.muon and ok.run_dir != base.run_dir


def test_variants_run_after_both_sides_and_are_compared_with_the_same_trl_run(monkeypatch, tmp_path):
    from zaya_rl.paths import COMPLETE_MARKER, step_dir

    limits = _fake_sides(monkeypatch, tmp_path, eval_rc=0, eval_targets=("trl", "zaya", "variant0", "variant1"))
    runs = []

    def zaya(cfg, cfg_path, py, box, env):  # a run that leaves a checkpoint, as zaya-rl train does
        runs.append(cfg)
        ckpt = step_dir(cfg.checkpoint_root, 2)
        ckpt.mkdir(parents=True)
        (ckpt / COMPLETE_MARKER).write_text("")
        loop = 1.0 if cfg.optim.muon else 4.0
        return {"samples_trained": 16, "loop_s": loop, "curve": [[loop / 2, 8], [loop, 16]],
                "stopped_by_time_box": False, "process_s": 9.0, "run_dir": str(cfg.run_dir)}

    monkeypatch.setattr(bench, "run_zaya", zaya)
    out = tmp_path / "r.json"
    bench.main(["--config", "configs/tiny_cpu.yaml", "model.path=/m", "sft.enabled=false", "--steps", "2",
                "--work", str(tmp_path / "w"), "--out", str(out), "--no-base-eval",
                "--zaya-variant", "optim.muon=false", "--zaya-variant", "optim.lr=1e-4 pipeline.max_lag=2"])
    assert [(c.optim.muon, c.optim.lr, c.pipeline.max_lag) for c in runs] == [
        (True, runs[0].optim.lr, runs[0].pipeline.max_lag), (False, runs[0].optim.lr, runs[0].pipeline.max_lag),
        (True, 1e-4, 2)]
    assert len({str(c.run_dir) for c in runs}) == 3  # each run in its own folder
    rec = json.loads(out.read_text())
    assert rec["eval_engine_dtype"] == "float32"
    v0, v1 = rec["variants"]
    assert v0["overrides"] == ["optim.muon=false"] and v1["overrides"] == ["optim.lr=1e-4", "pipeline.max_lag=2"]
    # TRL reached 16 samples in 4.0 s: the Muon variant in 1.0 s (4x), the AdamW one in 4.0 s (1x)
    assert v0["comparison"]["speedup_loop"] == pytest.approx(1.0) and v1["comparison"]["speedup_loop"] == pytest.approx(4.0)
    assert v0["zaya"]["accuracy_after"] == 0.5 and v0["comparison"]["accuracy_after"] == {"trl": 0.5, "zaya": 0.5}
    assert len(limits) == 1  # one evaluation process for all four models


def test_a_bad_variant_fails_before_any_run(monkeypatch, tmp_path):
    _fake_sides(monkeypatch, tmp_path, eval_rc=0, eval_targets=())
    monkeypatch.setattr(bench, "run_zaya", lambda *a: pytest.fail("a run started"))
    with pytest.raises(ConfigError, match="seed"):
        bench.main(["--config", "configs/tiny_cpu.yaml", "model.path=/m", "sft.enabled=false", "--steps", "2",
                    "--work", str(tmp_path / "w"), "--zaya-variant", "seed=3"])


def test_a_failed_or_late_variant_leaves_the_two_sides_compared(monkeypatch, tmp_path):
    from zaya_rl.paths import COMPLETE_MARKER, step_dir

    _fake_sides(monkeypatch, tmp_path, eval_rc=0, eval_targets=("trl", "zaya"))
    t0, now, boxes = bench.time.time(), [0.0], []
    monkeypatch.setattr(bench.time, "time", lambda: t0 + now[0])

    def zaya(cfg, cfg_path, py, box, env):  # each zaya run takes 100 s of the fake clock
        boxes.append(box)
        now[0] += 100.0
        if len(boxes) == 2:
            raise RuntimeError("zaya-rl train failed (rc=1)")
        ckpt = step_dir(cfg.checkpoint_root, 2)
        ckpt.mkdir(parents=True)
        (ckpt / COMPLETE_MARKER).write_text("")
        return {"samples_trained": 16, "loop_s": 2.0, "curve": [[1.0, 8], [2.0, 16]], "stopped_by_time_box": False,
                "process_s": 9.0, "run_dir": str(cfg.run_dir)}

    monkeypatch.setattr(bench, "run_zaya", zaya)
    out = tmp_path / "r.json"
    bench.main(["--config", "configs/tiny_cpu.yaml", "model.path=/m", "sft.enabled=false", "--steps", "2",
                "--work", str(tmp_path / "w"), "--out", str(out), "--no-base-eval", "--deadline-s", "400",
                "--time-box-s", "150", "--zaya-variant", "optim.muon=false", "--zaya-variant", "optim.lr=1e-4"])
    rec = json.loads(out.read_text())
    assert rec["comparison"]["accuracy_after"] == {"trl": 0.5, "zaya": 0.5}  # the main pair is intact
    v0, v1 = rec["variants"]
    assert "failed" in v0 and "zaya" not in v0 and "comparison" not in v0
    assert "skipped" in v1 and "zaya" not in v1
    # zaya: its 150-s box; variant0 at t=100: 400 - 100 - (the engine's start 100 s + 3 reloads x 30 s) = 110 s;
    # variant1 at t=200: 400 - 200 - (100 + 4 x 30) < 60 s, so it never starts
    assert boxes == [150, pytest.approx(110.0)]


def test_reuse_trl_takes_an_earlier_trl_side_and_refuses_one_that_trained_something_else(monkeypatch, tmp_path):
    """--reuse-trl: TRL's side from an earlier --work folder (not trained again), compared with this run's zaya;
    refused before any run when that TRL run's shared config, TRL settings or estimator differ."""
    def base(*change):
        return ["--config", "configs/tiny_cpu.yaml", "model.path=/m", "sft.enabled=false", *change, "--steps", "2",
                "--no-base-eval"]

    _fake_sides(monkeypatch, tmp_path, eval_rc=0, eval_targets=("trl", "zaya"))
    earlier = tmp_path / "w1"
    cfg, _ = bench.resolve_config("configs/tiny_cpu.yaml", ["model.path=/m", "sft.enabled=false"], earlier, 2)
    (tmp_path / "trl_model").mkdir()
    settings = {k: v for k, v in bench.trl_settings(cfg, earlier, cuda=False, advantage="config").items()
                if k != "output_dir"}
    trl = {"samples_trained": 16, "loop_s": 8.0, "curve": [[4.0, 8], [8.0, 16]], "stopped_by_time_box": False,
           "process_s": 30.0, "model_dir": str(tmp_path / "trl_model"), "advantage": "config", "settings": settings}
    (earlier / "trl_result.json").write_text(json.dumps(trl))
    calls = []
    monkeypatch.setattr(bench, "_sub", lambda py, args, *a: (calls.append(args[0]), bench_eval(args))[1])

    def bench_eval(args):
        Path(args[3]).write_text(json.dumps({n: {"accuracy": 0.5} for n, *_ in json.loads(args[2])}))
        return 0, False

    out = tmp_path / "r.json"
    bench.main([*base(), "--work", str(tmp_path / "w2"), "--out", str(out), "--reuse-trl", str(earlier)])
    assert calls == ["_eval"]  # TRL was not trained again
    rec = json.loads(out.read_text())
    assert rec["trl"]["reused_from"] == str(earlier) and rec["comparison"]["speedup_loop"] == pytest.approx(4.0)

    for change, field in ((["optim.lr=1e-3"], "TRL setting learning_rate"), (["seed=3"], "seed")):
        with pytest.raises(ConfigError, match=field):
            bench.main([*base(*change), "--work", str(tmp_path / "w3"), "--reuse-trl", str(earlier)])
    with pytest.raises(ConfigError, match="advantage 'config', this run asks 'dr_grpo'"):
        bench.main([*base(), "--trl-advantage", "dr_grpo", "--work", str(tmp_path / "w3"), "--reuse-trl", str(earlier)])
    with pytest.raises(ConfigError, match="no trl_result.json"):
        bench.main([*base(), "--work", str(tmp_path / "w3"), "--reuse-trl", str(tmp_path / "nowhere")])
    assert calls == ["_eval"]  # every refusal came before any run
