"""The stage runner's bookkeeping with scripted stage runs (no Ray, no model): chaining, boundaries,
resume in the middle of a stage, a crash right at a boundary, refusing to overwrite a curriculum.

The scripted stage run writes what a real one writes (``config.yaml``, ``metrics.jsonl`` step records,
``checkpoints/step_*/{model,COMPLETE}``, ``summary.json``) and can crash after a given step: it replaces
the one-run ``train_run``/``resume_run`` of ``zaya_rl.pipeline.session``, so the curriculum dispatch of the
real ``zaya_rl.pipeline.run.train``/``resume`` is exercised too. The real thing: ``test_e2e.py`` (slow).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import zaya_rl.pipeline.run as run
import zaya_rl.pipeline.session as session
import zaya_rl.pipeline.setup as setup
from zaya_rl.config import ConfigError, config_from_dict, dump_config
from zaya_rl.curriculum.runner import latest_stage_dir
from zaya_rl.paths import latest_checkpoint, step_dir


class TrainerDied(RuntimeError):
    pass


@pytest.fixture
def scripted(monkeypatch):
    """Scripted stage runs; ``crash[name] = step`` makes that stage's next attempt die after ``step``."""
    calls: list[tuple[str, str, str]] = []
    crash: dict[str, int] = {}

    def stage_run(cfg, start: int):
        d, root, name = Path(cfg.run_dir), cfg.checkpoint_root, Path(cfg.run_dir).name[3:]
        for step in range(start + 1, cfg.pipeline.total_steps + 1):
            with (d / "metrics.jsonl").open("a") as f:
                f.write(json.dumps({"step": step, "train/loss": 0.1 * step, "ttc/samples": 4.0, "ttc/base_samples": 12.0,
                                    "ttc/accuracy": 0.5, "ttc/base_accuracy": 0.25}) + "\n")
            if step % cfg.checkpoint.every_steps == 0 or step == cfg.pipeline.total_steps:
                (step_dir(root, step) / "model").mkdir(parents=True)
                (step_dir(root, step) / "COMPLETE").write_text("ok\n")
            if crash.get(name) == step:
                del crash[name]
                raise TrainerDied(f"{name} died after step {step}")
        summary = {"eval_accuracy_before": 0.1, "eval_accuracy_after": 0.2, "eval_before": {"accuracy": 0.1},
                   "eval_after": {"accuracy": 0.2}, "samples_generated": 10 * cfg.pipeline.total_steps,
                   "samples_trained": 8 * cfg.pipeline.total_steps, "samples_dropped": 2 * cfg.pipeline.total_steps,
                   "optimizer_steps": cfg.pipeline.total_steps, "wall_seconds": 1.0}
        (d / "summary.json").write_text(json.dumps(summary))
        return summary

    def fake_train(cfg):
        Path(cfg.run_dir).mkdir(parents=True)
        (Path(cfg.run_dir) / "config.yaml").write_text(dump_config(cfg))
        calls.append(("train", Path(cfg.run_dir).name, cfg.model.path or cfg.model.preset))
        return stage_run(cfg, 0)

    def fake_resume(cfg):
        ckpt = latest_checkpoint(cfg.checkpoint_root)
        calls.append(("resume", Path(cfg.run_dir).name, ckpt.name))
        return stage_run(cfg, int(ckpt.name.split("_")[1]))

    monkeypatch.setattr(session, "train_run", fake_train)
    monkeypatch.setattr(session, "resume_run", fake_resume)
    monkeypatch.setattr(setup, "init_ray", lambda cfg: False)
    monkeypatch.setattr(setup, "setup_logging", lambda run_dir: None)
    return calls, crash


