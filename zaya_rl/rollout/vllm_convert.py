"""Pure conversions between vLLM's outputs and ``GenerationResult`` (no vLLM import; tested on CPU).

- **Routed experts.** vLLM (``enable_return_routed_experts``) returns, on a request's final output,
  ``CompletionOutput.routed_experts``: ``[P + G - 1, num_hidden_layers, K]`` uint8/uint16, one row per
  input position of ``prompt + generated[:-1]`` (research/vllm_ray.md §2). Rows are indexed by *decoder
  layer*; a dense layer (Qwen3-MoE ``mlp_only_layers``, DeepSeek's first ``first_k_dense_replace``) is
  never written and reads 0, which would replay as expert 0. ``moe_layer_indices`` names the MoE layers
  of a config and ``routed_experts_from_vllm`` keeps only those, as int16 with ``NO_ROUTE`` for rows the
  engine did not return. Our torch engine and the trainer's replay hooks number routers in module order,
  which is the same MoE-layer order.
- **Log-probs.** ``CompletionOutput.logprobs`` (with ``SamplingParams(logprobs=0)``) is one
  ``{token_id: Logprob}`` dict per generated token holding the sampled token; ``sampled_logprobs`` reads
  the sampled token's value from each.
- **Versions** are ``zaya_rl.rollout.vllm_versions``'s job.
- **Finish reasons.** vLLM's ``"stop"``/``"length"``/``"abort"`` map to ours; ``"degenerate"`` is set by
  the adapter when the canary stops a request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from zaya_rl.rollout.base import NO_ROUTE, FinishReason


def _qwen_moe_layers(cfg: Any) -> list[int]:
    # Qwen2/3-MoE: layer i is sparse iff it is not in mlp_only_layers and (i + 1) % decoder_sparse_step == 0.
    skip = set(getattr(cfg, "mlp_only_layers", None) or [])
    step = getattr(cfg, "decoder_sparse_step", 1) or 1
    return [i for i in range(cfg.num_hidden_layers) if i not in skip and (i + 1) % step == 0]


def _deepseek_moe_layers(cfg: Any) -> list[int]:
    first = getattr(cfg, "first_k_dense_replace", 0) or 0
    freq = getattr(cfg, "moe_layer_freq", 1) or 1
    return [i for i in range(cfg.num_hidden_layers) if i >= first and i % freq == 0]


def _all_layers(cfg: Any) -> list[int]:
    return list(range(cfg.num_hidden_layers))


#: HF ``model_type`` -> which decoder layers are MoE; families not listed have an MoE block in every layer
#: (Mixtral, OLMoE, GPT-OSS, ...).
MOE_LAYER_RULES: dict[str, Callable[[Any], list[int]]] = {
    "qwen3_moe": _qwen_moe_layers,
    "qwen2_moe": _qwen_moe_layers,
    "deepseek_v2": _deepseek_moe_layers,
    "deepseek_v3": _deepseek_moe_layers,
}

#: Config attributes that hold the number of routed experts (vLLM's ``get_num_experts`` reads the same).
_NUM_EXPERTS_KEYS = ("num_experts", "n_routed_experts", "num_local_experts")


def moe_layer_indices(cfg: Any) -> list[int] | None:
    """Decoder-layer indices of the MoE layers of an HF text config; None for a dense model."""
    if not any(getattr(cfg, k, None) for k in _NUM_EXPERTS_KEYS):
        return None
    return MOE_LAYER_RULES.get(getattr(cfg, "model_type", ""), _all_layers)(cfg)


def routed_experts_from_vllm(
    raw: np.ndarray | None, prompt_len: int, num_generated: int, moe_layers: Sequence[int], top_k: int
) -> np.ndarray:
    """vLLM's routed experts -> ``GenerationResult.routed_experts``.

    Args:
        raw: ``[rows, num_hidden_layers, K]`` from the final ``CompletionOutput`` (None when the engine
            returned none, e.g. an aborted request).
        prompt_len: P.
        num_generated: G, tokens kept in the result (the canary may have cut a streamed delta short).
        moe_layers: ``moe_layer_indices`` of the model.
        top_k: K.

    Returns:
        int16 ``[P + max(G, 1) - 1, len(moe_layers), K]``. Row i is input position i, so a shorter ``raw``
        fills a prefix (the rest ``NO_ROUTE``) and a longer one is cut (positions of tokens not kept).
    """
    rows = prompt_len + max(num_generated, 1) - 1
    out = np.full((rows, len(moe_layers), top_k), NO_ROUTE, dtype=np.int16)
    if raw is None:
        return out
    arr = np.asarray(raw)
    if arr.ndim != 3 or arr.shape[2] != top_k or (moe_layers and max(moe_layers) >= arr.shape[1]):
        raise ValueError(
            f"routed_experts from vLLM has shape {arr.shape}; expected [rows, > {max(moe_layers, default=-1)}, "
            f"{top_k}] (decoder layers x top-k)"
        )
    n = min(len(arr), rows)
    out[:n] = arr[:n][:, list(moe_layers), :].astype(np.int16)
    return out


def sampled_logprobs(token_ids: Sequence[int], logprobs: Sequence[Mapping[int, Any]] | None) -> list[float]:
    """The sampled token's log-prob at each step (``Logprob.logprob``, or a bare float)."""
    if logprobs is None or len(logprobs) != len(token_ids):
        raise ValueError(
            f"vLLM returned {0 if logprobs is None else len(logprobs)} log-prob entries for {len(token_ids)} "
            "tokens; the request must set SamplingParams(logprobs=0)"
        )
    out = []
    for tok, entry in zip(token_ids, logprobs, strict=True):
        value = entry[tok]
        out.append(float(getattr(value, "logprob", value)))
    return out


#: vLLM finish reason -> ours (``"degenerate"`` never comes from vLLM: the canary sets it).
FINISH_REASONS: dict[str, FinishReason] = {"stop": "stop", "length": "length", "abort": "abort"}


def finish_reason(vllm_reason: str | None) -> FinishReason:
    """Map vLLM's finish reason; anything unexpected (e.g. ``repetition``) reads as ``stop``."""
    if vllm_reason is None:
        return "abort"
    return FINISH_REASONS.get(str(vllm_reason), "stop")
