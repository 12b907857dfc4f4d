"""``trainer.compile``: per-layer torch.compile changes the speed of a trainer step, never its result.

The reference is the same step on an uncompiled copy of the model (eager PyTorch, the code every other
trainer test checks against hand-computed values): losses, gradient norms and the parameters after two
optimizer steps must agree to float32 round-off, and the compiled model keeps its parameter names (what
weight sync and checkpoints key on). Run ``python -m pytest tests/trainer/test_compile.py -q``
(``-m slow`` adds tiny-qwen3moe and tiny-zaya with router replay: ~70 s of compilation each on 2 cores).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from zaya_rl.config.schema import OptimConfig
from zaya_rl.models.router_replay import routing_shape
from zaya_rl.optim.build import build_optimizer
from zaya_rl.trainer.batch import TrainSample
from zaya_rl.trainer.compile import compile_layers, decoder_layers
from zaya_rl.trainer.step import LossSettings, train_step


def _samples(model: nn.Module, seed: int, routes: bool) -> list[TrainSample]:
    rng = np.random.default_rng(seed)
    cfg = model.config
    out = []
    for i in range(5):
        n_prompt, n_gen = 6, int(rng.integers(3, 20))
        r = None
        if routes:  # distinct experts per (position, MoE layer), as a rollout engine records them
            layers, k = routing_shape(model)
            choices = cfg.num_experts + (cfg.model_type == "zaya")  # ZAYA's skip class is expert E
            r = np.argsort(rng.random((n_prompt + n_gen, layers, choices)), axis=-1)[..., :k].astype(np.int16)
        out.append(TrainSample(rng.integers(1, cfg.vocab_size, n_prompt).tolist(),
                               rng.integers(1, cfg.vocab_size, n_gen).tolist(),
                               (-rng.random(n_gen)).tolist(), 1.0 if i % 2 else -1.0, r))
    return out


def _compare(model: nn.Module, settings: LossSettings, routes: bool) -> None:
    compiled = copy.deepcopy(model)
    assert compile_layers(compiled) == model.config.num_hidden_layers
    assert list(compiled.state_dict()) == list(model.state_dict())  # in place: no ``_orig_mod.`` prefixes
    opt_ref, _ = build_optimizer(model, OptimConfig(lr=1e-3))
    opt_cmp, _ = build_optimizer(compiled, OptimConfig(lr=1e-3))
    from torch._dynamo.utils import counters

    graphs = counters["stats"]["unique_graphs"]
    for step in range(2):
        batch = _samples(model, step, routes)
        ref = train_step(model, opt_ref, batch, settings=settings, pad_id=0)
        got = train_step(compiled, opt_cmp, batch, settings=settings, pad_id=0)
        assert not ref.skipped and not got.skipped
        for key in ("train/loss", "train/grad_norm"):
            assert got.metrics[key] == pytest.approx(ref.metrics[key], rel=1e-4, abs=1e-7), key
    assert counters["stats"]["unique_graphs"] > graphs  # dynamo did compile: the comparison is not eager vs eager
    for (name, p_ref), p_got in zip(model.named_parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(p_got, p_ref, rtol=1e-4, atol=1e-5, msg=name)


def test_compiled_llama_step_equals_eager_packed():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64))
    settings = LossSettings(temperature=1.0, delta=0.2, tis_cap=5.0, aggregation="seq-mean-token-sum-norm",
                            max_len=32, logprob_chunk_size=64, router_replay=False, grad_clip=1.0,
                            micro_batch_size=4, packing="always", micro_batch_tokens=64)
    _compare(llama, settings, routes=False)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["tiny-qwen3moe", "tiny-zaya"])
def test_compiled_moe_step_with_router_replay_equals_eager(preset):
    from zaya_rl.models.policy import load_policy

    torch.manual_seed(0)
    model, _ = load_policy(preset, "float32", "cpu", seed=0)
    settings = LossSettings(temperature=1.0, delta=0.2, tis_cap=5.0, aggregation="seq-mean-token-sum-norm",
                            max_len=32, logprob_chunk_size=64, router_replay=True, grad_clip=1.0,
                            micro_batch_size=4, packing="never")
    _compare(model, settings, routes=True)


def test_a_model_without_decoder_layers_is_named():
    with pytest.raises(ValueError, match=r"trainer.compile: no decoder-layer list in model type 'Linear'"):
        decoder_layers(nn.Linear(2, 2))


def test_compile_with_deepspeed_fails_at_load():
    from zaya_rl.config import ConfigError, config_from_dict

    with pytest.raises(ConfigError, match=r"trainer.compile: true needs trainer.backend torch"):
        config_from_dict({"trainer": {"backend": "deepspeed", "compile": True}})
