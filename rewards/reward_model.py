"""Reward-model scoring: a sequence-classification RM from a local folder, in-process or as a Ray actor.

``RewardModelScorer`` loads ``AutoModelForSequenceClassification`` and its tokenizer from a local folder
(``local_files_only``: never the hub), formats each (prompt messages, response) pair with the tokenizer's
chat template (plain ``role: content`` lines when it has none), tokenizes in batches of ``batch_size``
(right padding; truncation from the left to ``max_length`` so the response's end, where the
classification head reads, is kept), and takes ``logits[:, 0]`` as the raw score (the convention of
Bradley-Terry RMs such as Skywork-Reward; research/environments.md §5.3). ``score`` maps raw scores to
[0, 1] with a ``rewards.rm_transforms`` transform.

``reward_model_actor`` wraps the same class as a Ray actor (one endpoint, ``score``); the class is plain so
tests and single-process tools use it directly. ``build_tiny_reward_model`` writes a randomly
initialised ``Qwen3ForSequenceClassification`` with the project's byte tokenizer to a folder, so all of
this runs offline. No weights of a real RM ship on PyPI, so a real run points ``path`` at a downloaded
checkpoint. ``python -m pytest tests/rewards/test_reward_model.py -q``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rewards.rm_transforms import TransformConfig, apply_transform

Prompt = str | list[dict[str, str]]


@dataclass(frozen=True)
class RewardModelConfig:
    """Where the RM lives and how it is run.

    Attributes:
        path: local folder with the model (``config.json``, weights) and its tokenizer.
        max_length: tokens per (prompt, response) pair; longer ones lose their beginning.
        batch_size: pairs per forward pass.
        device: torch device string (``cpu``, ``cuda``, ``cuda:1``).
        dtype: parameter dtype.
        transform: raw score → [0, 1] mapping.
    """

    path: str
    max_length: int = 4096
    batch_size: int = 8
    device: str = "cpu"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    transform: TransformConfig = field(default_factory=TransformConfig)

    def __post_init__(self) -> None:
        if self.max_length < 2 or self.batch_size < 1:
            raise ValueError(f"RewardModelConfig: max_length >= 2 and batch_size >= 1 required, got "
                             f"{self.max_length}, {self.batch_size}")


class RewardModelScorer:
    """A sequence-classification reward model (module docstring).

    Args:
        config: the RM configuration.
    """

    def __init__(self, config: RewardModelConfig) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.config = config
        self.tokenizer = AutoTokenizer.from_pretrained(config.path, local_files_only=True)
        self.tokenizer.padding_side, self.tokenizer.truncation_side = "right", "left"
        if self.tokenizer.pad_token is None:  # RMs built on base LMs often lack one
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForSequenceClassification.from_pretrained(
            config.path, local_files_only=True, dtype=getattr(torch, config.dtype)
        ).to(config.device).eval()
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id

    def format_pair(self, prompt: Prompt, response: str) -> str:
        """The text the RM reads for one (prompt, response) pair."""
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        messages.append({"role": "assistant", "content": response})
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(messages, tokenize=False)
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages)

    def raw_scores(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        """``logits[:, 0]`` for each pair, in order."""
        import torch

        if len(prompts) != len(responses):
            raise ValueError(f"raw_scores: {len(prompts)} prompts but {len(responses)} responses")
        texts = [self.format_pair(p, r) for p, r in zip(prompts, responses, strict=True)]
        out: list[float] = []
        for start in range(0, len(texts), self.config.batch_size):
            batch = self.tokenizer(texts[start : start + self.config.batch_size], padding=True, truncation=True,
                                   max_length=self.config.max_length, return_tensors="pt",
                                   add_special_tokens=False).to(self.config.device)
            with torch.no_grad():
                logits = self.model(**batch).logits
            out += logits[:, 0].float().cpu().tolist()
        return out

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str],
              groups: Sequence[Hashable] | None = None) -> list[float]:
        """Rewards in [0, 1]: the configured transform of ``raw_scores`` (``groups`` labels prompts)."""
        return apply_transform(self.raw_scores(prompts, responses), groups, self.config.transform).tolist()


def reward_model_actor(config: RewardModelConfig, *, num_cpus: float = 1, num_gpus: float = 0, **options: Any):
    """Start ``RewardModelScorer`` as a Ray actor; call ``actor.score.remote(prompts, responses, groups)``.

    Args:
        config: the RM configuration.
        num_cpus: CPUs reserved for the actor.
        num_gpus: GPUs reserved (use a whole number: fractional GPU requests hang on a CPU-only cluster).
        **options: further ``ray.remote`` options (``name``, ``max_restarts``...).
    """
    import ray

    return ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, **options)(RewardModelScorer).remote(config)


def build_tiny_reward_model(out_dir: str, *, seed: int = 0, hidden_size: int = 32, num_layers: int = 2) -> str:
    """Write a randomly initialised ``Qwen3ForSequenceClassification`` (1 label) + byte tokenizer to ``out_dir``.

    Args:
        out_dir: destination folder (created).
        seed: torch seed of the initialisation.
        hidden_size: model width (two attention heads of ``hidden_size // 2``).
        num_layers: transformer layers.
    """
    import torch
    from transformers import Qwen3Config, Qwen3ForSequenceClassification

    from zaya_rl.models.tokenizer import VOCAB_SIZE, build_byte_tokenizer, save_tokenizer

    tokenizer = build_byte_tokenizer()
    config = Qwen3Config(vocab_size=VOCAB_SIZE, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=num_layers, num_attention_heads=2, num_key_value_heads=1,
                         head_dim=hidden_size // 2, max_position_embeddings=8192, num_labels=1,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    model = Qwen3ForSequenceClassification(config)
    model.save_pretrained(out_dir)
    save_tokenizer(tokenizer, out_dir)
    return out_dir
