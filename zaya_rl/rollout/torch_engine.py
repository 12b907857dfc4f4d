"""``TorchEngine``: a transformers-based rollout engine with continuous batching and in-flight weight updates.

The CPU/CI engine, and a GPU fallback for models vLLM does not serve (ZAYA in vLLM 0.33). It reproduces
the conventions of the vLLM path (research/vllm_ray.md §4): processed behaviour log-probs, routed experts
``[P + G - 1, L, K]`` (recorded by router hooks, ``zaya_rl.models.router_replay``), a policy version per
token, and PipelineRL's keep-the-cache weight swap.

How it runs. ``generate`` queues a request and awaits its future; a background task in the caller's event
loop runs the decode loop. Each iteration (a "step", under ``torch.inference_mode``):

1. drops finished rows from the batch (``batch_cache.select_rows``) and trims all-padding cache columns;
2. admits queued requests up to ``max_batch_size``: prefills them as one left-padded batch, samples their
   first token, and merges their cache into the running one (``batch_cache.merge``) — continuous
   batching, exact for ZAYA's CCA state (see ``batch_cache``);
3. decodes one token for every running row (per-row position ids, 2-D padding mask);

then ``await asyncio.sleep(0)``. The hot loop keeps per-row state where the forward needs it: the last
token and position of every row stay on the device (``_Rows``), the padding mask lives in a preallocated
buffer that grows by doubling, routes stay on the device until a request finishes, and the one
device-to-host copy per step brings the sampled tokens and their log-probs back together. Seeded requests
draw their uniforms from a counter-based generator in one vectorised call (``seeded_uniforms``), and no
``[B, V]`` sort runs unless some row uses top-p < 1. Forwards run synchronously inside the step, so anything else on the
event loop — ``update_weights``, ``abort``, new ``generate`` calls — runs *between* steps, never during
one. A weight update therefore lands between two decode steps; running sequences keep their KV cache
(built with the old weights) and the tokens sampled afterwards carry the new version.

Not done here: prompt tokenisation (the rollout worker's), chunked prefill, prefix caching.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from transformers import DynamicCache, PreTrainedModel

from zaya_rl.models import batch_cache
from zaya_rl.models.detokenize import CanaryFeed, fast_decoder
from zaya_rl.models.router_replay import moe_routers, record_routing, to_routed_experts
from zaya_rl.models.sampling import sample_tokens, seeded_uniforms
from zaya_rl.rollout.base import (
    NO_ROUTE,
    FinishReason,
    GenerationRequest,
    GenerationResult,
    RolloutEngine,
    WeightsLike,
)


@dataclass(eq=False)
class _Seq:
    """One request's state while queued or decoding."""

    request: GenerationRequest
    future: asyncio.Future
    canary: CanaryFeed | None
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    routes: list[torch.Tensor] = field(default_factory=list)  # [n, L, K] chunks on the device, one per forward
    finish: FinishReason | None = None


@dataclass
class _Rows:
    """Per-row state of the running batch, aligned with ``TorchEngine._rows``.

    ``last`` (the token each row feeds next) and ``position`` (its position id) are ``[B]`` long on the
    device, advanced there after each decode; ``temperature``/``top_p`` ``[B]`` on the device; ``seeds``/
    ``seeded`` ``[B]`` host arrays for the uniforms; ``truncate``: some row has top-p < 1.
    """

    last: torch.Tensor
    position: torch.Tensor
    temperature: torch.Tensor
    top_p: torch.Tensor
    seeds: np.ndarray
    seeded: np.ndarray
    truncate: bool

    @classmethod
    def of(cls, seqs: Sequence[_Seq], last: torch.Tensor, device: torch.device) -> _Rows:
        """State of rows that just sampled their first token (``last``: ``[B]`` on the device)."""
        params = [s.request.params for s in seqs]
        return cls(
            last=last,
            position=torch.tensor([len(s.request.prompt_ids) for s in seqs], dtype=torch.long, device=device),
            temperature=torch.tensor([p.temperature for p in params], dtype=torch.float32, device=device),
            top_p=torch.tensor([p.top_p for p in params], dtype=torch.float32, device=device),
            seeds=np.array([(p.seed or 0) % 2**64 for p in params], dtype=np.uint64),
            seeded=np.array([p.seed is not None for p in params], dtype=bool),
            truncate=any(p.top_p < 1.0 for p in params),
        )

    def select(self, keep: list[int]) -> _Rows:
        idx = torch.tensor(keep, dtype=torch.long, device=self.last.device)
        top_p = self.top_p.index_select(0, idx)
        return _Rows(self.last.index_select(0, idx), self.position.index_select(0, idx),
                     self.temperature.index_select(0, idx), top_p, self.seeds[keep], self.seeded[keep],
                     self.truncate and bool((top_p < 1.0).any()))  # fmt: skip

    def extend(self, other: _Rows) -> _Rows:
        return _Rows(*(torch.cat([a, b]) for a, b in ((self.last, other.last), (self.position, other.position),
                                                      (self.temperature, other.temperature),
                                                      (self.top_p, other.top_p))),
                     np.concatenate([self.seeds, other.seeds]), np.concatenate([self.seeded, other.seeded]),
                     self.truncate or other.truncate)  # fmt: skip


