"""A model imported from GGUF (``zaya-rl model import``) runs through the whole pipeline unchanged: a dense
Llama with a tied head and a ChatML template, trained by Muon/AdamW with the torch engine, checkpointed,
resumed and evaluated. The tiny GGUF is written by tests/models/tiny_gguf.py (no download, no 98 MB file).

python -m pytest tests/pipeline/test_imported_model.py -q
"""

from __future__ import annotations

import json

import pytest
from conftest import assert_books_balance, tiny_run_config

pytest.importorskip("gguf")

from tests.models.tiny_gguf import write_tiny_llama_gguf  # noqa: E402
from zaya_rl.models.gguf_import import import_gguf  # noqa: E402
from zaya_rl.pipeline.run import evaluate_target, resume, train  # noqa: E402
from zaya_rl.trainer.checkpoint import step_dir  # noqa: E402

BATCH = 16  # groups_per_step 4 x group_size 4


@pytest.mark.slow  # ~1.5-2.5 min on 2 shared cores (three Ray runs)
def test_train_resume_eval_an_imported_llama(ray_local, tmp_path):
    write_tiny_llama_gguf(tmp_path / "tiny.gguf")
    folder, _ = import_gguf(tmp_path / "tiny.gguf", tmp_path / "tiny-llama", "float32")
    run = tmp_path / "run"
    dense = ["algorithm.router_replay=false", "rollout.record_routing=false"]
    cfg = tiny_run_config(run, f"model.path={folder}", "pipeline.total_steps=2", "checkpoint.every_steps=1", *dense)
    summary = train(cfg)
    assert_books_balance(summary, steps=2, batch=BATCH)
    hf = json.loads((step_dir(run / "checkpoints", 2) / "model" / "config.json").read_text())
    assert hf["architectures"] == ["LlamaForCausalLM"]
    resumed = resume(run, ["pipeline.total_steps=3"])
    assert resumed["resumed_from"] == str(step_dir(run / "checkpoints", 2))
    assert_books_balance(resumed, steps=3, batch=BATCH)
    result = evaluate_target(run)
    assert result["model"] == str(step_dir(run / "checkpoints", 3) / "model") and 0.0 <= result["accuracy"] <= 1.0
