"""Model FLOPs of a training step: the 6N rule (Kaplan et al. 2020; PaLM, Chowdhery et al. 2022, appendix B)
with a causal attention term,

    FLOPs = 6·N_body·T + 6·N_head·T_loss + 6·n_layers·d_attn·S·T

T = input tokens, T_loss = scored (generated) tokens, S = sequence length. N_body counts every parameter
except the input embedding and the output head, and of MoE expert stacks only what one token runs (top-k / E
of them), i.e. N_active without the head; the head counts only where the trainer applies it (generated
tokens). Attention: QKᵀ and AV, 2 FLOPs per multiply-add, the half of the S×S matrix the causal mask keeps,
×3 for forward + backward; d_attn = query heads × head dim (PaLM's 12·L·H·Q·T counts the whole matrix).

Used by ``benchmarks/trainer_mfu.py`` (MFU) and by ``trainer/packing.py`` (which layout costs less).
Test: ``python -m pytest tests/trainer/test_flops.py -q``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class FlopCounts:
    """Per-token compute constants of a causal LM (module docstring)."""

    n_body: float
    n_head: float
    n_layers: int
    d_attn: int

    def step_flops(self, seq_len: int, tokens: int, loss_tokens: int) -> float:
        """Model FLOPs of forward + backward over ``tokens`` input tokens in sequences of ``seq_len``."""
        attention = 6 * self.n_layers * self.d_attn * seq_len * tokens
        return 6 * self.n_body * tokens + 6 * self.n_head * loss_tokens + attention


def flop_counts(model: nn.Module) -> FlopCounts:
    """``FlopCounts`` of an HF causal LM (experts recognised as 3-D ``.experts.`` stacks of an MoE model)."""
    from zaya_rl.models.router_replay import moe_routers

    cfg = model.config
    embed = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    routers = moe_routers(model)
    top_k = routers[0][0].top_k if routers else 0
    n_body = 0.0
    for name, p in model.named_parameters():
        if p is embed or p is head:
            continue
        if routers and p.ndim == 3 and ".experts." in name:  # stacked [E, ...]: a token runs top_k of E
            n_body += p.numel() * top_k / p.shape[0]
        else:
            n_body += p.numel()
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return FlopCounts(n_body, float(head.numel()), cfg.num_hidden_layers, cfg.num_attention_heads * head_dim)
