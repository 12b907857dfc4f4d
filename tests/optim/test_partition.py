"""Parameter partition (Muon vs AdamW) of tiny ZAYA and Qwen3-MoE models, and build_optimizer end to end.

Run: python -m pytest tests/optim/test_partition.py -q
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import (  # noqa: E402
    LlamaConfig,
    LlamaForCausalLM,
    Qwen3MoeConfig,
    Qwen3MoeForCausalLM,
    ZayaConfig,
    ZayaForCausalLM,
)

from zaya_rl.config.schema import OptimConfig  # noqa: E402
from zaya_rl.optim import build_optimizer, describe_partition, partition_parameters  # noqa: E402


@pytest.fixture(scope="module")
def zaya():
    torch.manual_seed(0)
    cfg = ZayaConfig(
        vocab_size=300, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=16, moe_intermediate_size=32, num_experts=4, router_hidden_size=32,
    )  # fmt: skip
    return ZayaForCausalLM(cfg)


@pytest.fixture(scope="module")
def qwen():
    torch.manual_seed(0)
    cfg = Qwen3MoeConfig(
        vocab_size=300, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=16, moe_intermediate_size=32, intermediate_size=96, num_experts=4, num_experts_per_tok=2,
        mlp_only_layers=[1],
    )  # fmt: skip
    return Qwen3MoeForCausalLM(cfg)


def _where(groups):
    return {name: g.name for g in groups for name in g.names}


def _assert_exact_cover(model, groups):
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    listed = [n for g in groups for n in g.names]
    assert sorted(listed) == sorted(trainable)  # every trainable parameter exactly once


ZAYA_EXPECTED = {
    "model.layers.0.self_attn.qkv_proj.q_proj.weight": "muon/matrices",
    "model.layers.0.self_attn.qkv_proj.k_proj.weight": "muon/matrices",
    "model.layers.1.self_attn.qkv_proj.v_proj_current.weight": "muon/matrices",
    "model.layers.1.self_attn.qkv_proj.v_proj_delayed.weight": "muon/matrices",
    "model.layers.0.self_attn.o_proj.weight": "muon/matrices",
    "model.layers.0.mlp.gate.down_proj.weight": "muon/matrices",
    "model.layers.0.mlp.gate.router_mlp.fc1.weight": "muon/matrices",
    "model.layers.1.mlp.gate.router_mlp.out_proj.weight": "muon/matrices",
    "model.layers.0.mlp.experts.gate_up_proj": "muon/experts_gate_up",
    "model.layers.1.mlp.experts.down_proj": "muon/experts",
    "model.embed_tokens.weight": "adamw/embeddings",
    "model.layers.0.self_attn.qkv_proj.conv_qk_depthwise.weight": "adamw/other",
    "model.layers.0.self_attn.qkv_proj.conv_qk_grouped.weight": "adamw/other",
    "model.layers.0.self_attn.qkv_proj.conv_qk_grouped.bias": "adamw/vectors",
    "model.layers.0.self_attn.qk_norm.temp": "adamw/vectors",
    "model.layers.1.mlp.gate.router_states_scale": "adamw/vectors",
    "model.layers.0.mlp.gate.down_proj.bias": "adamw/vectors",
    "model.layers.0.mlp.gate.router_mlp.norm.weight": "adamw/vectors",
    "model.layers.0.post_mlp_residual_scale.residual_scale": "adamw/vectors",
    "model.input_hidden_states_scale": "adamw/vectors",
    "model.norm.weight": "adamw/vectors",
}


def test_zaya_partition(zaya):
    groups = partition_parameters(zaya)
    where = _where(groups)
    for name, group in ZAYA_EXPECTED.items():
        assert where[name] == group, name
    _assert_exact_cover(zaya, groups)
    assert "lm_head.weight" not in where  # tied to embed_tokens: trained once, by AdamW
    assert not any("balancing_biases" in n for n in where)  # a buffer, not trained
    assert {g.name: g.algorithm for g in groups}["muon/experts_gate_up"] == "muon"
    assert all(g.options.get("split_halves") for g in groups if g.name == "muon/experts_gate_up")


def test_qwen3_moe_partition(qwen):
    groups = partition_parameters(qwen)
    where = _where(groups)
    assert where["lm_head.weight"] == "adamw/embeddings"  # untied output head
    assert where["model.embed_tokens.weight"] == "adamw/embeddings"
    assert where["model.layers.0.mlp.gate.weight"] == "muon/matrices"  # router [E, H]
    assert where["model.layers.0.mlp.experts.gate_up_proj"] == "muon/experts_gate_up"
    assert where["model.layers.0.mlp.experts.down_proj"] == "muon/experts"
    assert where["model.layers.1.mlp.gate_proj.weight"] == "muon/matrices"  # dense MLP layer
    assert where["model.layers.0.self_attn.q_norm.weight"] == "adamw/vectors"
    _assert_exact_cover(qwen, groups)


def test_dense_llama_partition():
    """SmolLM2-135M's layout (a dense LlamaForCausalLM, tied head) at toy size: every projection is a Muon
    matrix, the shared embedding/head is trained once by AdamW, RMSNorm gains are AdamW vectors."""
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    llama = LlamaForCausalLM(cfg)
    assert llama.lm_head.weight is llama.model.embed_tokens.weight
    groups = partition_parameters(llama)
    where = _where(groups)
    assert where["model.embed_tokens.weight"] == "adamw/embeddings" and "lm_head.weight" not in where
    for proj in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                 "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"):
        assert where[f"model.layers.1.{proj}.weight"] == "muon/matrices", proj
    assert where["model.layers.0.input_layernorm.weight"] == "adamw/vectors"
    assert where["model.norm.weight"] == "adamw/vectors"
    assert [g.name for g in groups] == ["muon/matrices", "adamw/embeddings", "adamw/vectors"]
    assert sum(g.numel for g in groups) == sum(p.numel() for p in llama.parameters())  # tied counted once
    _assert_exact_cover(llama, groups)


def test_options_and_frozen_parameters(qwen):
    where = _where(partition_parameters(qwen, split_gate_up=False))
    assert where["model.layers.0.mlp.experts.gate_up_proj"] == "muon/experts"
    groups = partition_parameters(qwen, muon=False)
    assert {g.algorithm for g in groups} == {"adamw"}
    assert _where(groups)["model.layers.0.mlp.experts.gate_up_proj"] == "adamw/matrices"
    qwen.model.layers[0].self_attn.q_proj.weight.requires_grad_(False)
    try:
        assert "model.layers.0.self_attn.q_proj.weight" not in _where(partition_parameters(qwen))
    finally:
        qwen.model.layers[0].self_attn.q_proj.weight.requires_grad_(True)


def test_describe_partition_is_printable(zaya):
    text = describe_partition(partition_parameters(zaya))
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["group", "optimizer", "tensors", "params"]
    assert any(line.startswith("muon/experts_gate_up") and " 2 " in line for line in lines)
    total = sum(p.numel() for p in zaya.parameters())
    assert lines[-1].split()[:3] == ["total", "65", f"{total:,}"]


@pytest.mark.parametrize("muon", [True, False])
def test_build_optimizer_trains_tiny_zaya(zaya, muon):
    model = ZayaForCausalLM(zaya.config)
    model.load_state_dict(zaya.state_dict())
    opt, groups = build_optimizer(model, OptimConfig(lr=3e-3, muon=muon))
    assert len(opt.param_groups) == len(groups)
    ids = torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(4):
        loss = model(input_ids=ids, labels=ids).loss
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < losses[0]
    adamw_params = {p for g in groups if g.algorithm == "adamw" for p in g.params}
    assert set(opt.state) <= adamw_params  # Muon keeps no state
    if muon:
        muon_params = [p for g in groups if g.algorithm == "muon" for p in g.params]
        assert muon_params and not any(p in opt.state for p in muon_params)
