"""python -m pytest tests/models/test_policy.py -q -s   (-s prints the measured forward+backward time)"""

from __future__ import annotations

import argparse
import time

import pytest
import torch

from zaya_rl.config.schema import ModelConfig
from zaya_rl.models import commands
from zaya_rl.models.policy import PRESETS, build_model_and_tokenizer, load_policy


def test_tiny_zaya_exercises_every_zaya_component(tiny_zaya):
    model, tok = tiny_zaya
    c = model.config
    assert type(model).__name__ == "ZayaForCausalLM"
    assert (
        c.vocab_size == len(tok) and c.pad_token_id == tok.pad_token_id and c.eos_token_id == tok.eos_token_id
    )
    assert 2 <= c.num_hidden_layers <= 4 and 64 <= c.hidden_size <= 128
    assert c.num_experts == 8 and c.num_experts_per_tok == 1 and c.tie_word_embeddings
    names = {type(m).__name__ for m in model.modules()}
    assert {"ZayaCCAProjection", "ZayaRouter", "ZayaExperts", "ZayaResidualScaling"} <= names
    routers = [m for m in model.modules() if type(m).__name__ == "ZayaRouter"]
    assert routers[1].use_eda and routers[0].balancing_biases[-1] == -1.0  # EDA state and the skip class
    assert model.lm_head.weight is model.model.embed_tokens.weight


def test_tiny_qwen3moe_is_top2_with_untied_head(tiny_qwen):
    model, tok = tiny_qwen
    assert type(model).__name__ == "Qwen3MoeForCausalLM" and model.config.vocab_size == len(tok)
    assert model.config.num_experts == 8 and model.config.num_experts_per_tok == 2
    assert model.lm_head.weight is not model.model.embed_tokens.weight


def test_forward_backward_budget(tiny_zaya):
    """64 sequences x 80 tokens, forward + backward: the tiny CPU job's unit of work (budget: well under 1 s
    on 2 quiet cores; asserted loosely since CI machines are shared)."""
    model, _ = tiny_zaya
    model.train()
    ids = torch.randint(0, 256, (64, 80))
    times = []
    for _ in range(3):
        start = time.perf_counter()
        model(ids).logits.logsumexp(-1).mean().backward()
        times.append(time.perf_counter() - start)
    model.zero_grad(set_to_none=True)
    print(
        f"\ntiny-zaya forward+backward 64x80: {min(times):.3f} s (best of 3, {torch.get_num_threads()} threads)"
    )
    assert min(times) < 5.0


def test_seed_fixes_the_init_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a, _ = load_policy("tiny-zaya", seed=4)
    assert torch.equal(torch.rand(1), expected_next)
    b, _ = load_policy("tiny-zaya", seed=4)
    c, _ = load_policy("tiny-zaya", seed=5)
    w = "model.layers.0.mlp.gate.down_proj.weight"
    assert torch.equal(a.state_dict()[w], b.state_dict()[w]) and not torch.equal(
        a.state_dict()[w], c.state_dict()[w]
    )


def test_model_init_command_writes_a_loadable_folder(tmp_path):
    parser = argparse.ArgumentParser()
    commands.add_parser(parser.add_subparsers())
    args = parser.parse_args(
        ["model", "init", "--preset", "tiny-zaya", "--out", str(tmp_path / "m"), "--seed", "2"]
    )
    assert args.handler(args) == 0
    model, tok = build_model_and_tokenizer(ModelConfig(path=str(tmp_path / "m")))
    ref, _ = load_policy("tiny-zaya", seed=2)
    ids = torch.tensor(
        [
            tok.apply_chat_template([{"role": "user", "content": "1+2="}], add_generation_prompt=True)[
                "input_ids"
            ]
        ]
    )
    loaded, fresh = model.state_dict(), ref.state_dict()
    assert loaded.keys() == fresh.keys() and all(torch.equal(loaded[k], fresh[k]) for k in fresh)
    with torch.no_grad():  # equal weights; kernels may still differ in the last bit (memory layout)
        torch.testing.assert_close(model(ids).logits, ref(ids).logits, atol=1e-6, rtol=0)
    assert set(commands.PRESET_NAMES) == set(PRESETS)


def test_bf16_with_fp32_head():
    model, _ = build_model_and_tokenizer(
        ModelConfig(preset="tiny-qwen3moe", dtype="bfloat16", fp32_lm_head=True)
    )
    assert model.model.embed_tokens.weight.dtype == torch.bfloat16
    with torch.no_grad():
        logits = model(torch.tensor([[1, 2, 3]])).logits
    assert logits.dtype == torch.float32
    assert "lm_head.weight" in model.state_dict()


def test_bad_sources_are_named():
    with pytest.raises(ValueError, match="neither a preset"):
        load_policy("/nonexistent/folder")
    with pytest.raises(ValueError, match="model.dtype"):
        load_policy("tiny-zaya", dtype="float16")