def _cfg(tmp_path):
    return config_from_dict({
        "run_dir": str(tmp_path / "run"), "checkpoint": {"every_steps": 2}, "logging": {"plots": False},
        "stages": [{"name": "a", "steps": 3}, {"name": "b", "steps": 4}, {"name": "c", "steps": 2}],
    })


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_stages_chain_through_final_checkpoints_and_boundaries_are_logged(scripted, tmp_path):
    calls, _ = scripted
    summary = run.train(_cfg(tmp_path))
    stages = tmp_path / "run" / "stages"
    assert calls == [("train", "00_a", "tiny-zaya"),
                     ("train", "01_b", str(stages / "00_a/checkpoints/step_000003/model")),
                     ("train", "02_c", str(stages / "01_b/checkpoints/step_000004/model"))]
    assert [(s["name"], s["optimizer_steps"], s["global_steps"]) for s in summary["stages"]] == [
        ("a", 3, [0, 3]), ("b", 4, [3, 7]), ("c", 2, [7, 9])]
    assert summary["optimizer_steps"] == 9 and summary["samples_trained"] == 8 * 9
    assert summary["final_model"] == str(stages / "02_c/checkpoints/step_000002/model")
    assert summary["stages"][1]["ttc"] == {"sample_frac": 0.25, "accuracy": 0.5, "base_accuracy": 0.25,
                                           "prompt_tokens": None}
    state = json.loads((tmp_path / "run" / "curriculum.json").read_text())
    assert [s["status"] for s in state["stages"]] == ["done"] * 3
    recs = _records(tmp_path / "run")
    starts = [(r["step"], r["stage"]) for r in recs if "curriculum/stage_start" in r]
    ends = [(r["step"], r["stage"]) for r in recs if "curriculum/stage_end" in r]
    assert starts == [(0, "a"), (3, "b"), (7, "c")] and ends == [(3, "a"), (7, "b"), (9, "c")]
    assert [r["step"] for r in recs if "train/loss" in r] == list(range(1, 10))  # the global step axis
    assert json.loads((tmp_path / "run" / "summary.json").read_text()) == summary


def test_resume_finishes_the_interrupted_stage_from_its_checkpoint_then_the_rest(scripted, tmp_path):
    calls, crash = scripted
    cfg = _cfg(tmp_path)
    crash["b"] = 3  # after the boundary a -> b, after b's checkpoint at step 2
    with pytest.raises(TrainerDied):
        run.train(cfg)
    state = json.loads((tmp_path / "run" / "curriculum.json").read_text())
    assert [s["status"] for s in state["stages"]] == ["done", "running", "pending"]
    assert latest_stage_dir(cfg) == tmp_path / "run" / "stages" / "01_b"  # what `zaya-rl eval RUN_DIR` evaluates
    calls.clear()
    summary = run.resume(tmp_path / "run")  # the same entry point as `zaya-rl resume RUN_DIR`
    stages = tmp_path / "run" / "stages"
    assert calls == [("resume", "01_b", "step_000002"),
                     ("train", "02_c", str(stages / "01_b/checkpoints/step_000004/model"))]
    assert [(s["name"], s["optimizer_steps"], s["attempts"]) for s in summary["stages"]] == [
        ("a", 3, 1), ("b", 4, 2), ("c", 2, 1)]
    recs = _records(tmp_path / "run")
    b_steps = [r["step"] for r in recs if r.get("stage") == "b" and "train/loss" in r]
    assert b_steps == [4, 5, 6, 7]  # step 3 ran twice (crash, resume): mirrored once
    assert [r["curriculum/resumed_from"] for r in recs if "curriculum/resumed_from" in r] == [
        str(stages / "01_b/checkpoints/step_000002")]


def test_a_stage_that_finished_just_before_a_crash_is_recorded_not_rerun(scripted, tmp_path):
    calls, _ = scripted
    run.train(_cfg(tmp_path))
    path = tmp_path / "run" / "curriculum.json"
    state = json.loads(path.read_text())
    state["stages"][2].update(status="running")  # the crash hit between the stage's end and the state write
    path.write_text(json.dumps(state))
    calls.clear()
    summary = run.resume(tmp_path / "run")
    assert calls == [] and summary["optimizer_steps"] == 9


def test_train_refuses_a_folder_that_holds_a_curriculum_and_resume_refuses_a_changed_schedule(scripted, tmp_path):
    run.train(_cfg(tmp_path))
    with pytest.raises(ConfigError, match="already holds a curriculum run"):
        run.train(_cfg(tmp_path))
    cfg_path = tmp_path / "run" / "config.yaml"
    cfg_path.write_text(cfg_path.read_text().replace("steps: 4", "steps: 5"))
    with pytest.raises(ConfigError, match="was written for stages"):
        run.resume(tmp_path / "run")


def test_an_interrupted_stage_tells_to_resume_the_curriculum_not_the_stage(scripted, tmp_path, monkeypatch):
    from zaya_rl.pipeline.stopping import EXIT_INTERRUPTED, RunStopped

    def interrupted(cfg):  # what session.train_run raises after Ctrl-C: resume names the stage's folder
        Path(cfg.run_dir).mkdir(parents=True)
        raise RunStopped("interrupted at step 1/3: checkpoint c, summary s", EXIT_INTERRUPTED, cfg.run_dir)

    monkeypatch.setattr(session, "train_run", interrupted)
    with pytest.raises(RunStopped) as e:
        run.train(_cfg(tmp_path))
    assert e.value.exit_code == EXIT_INTERRUPTED
    assert str(e.value) == ("interrupted at step 1/3: checkpoint c, summary s; "
                            f"continue with `zaya-rl resume {tmp_path / 'run'}`")