class TorchEngine(RolloutEngine):
    """Rollout engine over a transformers causal LM (see the module docstring).

    Args:
        model: the policy; put in eval mode, used in place (``update_weights`` writes into it).
        tokenizer: used to detokenize for the canary and for the pad id.
        max_batch_size: most sequences decoded together.
        record_routing: record routed experts (ignored for models without supported MoE routers).
        version: policy version of the initial weights.
        seed: seed of the engine's random stream (requests without their own seed draw from it).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer,
        *,
        max_batch_size: int = 64,
        record_routing: bool = True,
        version: int = 0,
        seed: int = 0,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"TorchEngine.max_batch_size must be >= 1, got {max_batch_size}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self._decoder = fast_decoder(tokenizer)
        self.max_batch_size = max_batch_size
        self.device = next(model.parameters()).device
        self._routers = (moe_routers(model) or None) if record_routing else None
        self._route_shape = (len(self._routers), self._routers[0][0].top_k) if self._routers else None
        self._vocab = model.get_input_embeddings().num_embeddings
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._version = version
        self._rng = np.random.default_rng(seed)
        self._pending: deque[_Seq] = deque()
        self._rows: list[_Seq] = []
        self._state: _Rows | None = None
        self._cache: DynamicCache | None = None
        self._mask_buf: torch.Tensor | None = None  # [B, capacity] long, 0 = padding; columns [0, _width) used
        self._width = 0
        self._live: dict[str, _Seq] = {}
        self._task: asyncio.Task | None = None
        self._closed = False

    @property
    def version(self) -> int:
        return self._version

    def tokens_generated(self, request_id: str) -> int:
        """Tokens sampled so far for an in-flight request (0 if queued or unknown)."""
        seq = self._live.get(request_id)
        return len(seq.tokens) if seq is not None else 0

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        if self._closed:
            raise RuntimeError("TorchEngine is closed")
        self._validate(request)
        loop = asyncio.get_running_loop()
        seq = _Seq(request=request, future=loop.create_future(), canary=self._canary_feed(request))
        self._live[request.request_id] = seq
        self._pending.append(seq)
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())
        try:
            return await seq.future
        except asyncio.CancelledError:
            self._finish(seq, "abort")
            raise

    def _canary_feed(self, request: GenerationRequest) -> CanaryFeed | None:
        c = request.canary
        return None if c is None else CanaryFeed(self._decoder, c.threshold, c.patience, c.chunk_bytes)

    def _validate(self, request: GenerationRequest) -> None:
        rid, ids = request.request_id, list(request.prompt_ids)
        if rid in self._live:
            raise ValueError(f"request {rid!r} is already in flight")
        if not ids:
            raise ValueError(f"request {rid!r}: prompt_ids is empty")
        bad = [t for t in ids if not 0 <= int(t) < self._vocab]
        if bad:
            raise ValueError(
                f"request {rid!r}: prompt token ids {bad[:5]} are outside the vocabulary [0, {self._vocab})"
            )

    async def update_weights(self, weights: WeightsLike, version: int) -> None:
        items = list(weights.items()) if isinstance(weights, Mapping) else list(weights)
        targets = self.model.state_dict(keep_vars=True)
        for name, tensor in items:
            if name not in targets:
                raise KeyError(
                    f"update_weights: unknown parameter {name!r} (not in {type(self.model).__name__}.state_dict())"
                )
            if not isinstance(tensor, torch.Tensor):
                raise TypeError(
                    f"update_weights: {name!r} is a {type(tensor).__name__}, expected a torch.Tensor"
                )
            if tuple(tensor.shape) != tuple(targets[name].shape):
                raise ValueError(
                    f"update_weights: {name!r} has shape {tuple(tensor.shape)} but the model's is {tuple(targets[name].shape)}"
                )
        # All checked before the first write: a bad update leaves the engine unchanged. This coroutine runs
        # between decode steps (they are synchronous), so no forward sees half-updated weights.
        with torch.no_grad():
            for name, tensor in items:
                targets[name].copy_(tensor)
        self._version = version

    async def abort(self, request_id: str) -> None:
        seq = self._live.get(request_id)
        if seq is not None:
            self._finish(seq, "abort")

    async def close(self) -> None:
        self._closed = True
        self._fail_all(None)
        if self._task is not None and not self._task.done():
            self._task.cancel()

    # ----------------------------------------------------------------------------------------- decode loop

    async def _run(self) -> None:
        try:
            while self._pending or self._rows:
                with torch.inference_mode():
                    self._step()
                await asyncio.sleep(0)  # let update_weights / abort / generate run between steps
        except asyncio.CancelledError:  # close(), or the event loop shutting down
            self._fail_all(None)
            raise
        except Exception as exc:  # a failed forward fails every request in flight, with the cause
            self._fail_all(exc)

    def _fail_all(self, exc: Exception | None) -> None:
        """Resolve every queued or running request: with ``exc`` if given, else as aborted."""
        for seq in list(self._live.values()):
            if exc is None:
                self._finish(seq, "abort")
            elif not seq.future.done():
                seq.future.set_exception(exc)
        self._live.clear()
        self._pending.clear()
        self._reset_batch()

    def _step(self) -> None:
        self._drop_finished()
        room = self.max_batch_size - len(self._rows)
        if room > 0 and self._pending:
            new = [self._pending.popleft() for _ in range(min(room, len(self._pending)))]
            self._admit(new)
            self._drop_finished()
        if self._rows:
            self._decode()

    @property
    def _mask(self) -> torch.Tensor:
        """The running batch's ``[B, S]`` padding mask (a view of the buffer)."""
        return self._mask_buf[:, : self._width]

    def _set_mask(self, mask: torch.Tensor, spare: int) -> None:
        """Copy ``mask`` into a fresh buffer with room for ``spare`` more decode columns."""
        self._mask_buf = torch.zeros((mask.shape[0], mask.shape[1] + spare), dtype=mask.dtype, device=mask.device)
        self._mask_buf[:, : mask.shape[1]] = mask
        self._width = mask.shape[1]

    def _forward(
        self, input_ids: torch.Tensor, positions: torch.Tensor, cache: DynamicCache, mask: torch.Tensor
    ):
        """One model forward; returns last-position logits ``[B, V]`` and routing ``[B, T, L, K]`` on the
        device (or None)."""
        kwargs = dict(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        if self._routers is None:
            return self.model(**kwargs).logits[:, -1], None
        with record_routing(self.model, self._routers) as rec:
            logits = self.model(**kwargs).logits[:, -1]
        return logits, rec.pop_steps()[0].indices

    def _admit(self, new: list[_Seq]) -> None:
        width = max(len(s.request.prompt_ids) for s in new)
        ids = torch.full((len(new), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(new), width), dtype=torch.long)
        for i, s in enumerate(new):
            n = len(s.request.prompt_ids)
            ids[i, width - n :] = torch.as_tensor(list(s.request.prompt_ids), dtype=torch.long)
            mask[i, width - n :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        ids, mask, positions = ids.to(self.device), mask.to(self.device), positions.to(self.device)
        logits, routes = self._forward(ids, positions, cache, mask)
        if routes is not None:
            for i, s in enumerate(new):
                s.routes.append(routes[i, width - len(s.request.prompt_ids) :])
        rows = _Rows.of(new, torch.zeros(len(new), dtype=torch.long, device=self.device), self.device)
        rows.last = self._sample(new, rows, logits)
        self._merge(new, rows, cache, mask)

    def _merge(self, new: list[_Seq], rows: _Rows, cache: DynamicCache, mask: torch.Tensor) -> None:
        spare = max(s.request.params.max_new_tokens for s in new)
        if self._cache is None:
            self._rows, self._state, self._cache = list(new), rows, cache
            self._set_mask(mask, spare)
            return
        width = max(self._width, mask.shape[1])
        self._cache = batch_cache.merge(self._cache, cache)
        merged = torch.cat([F.pad(m, (width - m.shape[1], 0)) for m in (self._mask, mask)], dim=0)
        self._set_mask(merged, max(spare, self._mask_buf.shape[1] - self._width))
        self._rows += new
        self._state = self._state.extend(rows)

    def _decode(self) -> None:
        if self._width == self._mask_buf.shape[1]:  # full: double the spare columns
            self._set_mask(self._mask, max(self._width, 16))
        self._mask_buf[:, self._width] = 1
        self._width += 1
        rows = self._state
        logits, routes = self._forward(rows.last[:, None], rows.position[:, None], self._cache, self._mask)
        if routes is not None:
            for i, s in enumerate(self._rows):
                s.routes.append(routes[i])
        rows.last = self._sample(self._rows, rows, logits)
        rows.position += 1

    def _sample(self, seqs: list[_Seq], rows: _Rows, logits: torch.Tensor) -> torch.Tensor:
        """Sample every row, book the tokens (one device-to-host copy); returns the tokens on the device."""
        uniform = torch.from_numpy(self._uniforms(seqs, rows)).to(logits.device, torch.float32)
        tokens, logprobs = sample_tokens(logits, rows.temperature, rows.top_p if rows.truncate else None, uniform)
        host = torch.stack([tokens.double(), logprobs.double()]).cpu().numpy()
        for s, tok, lp in zip(seqs, host[0].astype(np.int64).tolist(), host[1].tolist(), strict=True):
            self._append(s, tok, lp)
        return tokens

    def _uniforms(self, seqs: list[_Seq], rows: _Rows) -> np.ndarray:
        """One U[0, 1) per row: draw ``len(tokens)`` of the request's own stream if it has a seed (so its
        samples do not depend on what else is in the batch), else from the engine's stream."""
        out = self._rng.random(len(seqs))
        if rows.seeded.any():
            counters = np.fromiter((len(s.tokens) for s in seqs), dtype=np.uint64, count=len(seqs))
            out = np.where(rows.seeded, seeded_uniforms(rows.seeds, counters), out)
        return out

    def _append(self, seq: _Seq, token: int, logprob: float) -> None:
        seq.tokens.append(token)
        seq.logprobs.append(logprob)
        seq.versions.append(self._version)
        p = seq.request.params
        if seq.canary is not None and seq.canary.push(token):
            self._finish(seq, "degenerate")
        elif token in p.stop_token_ids:
            self._finish(seq, "stop")
        elif len(seq.tokens) >= p.max_new_tokens:
            self._finish(seq, "length")

    # ------------------------------------------------------------------------------------------- results

    def _finish(self, seq: _Seq, reason: FinishReason) -> None:
        """Resolve a request now; its batch row (if any) is dropped at the start of the next step."""
        if seq.finish is not None:
            return
        seq.finish = reason
        self._live.pop(seq.request.request_id, None)
        if seq in self._pending:
            self._pending.remove(seq)
        if not seq.future.done():
            seq.future.set_result(self._result(seq))

    def _result(self, seq: _Seq) -> GenerationResult:
        r = seq.request
        return GenerationResult(
            request_id=r.request_id,
            prompt_ids=list(r.prompt_ids),
            token_ids=list(seq.tokens),
            logprobs=list(seq.logprobs),
            versions=list(seq.versions),
            finish_reason=seq.finish,
            routed_experts=self._routes(seq),
            canary_ratios=seq.canary.ratios if seq.canary is not None else [],
        )

    def _routes(self, seq: _Seq) -> np.ndarray | None:
        if self._route_shape is None:
            return None
        n_layers, k = self._route_shape
        rows = len(seq.request.prompt_ids) + max(len(seq.tokens), 1) - 1
        out = np.full((rows, n_layers, k), NO_ROUTE, dtype=np.int16)
        if seq.routes:
            got = torch.cat(seq.routes)[:rows].cpu()
            out[: got.shape[0]] = to_routed_experts(got, torch.ones(got.shape[:2], dtype=torch.bool))
        return out

    def _drop_finished(self) -> None:
        if not self._rows or all(s.finish is None for s in self._rows):
            return
        keep = [i for i, s in enumerate(self._rows) if s.finish is None]
        if not keep:
            self._reset_batch()
            return
        batch_cache.select_rows(self._cache, torch.tensor(keep, device=self.device))
        mask = self._mask[keep]
        self._rows = [self._rows[i] for i in keep]
        self._state = self._state.select(keep)
        # Columns that are padding in every remaining row carry nothing; dropping them bounds the cache.
        first_used = int(mask.any(dim=0).nonzero()[0])
        batch_cache.drop_left(self._cache, first_used)
        self._set_mask(mask[:, first_used:], self._mask_buf.shape[1] - self._width)

    def _reset_batch(self) -> None:
        self._rows, self._state, self._cache, self._mask_buf, self._width = [], None, None, None, 0
