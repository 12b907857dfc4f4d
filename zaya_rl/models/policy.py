"""Policy models: tiny presets built locally, or any HF checkpoint folder, always with their tokenizer.

Both paths give a transformers model (``ZayaForCausalLM``, ``Qwen3MoeForCausalLM`` or whatever the
checkpoint's ``config.json`` names) and a tokenizer whose vocabulary matches the model's. Nothing is
re-implemented: the presets are transformers configs with small sizes, so the CPU job exercises the exact
modules a ZAYA1-8B run uses (CCA attention with its conv and recurrent state, the MLP router with EDA,
top-1 routing plus the skip class, 3-D stacked experts, residual scaling, tied embeddings).

Presets (the ``ModelConfig.preset`` choices):

- ``tiny-zaya``: 3 layers, hidden 64, 8 experts, top-1 + skip, router hidden 32. A forward+backward of
  64 x 80 tokens takes ~0.2 s on 2 CPU cores (measured; ``tests/models/test_policy.py`` prints it).
- ``tiny-qwen3moe``: 2 layers, hidden 64, 8 experts, top-2 with renormalised weights, untied head (the
  layout vLLM loads; research/vllm_ray.md §9).

A cluster run points ``model.path`` at a checkpoint folder instead (``load_policy(path, ...)``).
``zaya-rl model init --preset tiny-zaya --out DIR`` writes a preset as such a folder.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer, PretrainedConfig, PreTrainedModel

from zaya_rl.models.tokenizer import build_byte_tokenizer, save_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from zaya_rl.config.schema import ModelConfig

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
#: Longest sequence (prompt + completion) the presets are built for.
_PRESET_MAX_POSITIONS = 4096
#: Attention head size of the presets: the smallest vLLM's CPU attention supports (its kernels take 32, 64,
#: 80, ... 512; research/vllm_cpu_probe.md §2), so the same presets run on the torch engine and on vLLM.
HEAD_DIM = 32


def _tiny_zaya(ids: dict[str, int]) -> PretrainedConfig:
    from transformers import ZayaConfig

    return ZayaConfig(
        hidden_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=HEAD_DIM,
        moe_intermediate_size=128,
        num_experts=8,
        num_experts_per_tok=1,
        router_hidden_size=32,
        max_position_embeddings=_PRESET_MAX_POSITIONS,
        **ids,
    )


def _tiny_qwen3moe(ids: dict[str, int]) -> PretrainedConfig:
    from transformers import Qwen3MoeConfig

    return Qwen3MoeConfig(
        hidden_size=64,
        intermediate_size=128,
        moe_intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=HEAD_DIM,
        num_experts=8,
        num_experts_per_tok=2,
        norm_topk_prob=True,
        max_position_embeddings=_PRESET_MAX_POSITIONS,
        tie_word_embeddings=False,
        **ids,
    )


#: Preset name -> builder of its transformers config (given the tokenizer's vocab and special ids).
PRESETS: dict[str, Callable[[dict[str, int]], PretrainedConfig]] = {
    "tiny-zaya": _tiny_zaya,
    "tiny-qwen3moe": _tiny_qwen3moe,
}


def build_preset(name: str, seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Randomly initialise preset ``name`` (float32, CPU) with the byte tokenizer; ``seed`` fixes the init."""
    if name not in PRESETS:
        raise ValueError(f"model.preset: unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    tokenizer = build_byte_tokenizer()
    ids = {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    config = PRESETS[name](ids)
    # fork_rng: the init must not consume (or depend on) the caller's global torch RNG stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_policy(
    path_or_preset: str,
    dtype: str = "float32",
    device: str | torch.device = "cpu",
    *,
    seed: int = 0,
    fp32_lm_head: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a policy and its tokenizer from a preset name or an HF checkpoint folder.

    Args:
        path_or_preset: a ``PRESETS`` name, or a folder holding ``config.json``, weights and a tokenizer.
        dtype: ``float32`` or ``bfloat16`` parameters.
        device: where the model lives.
        seed: initialisation seed (presets only).
        fp32_lm_head: compute the output projection in float32 (see ``use_fp32_lm_head``).
    """
    if dtype not in _DTYPES:
        raise ValueError(f"model.dtype: expected one of {sorted(_DTYPES)}, got {dtype!r}")
    if path_or_preset in PRESETS:
        model, tokenizer = build_preset(path_or_preset, seed)
    elif (Path(path_or_preset) / "config.json").is_file():
        model = AutoModelForCausalLM.from_pretrained(path_or_preset, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(path_or_preset)
    else:
        raise ValueError(
            f"model: {path_or_preset!r} is neither a preset ({sorted(PRESETS)}) nor a folder with config.json"
        )
    _check_vocab(model, tokenizer, path_or_preset)
    model = model.to(device=device, dtype=_DTYPES[dtype])
    if fp32_lm_head:
        use_fp32_lm_head(model)
    return model, tokenizer


def build_model_and_tokenizer(
    cfg: ModelConfig, device: str | torch.device = "cpu"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The ``model`` config section -> (model, tokenizer); ``cfg.path`` wins over ``cfg.preset``."""
    source = cfg.path if cfg.path is not None else cfg.preset
    return load_policy(source, cfg.dtype, device, seed=cfg.init_seed, fp32_lm_head=cfg.fp32_lm_head)


def save_policy(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out_dir: str | Path) -> Path:
    """Write model (safetensors) and tokenizer into one folder that ``load_policy`` and vLLM both load."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    save_tokenizer(tokenizer, str(out))
    return out


def use_fp32_lm_head(model: PreTrainedModel) -> None:
    """Make the output projection compute in float32 (for bf16 models: log-probs of a 262k vocab in bf16
    lose ~3 significant digits, which the importance ratios of the loss would see as noise).

    The module's ``forward`` is replaced on this instance only, so parameter names, weight tying and the
    state dict stay exactly as they were.
    """
    head = model.get_output_embeddings()

    def forward(self: torch.nn.Linear, hidden: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.float()
        return F.linear(hidden.float(), self.weight.float(), bias)

    head.forward = types.MethodType(forward, head)


def _check_vocab(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, source: str) -> None:
    # The model may have a padded embedding (vLLM pads to multiples of 64); it must cover the tokenizer.
    rows = model.get_input_embeddings().num_embeddings
    if rows < len(tokenizer):
        raise ValueError(
            f"model {source!r}: embedding has {rows} rows but the tokenizer has {len(tokenizer)} tokens"
        )
