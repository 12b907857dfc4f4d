"""Model FLOP constants (the 6N rule) counted by hand for a dense and an MoE model.

Run: python -m pytest tests/trainer/test_flops.py -q
"""

import torch

from zaya_rl.models.policy import build_preset
from zaya_rl.trainer.flops import FlopCounts, flop_counts


def test_dense_llama_by_hand():
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.device("meta"):
        llama = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                             num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True))
    # per layer: q 32x32, k and v 32x16, o 32x32, gate/up/down 3 x 32x64, two norms of 32; then the final norm
    per_layer = 1024 + 512 + 512 + 1024 + 3 * 32 * 64 + 2 * 32
    assert flop_counts(llama) == FlopCounts(n_body=2 * per_layer + 32, n_head=64 * 32, n_layers=2, d_attn=32)


def test_moe_counts_the_experts_a_token_runs():
    qwen, _ = build_preset("tiny-qwen3moe")  # 8 experts of 64 (gate, up, down over hidden 64), top-2, untied head
    experts = sum(p.numel() for n, p in qwen.named_parameters() if ".experts." in n)
    assert experts == 2 * 8 * 3 * 64 * 64
    total = sum(p.numel() for p in qwen.parameters())
    head = qwen.lm_head.weight.numel()
    embed = qwen.get_input_embeddings().weight.numel()
    counts = flop_counts(qwen)
    assert counts.n_body == total - head - embed - experts * (1 - 2 / 8)
    d_attn = qwen.config.num_attention_heads * qwen.config.head_dim  # 4 heads of the presets' HEAD_DIM
    assert (counts.n_head, counts.n_layers, counts.d_attn) == (head, 2, d_attn)


def test_step_flops_formula():
    c = FlopCounts(n_body=10, n_head=5, n_layers=2, d_attn=3)
    # 6·N_body·T + 6·N_head·T_loss + 6·L·d·S·T with S = 4, T = 8, T_loss = 6
    assert c.step_flops(seq_len=4, tokens=8, loss_tokens=6) == 480 + 180 + 1152
