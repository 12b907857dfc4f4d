"""A scripted stand-in for vLLM's ``AsyncLLM`` (the methods ``VLLMEngine`` calls), for CPU tests.

Completions come from ``script(prompt_ids)``; they stream as DELTA outputs of ``chunk`` tokens, each with
``{token: Logprob}`` entries (log-prob ``-0.01 * (position + 1)``), and the final output carries routed
experts ``[P + G - 1, num_layers, top_k]`` uint8 with value ``(row + layer + slot) % num_experts``, as vLLM
returns them. ``pause_generation(mode="keep")`` blocks every stream until ``resume_generation``;
``abort`` ends a stream with a final ``"abort"`` output (with the routes so far). As vLLM >= 0.32 does,
each chunk is labelled with the version set by ``update_weight_version`` when it is produced, and the final
output carries ``weight_versions`` spans. Every control call is appended to ``calls`` so tests can check
the order of pause / load / resume.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np


def logprob_of(position: int) -> float:
    return -0.01 * (position + 1)


@dataclass
class FakeCompletion:
    token_ids: list[int]
    logprobs: list[dict[int, Any]]
    finish_reason: str | None = None
    routed_experts: np.ndarray | None = None
    weight_versions: list[tuple[str, int, int]] | None = None


@dataclass
class FakeOutput:
    request_id: str
    outputs: list[FakeCompletion]
    finished: bool


@dataclass
class FakeAsyncLLM:
    script: Any
    chunk: int = 2
    num_layers: int = 3
    top_k: int = 2
    num_experts: int = 8
    calls: list[tuple] = field(default_factory=list)
    loaded: list[tuple[str, list[str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._running = asyncio.Event()
        self._running.set()
        self._aborted: set[str] = set()
        self.chunks_sent = 0
        self.label = "default"

    def _routes(self, rows: int) -> np.ndarray:
        grid = np.arange(rows)[:, None, None] + np.arange(self.num_layers)[None, :, None] + np.arange(self.top_k)
        return (grid % self.num_experts).astype(np.uint8)

    async def generate(self, prompt: dict, params: Any, request_id: str):
        ids = list(prompt["prompt_token_ids"])
        tokens = list(self.script(ids))[: params.max_new_tokens]
        for i, t in enumerate(tokens):
            if t in params.stop_token_ids:
                tokens = tokens[: i + 1]
                break
        sent = 0
        spans: list[tuple[str, int, int]] = []
        while sent < len(tokens):
            await self._running.wait()
            await asyncio.sleep(0)
            if request_id in self._aborted:
                yield self._final(request_id, ids, sent, "abort", spans)
                return
            delta = tokens[sent : sent + self.chunk]
            logprobs = [{t: SimpleNamespace(logprob=logprob_of(sent + j))} for j, t in enumerate(delta)]
            spans.append((self.label, sent, sent + len(delta)))
            sent += len(delta)
            self.chunks_sent += 1
            done = sent == len(tokens)
            reason = None
            if done:
                reason = "stop" if tokens[-1] in params.stop_token_ids else "length"
            routes = self._routes(len(ids) + sent - 1) if done else None
            yield FakeOutput(request_id, [FakeCompletion(delta, logprobs, reason, routes, spans if done else None)], done)
            if done:
                return

    def _final(self, rid: str, ids: list[int], sent: int, reason: str, spans: list) -> FakeOutput:
        rows = len(ids) + sent - 1
        return FakeOutput(rid, [FakeCompletion([], [], reason, self._routes(rows), spans)], True)

    async def update_weight_version(self, label: str) -> None:
        self.calls.append(("label", label))
        self.label = label

    async def abort(self, request_id: str) -> None:
        self.calls.append(("abort", request_id))
        self._aborted.add(request_id)

    async def pause_generation(self, *, mode: str = "abort", clear_cache: bool = True) -> None:
        self.calls.append(("pause", mode, clear_cache))
        self._running.clear()

    async def resume_generation(self) -> None:
        self.calls.append(("resume",))
        self._running.set()

    async def collective_rpc(self, method: Any, timeout: float | None = None, args: tuple = (),
                             kwargs: dict | None = None) -> list:
        kwargs = kwargs or {}
        assert not self._running.is_set(), "weights must be loaded while generation is paused"
        if method == "reload_weights" and "weights_path" in kwargs:
            from zaya_rl.weights.files import read_folder

            names = sorted(read_folder(kwargs["weights_path"]))  # the folder must exist during the call
            self.loaded.append(("path", names))
            assert Path(kwargs["weights_path"]).is_dir()
        elif method == "reload_weights":
            self.loaded.append(("iterator", sorted(n for n, _ in kwargs["weights_iterator"])))
        self.calls.append(("rpc", method if isinstance(method, str) else method.__name__))
        return [None]

    async def start_weight_update(self, is_checkpoint_format: bool = True) -> None:
        self.calls.append(("start_weight_update", is_checkpoint_format))

    async def update_weights(self, request: Any) -> None:
        assert not self._running.is_set()
        self.calls.append(("update_weights", request.update_info))

    async def finish_weight_update(self) -> None:
        self.calls.append(("finish_weight_update",))

    async def init_weight_transfer_engine(self, request: Any) -> None:
        self.calls.append(("init_weight_transfer_engine", request.init_info))
