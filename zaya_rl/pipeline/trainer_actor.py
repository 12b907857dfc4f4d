"""Trainer actor: holds the policy and its optimizer; endpoints are verbs over ``zaya_rl.trainer``.

``train_step`` (one optimizer step on a batch of samples), ``sft_step``, ``get_weights`` (the state dict
to publish to the rollout workers), ``connect_workers``/``push_weights`` (send a version to every rollout
worker through ``weight_sync.transport``: ``zaya_rl.weights``), ``save``/``load`` (the trainer part of a
checkpoint), ``describe`` (parameter count and the optimizer partition). A non-finite loss or gradient skips the
step; after ``trainer.max_consecutive_nan`` in a row the actor raises ``NonFiniteError`` and the run stops
with that message.

Parallelism is ``zaya_rl.trainer.parallel.wrap_for_training``. With ``trainer.backend: deepspeed`` there
is one actor per rank (``pipeline.actors`` creates them and calls ``init_parallel`` on all together); rank
0 is the one the orchestrator talks to, and forwards each call's per-rank part to the others
(``train_shard``, ``follow_weights``, ``save_shard``/``load_shard``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from zaya_rl.config import RunConfig
from zaya_rl.trainer.batch import TrainSample
from zaya_rl.weights.flat import HostStager

log = logging.getLogger(__name__)


class NonFiniteError(RuntimeError):
    """Too many consecutive optimizer steps had a NaN/Inf loss or gradient."""


class TrainerActor:
    """Ray actor (one per run on the torch backend)."""

    def __init__(self, cfg_dict: dict[str, Any], model_path: str | None = None) -> None:
        import torch

        from zaya_rl.models.policy import build_model_and_tokenizer
        from zaya_rl.trainer.step import LossSettings

        self.cfg = cfg = RunConfig.model_validate(cfg_dict)
        torch.set_num_threads(cfg.trainer.torch_threads)
        torch.set_float32_matmul_precision(cfg.trainer.matmul_precision)
        torch.manual_seed(cfg.seed)
        model_cfg = cfg.model if model_path is None else cfg.model.model_copy(update={"path": model_path})
        self.device = _device(cfg.trainer.device)
        self.model, self.tokenizer = build_model_and_tokenizer(model_cfg)
        self.model.to(self.device)
        self.setup: Any = None
        self.followers: list[Any] = []
        self._weight_sender: Any = None
        self._host = HostStager()
        self._store_checked = False  # get_weights compares a version's size with Ray's object store once
        if cfg.trainer.backend == "torch":
            self._wrap()
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
            logprob_impl=cfg.trainer.logprob_impl,
            logprob_grad_filter=cfg.trainer.logprob_grad_filter,
            packing=cfg.trainer.packing if cfg.trainer.backend == "torch" else "never",
            micro_batch_tokens=cfg.trainer.micro_batch_tokens,
        )
        self.step = 0
        self.nonfinite_streak = 0
        self._sft_opt = None

    def _wrap(self) -> None:
        from zaya_rl.trainer.parallel import wrap_for_training

        cfg = self.cfg
        self.setup = wrap_for_training(self.model, cfg.optim, cfg.trainer, dtype=cfg.model.dtype)
        self.model, self.optimizer, self.partition = self.setup.model, self.setup.optimizer, self.setup.groups
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]

    def init_parallel(self, rank: int, world_size: int, master_addr: str, master_port: int) -> None:
        """DeepSpeed backend: join the trainer process group (every rank at once), then wrap the model."""
        import torch

        from zaya_rl.trainer.parallel import init_distributed

        init_distributed(rank, world_size, master_addr, master_port, "nccl" if torch.cuda.is_available() else "gloo")
        self._wrap()

    def set_followers(self, handles: list[Any]) -> None:
        """Rank 0 only: the other ranks' actors, in rank order."""
        self.followers = list(handles)

    def rendezvous_address(self) -> tuple[str, int]:
        """Rank 0: this node's IP and a free port for the trainer process group."""
        import socket

        import ray

        with socket.socket() as sock:
            sock.bind(("", 0))
            return ray.util.get_node_ip_address(), sock.getsockname()[1]

    def describe(self) -> dict[str, Any]:
        n = sum(p.numel() for p in self.model.parameters())
        from zaya_rl.optim.partition import describe_partition
        from zaya_rl.trainer.step import describe_kernels

        return {"parameters": n, "partition": describe_partition(self.partition), "device": str(self.device),
                **describe_kernels(self.model, self.settings)}

    def _set_lr(self) -> None:
        warm = self.cfg.optim.warmup_steps
        scale = min(1.0, (self.step + 1) / warm) if warm else 1.0
        for g, lr in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            g["lr"] = lr * scale

    def train_step(self, samples: list[TrainSample]) -> dict[str, float]:
        """One optimizer step on ``samples``; its metrics, with ``perf/train_compute_s``: the step's time on this
        actor (device work included: a GPU trainer synchronises before reading the clock)."""
        import torch

        from zaya_rl.trainer.step import train_step

        t0 = time.perf_counter()
        self._set_lr()
        if self.setup.engine is None:
            res = train_step(self.model, self.optimizer, samples, settings=self.settings, pad_id=self.pad_id)
        else:
            res = self._distributed_step(samples)
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
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return {**res.metrics, "train/skipped": 0.0, "train/lr": self.optimizer.param_groups[0]["lr"],
                "perf/train_compute_s": time.perf_counter() - t0}

    def _distributed_step(self, samples: list[TrainSample]) -> Any:
        from zaya_rl.trainer.parallel_step import global_counts, shard_samples

        counts = global_counts(samples, self.settings.micro_batch_size, self.setup.world_size)
        shards = shard_samples(samples, self.setup.world_size)
        refs = [f.train_shard.remote(shards[i + 1], counts, self.step) for i, f in enumerate(self.followers)]
        res = self.train_shard(shards[0], counts, self.step)
        others = _wait(refs)
        if not res.skipped:
            res.metrics["train/loss"] = sum(r.metrics.get("train/loss_rank", 0.0) for r in [res, *others])
        return res

    def train_shard(self, shard: list[TrainSample], counts: dict[str, int], step: int) -> Any:
        """This rank's part of a DeepSpeed step (``parallel_step.distributed_train_step``)."""
        from zaya_rl.trainer.parallel_step import distributed_train_step

        self.step = step
        self._set_lr()
        return distributed_train_step(self.setup, shard, settings=self.settings, pad_id=self.pad_id, **counts)

    def sft_step(self, prompts: list[list[int]], completions: list[list[int]]) -> float:
        import torch

        from zaya_rl.trainer.sft import sft_samples, sft_step

        if self._sft_opt is None:
            self._sft_opt = torch.optim.AdamW(self.model.parameters(), lr=self.cfg.sft.lr, weight_decay=0.0)
        settings = self.settings.__class__(**{**vars(self.settings), "temperature": 1.0, "router_replay": False})
        return sft_step(
            self.model, self._sft_opt, sft_samples(prompts, completions), settings=settings, pad_id=self.pad_id
        )

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

    def get_weights(self, version: int = 0) -> Any:
        """Policy ``version``'s full state dict on CPU, HF parameter names, in the rollout engine's dtype
        (``weight_sync.dtype`` and ``.rounding``; what ``RolloutEngine.update_weights`` takes), as
        ``FlatWeights``: one reused (pinned) host buffer, one object in Ray's store (``zaya_rl.weights.flat``)."""
        import contextlib

        cast = self._sender().caster(version)
        if self.setup.engine is None:
            named, gather = self.model.state_dict().items(), contextlib.nullcontext()
        else:
            named, gather = self.setup.named_weights(), self._followers_iterate()
        with gather:
            state = self._host.stage((n, cast(t)) for n, t in named)
        if not self._store_checked:
            self._store_checked = True
            _warn_if_store_small(state.layout.nbytes)
        return state

    def _sender(self) -> Any:
        if self._weight_sender is None:
            from zaya_rl.weights.senders import make_sender

            self._weight_sender = make_sender(self.cfg.weight_sync, self.cfg.weight_sync_dtype, self.cfg.seed)
        return self._weight_sender

    def connect_workers(self, handles: list[Any]) -> None:
        """Remember the rollout workers and set up the transport's data plane (NCCL: a group with them)."""
        self._worker_handles = list(handles)
        self._sender().connect(handles)

    def push_weights(self, version: int, workers: list[int] | None = None) -> dict[str, float]:
        """Send the current weights as ``version`` to every rollout worker (or ``workers``); returns the
        ``weights/`` metrics (push seconds, bytes, GB/s, the slowest worker's pause/load/resume)."""
        shapes = [(n, tuple(getattr(p, "ds_shape", p.shape))) for n, p in self.model.named_parameters()]
        with self._followers_iterate():
            report = self._sender().push(self.setup.named_weights, version, workers, shapes=shapes)
        return report.metrics()

    def resync_worker(self, index: int, version: int) -> dict[str, float]:
        """After rollout worker ``index`` restarted: rebuild the data plane and send it ``version``."""
        self._sender().connect(self._worker_handles)
        return self.push_weights(version, [index])

    def follow_weights(self) -> None:
        """ZeRO-3 ranks > 0: take part in the parameter gathers of rank 0's weight iteration."""
        for _ in self.setup.named_weights():
            pass

    def _followers_iterate(self) -> Any:
        """Context: under ZeRO-3 the other ranks gather along with this rank's ``named_weights``."""
        import contextlib

        @contextlib.contextmanager
        def ctx():
            refs = [f.follow_weights.remote() for f in self.followers] if self.setup.zero_stage == 3 else []
            try:
                yield
            finally:
                _wait(refs)

        return ctx()

    def save(self, path: str) -> None:
        """Model (HF, full), tokenizer, optimizer and state. DeepSpeed: ``optimizer.pt`` is rank 0's ZeRO
        partition and ``optimizer_rank<r>.pt`` the others' (a resume needs the same number of ranks)."""
        import ray

        from zaya_rl.trainer.checkpoint import save_trainer_part

        refs = [f.save_shard.remote(path) for f in self.followers]
        with self._gathered_model():
            save_trainer_part(path, self.model, self.tokenizer, self.optimizer,
                              {"step": self.step, "nonfinite_streak": self.nonfinite_streak})
        ray.get(refs)

    def save_shard(self, path: str) -> None:
        """Ranks > 0: write this rank's optimizer partition (and join rank 0's ZeRO-3 gather)."""
        import torch

        with self._gathered_model():
            pass
        torch.save(self.optimizer.state_dict(), f"{path}/optimizer_rank{self.setup.rank}.pt")

    def _gathered_model(self) -> Any:
        import contextlib

        if self.setup.zero_stage != 3:
            return contextlib.nullcontext()
        import deepspeed

        return deepspeed.zero.GatheredParameters(list(self.model.parameters()), modifier_rank=None)

    def load(self, path: str) -> int:
        import ray

        from zaya_rl.trainer.checkpoint import load_trainer_part

        refs = [f.load_shard.remote(path) for f in self.followers]
        state = load_trainer_part(path, self.optimizer)
        ray.get(refs)
        self.step, self.nonfinite_streak = state["step"], state["nonfinite_streak"]
        return self.step

    def load_shard(self, path: str) -> None:
        import torch

        self.optimizer.load_state_dict(torch.load(f"{path}/optimizer_rank{self.setup.rank}.pt", weights_only=False))

    def pid(self) -> int:
        """Process id (fault drills kill it to test resume)."""
        import os

        return os.getpid()



def _wait(refs: list[Any]) -> list[Any]:
    """``ray.get(refs)``, without touching Ray when there is nothing to wait for: a one-rank trainer also runs
    outside Ray (``tests/trainer/ds_equivalence.py``, a GPU machine without Ray), where ``ray.get([])`` would
    start a local cluster."""
    if not refs:
        return []
    import ray

    return ray.get(refs)


def _device(name: str) -> Any:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _warn_if_store_small(nbytes: int) -> None:
    """Warn when two versions of the published weights (the one being read and the next) do not fit Ray's
    object store: every version then spills to disk. On an H100 (2026-12-07) SmolLM2-135M's 0.54 GB float32
    versions against the 512 MB default store spilled 8.7 GB in a 30-step run."""
    import ray

    if not ray.is_initialized():
        return
    store = ray.cluster_resources().get("object_store_memory", 0)
    if store and 2 * nbytes > store:
        log.warning("weights of %.2f GB per version do not fit Ray's object store twice (%.2f GB): each version "
                    "spills to disk; raise ray.object_store_mb (or use weight_sync.dtype: bfloat16)",
                    nbytes / 1e9, store / 1e9)
