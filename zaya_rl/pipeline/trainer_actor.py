"""Trainer actor: holds the policy and its optimizer; endpoints are verbs over ``zaya_rl.trainer``.

``train_step`` (one optimizer step on a batch of samples), ``sft_step``, ``get_weights`` (the state dict
to publish to the rollout workers), ``save``/``load`` (the trainer part of a checkpoint), ``stats`` (busy
time, for the trainer idle fraction). A non-finite loss or gradient skips the step; after
``trainer.max_consecutive_nan`` in a row the actor raises ``NonFiniteError`` and the run stops with that
message.
"""

from __future__ import annotations

import time
from typing import Any

from zaya_rl.config import RunConfig
from zaya_rl.trainer.batch import TrainSample


class NonFiniteError(RuntimeError):
    """Too many consecutive optimizer steps had a NaN/Inf loss or gradient."""


class TrainerActor:
    """Ray actor (one per run on the torch backend)."""

    def __init__(self, cfg_dict: dict[str, Any], model_path: str | None = None) -> None:
        import torch

        from zaya_rl.models.policy import build_model_and_tokenizer
        from zaya_rl.optim.build import build_optimizer
        from zaya_rl.trainer.step import LossSettings

        self.cfg = cfg = RunConfig.model_validate(cfg_dict)
        torch.set_num_threads(cfg.trainer.torch_threads)
        torch.manual_seed(cfg.seed)
        model_cfg = cfg.model if model_path is None else cfg.model.model_copy(update={"path": model_path})
        self.device = _device(cfg.trainer.device)
        self.model, self.tokenizer = build_model_and_tokenizer(model_cfg)
        self.model.to(self.device)
        self.optimizer, self.partition = build_optimizer(self.model, cfg.optim)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.pad_id = self.tokenizer.pad_token_id
        self.settings = LossSettings(
            temperature=cfg.rollout.sampling.temperature,
            delta=cfg.algorithm.delta,
            tis_cap=cfg.algorithm.tis_cap,
            aggregation=cfg.algorithm.aggregation,
            max_len=cfg.loss_max_len,
            logprob_chunk_size=cfg.trainer.logprob_chunk_size,
            router_replay=cfg.algorithm.router_replay,
            grad_clip=cfg.optim.grad_clip,
            micro_batch_size=cfg.trainer.micro_batch_size,
            fp32_lm_head=cfg.model.fp32_lm_head,
        )
        self.step = 0
        self.nonfinite_streak = 0
        self.busy_s = 0.0
        self._sft_opt = None

    def describe(self) -> dict[str, Any]:
        n = sum(p.numel() for p in self.model.parameters())
        from zaya_rl.optim.partition import describe_partition

        return {"parameters": n, "partition": describe_partition(self.partition), "device": str(self.device)}

    def _set_lr(self) -> None:
        warm = self.cfg.optim.warmup_steps
        scale = min(1.0, (self.step + 1) / warm) if warm else 1.0
        for g, lr in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            g["lr"] = lr * scale

    def train_step(self, samples: list[TrainSample]) -> dict[str, float]:
        from zaya_rl.trainer.step import train_step

        t0 = time.perf_counter()
        self._set_lr()
        res = train_step(self.model, self.optimizer, samples, settings=self.settings, pad_id=self.pad_id)
        self.busy_s += time.perf_counter() - t0
        if res.skipped:
            self.nonfinite_streak += 1
            if self.nonfinite_streak >= self.cfg.trainer.max_consecutive_nan:
                raise NonFiniteError(
                    f"{self.nonfinite_streak} consecutive optimizer steps were skipped ({res.reason}); stopping. "
                    "Lower optim.lr, check rewards/advantages, or raise trainer.max_consecutive_nan."
                )
            return {**res.metrics, "train/skipped": 1.0, "train/skip_reason": res.reason}
        self.nonfinite_streak = 0
        self.step += 1
        return {**res.metrics, "train/skipped": 0.0, "train/lr": self.optimizer.param_groups[0]["lr"]}

    def sft_step(self, prompts: list[list[int]], completions: list[list[int]]) -> float:
        import torch

        from zaya_rl.trainer.sft import sft_samples, sft_step

        if self._sft_opt is None:
            self._sft_opt = torch.optim.AdamW(self.model.parameters(), lr=self.cfg.sft.lr, weight_decay=0.0)
        t0 = time.perf_counter()
        settings = self.settings.__class__(**{**vars(self.settings), "temperature": 1.0, "router_replay": False})
        loss = sft_step(
            self.model, self._sft_opt, sft_samples(prompts, completions), settings=settings, pad_id=self.pad_id
        )
        self.busy_s += time.perf_counter() - t0
        return loss

    def end_sft(self) -> None:
        self._sft_opt = None

    def encode_sft(self, messages: list[list[dict[str, str]]], responses: list[str]) -> tuple[list, list]:
        """Tokenise SFT pairs with the policy's chat template (prompt ids, completion ids + eos)."""
        from zaya_rl.models.tokenizer import encode_chat

        sys_prompt = self.cfg.data.system_prompt
        prompts = [encode_chat(self.tokenizer, m, system_prompt=sys_prompt) for m in messages]
        eos = self.tokenizer.eos_token_id
        completions = [self.tokenizer.encode(r, add_special_tokens=False) + [eos] for r in responses]
        return prompts, completions

    def get_weights(self) -> dict[str, Any]:
        """The full state dict on CPU, HF parameter names (what ``RolloutEngine.update_weights`` takes)."""
        return {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def save(self, path: str) -> None:
        from zaya_rl.trainer.checkpoint import save_trainer_part

        save_trainer_part(
            path, self.model, self.tokenizer, self.optimizer, {"step": self.step, "nonfinite_streak": self.nonfinite_streak}
        )

    def load(self, path: str) -> int:
        from zaya_rl.trainer.checkpoint import load_trainer_part

        state = load_trainer_part(path, self.optimizer)
        self.step, self.nonfinite_streak = state["step"], state["nonfinite_streak"]
        return self.step

    def pid(self) -> int:
        """Process id (fault drills kill it to test resume)."""
        import os

        return os.getpid()

    def stats(self) -> dict[str, float]:
        return {"busy_s": self.busy_s, "step": float(self.step)}


def _device(name: str) -> Any:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
