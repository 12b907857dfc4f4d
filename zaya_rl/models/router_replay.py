"""MoE router replay (R3): record the experts the rollout engine chose, force them in the trainer's forward.

Ma et al., arXiv 2510.11370 (R3); research/algorithms.md §6, research/vllm_ray.md §2 and §9.

Only the discrete *selection* is replayed. The gate weights are recomputed from the trainer's own router
probabilities at the replayed indices, so the router still gets a gradient:

- ZAYA (``ZayaRouter``, top-1 over E experts + a skip class E): ``p = softmax(logits)`` over E+1 classes,
  ``w = p[idx]``; a replayed skip (``idx == E``) becomes weight 0 on expert 0, exactly as the model's own
  skip->0 rewrite does. Recording recomputes ``topk(softmax(logits) + balancing_biases)`` so that skip is
  captured as E *before* that rewrite (the model returns 0 for both "expert 0" and "skip").
- Qwen3-MoE (``Qwen3MoeTopKRouter``): ``p = softmax(logits)`` in fp32, ``w = p.gather(idx)``,
  renormalised over the K chosen if ``norm_topk_prob``.

Both work by forward hooks on the router modules (no class patching); a hook's return value replaces the
router's output. Adding a family = one ``RouterFamily`` entry in ``ROUTER_FAMILIES`` and its ``model_type`` in
``models.families.REPLAY_MODEL_TYPES`` (the config-time check of ``algorithm.router_replay``).

Layouts. ``L`` = number of router modules (MoE layers, in module order), ``K`` = top-k.

- Recording: ``recorder.steps`` holds one ``RoutingStep`` per forward of the model: ``indices``
  ``[B, T, L, K]`` (long) and ``valid`` ``[B, T, L]`` (bool; False where the forward's 2-D
  ``attention_mask`` marks padding). ``recorder.indices`` / ``.valid`` concatenate the steps along the
  sequence axis, so a KV-cache decode (prefill ``[B, P]`` then steps ``[B, 1]`` with the same rows) yields
  ``[B, P + n, L, K]``: column j is input position j of that forward sequence, padding columns included.
  An engine whose batch changes between steps consumes ``pop_steps()`` instead.
- Replay: ``indices`` ``[B, T, L, K]`` and ``valid`` ``[B, T, L]`` aligned with the trainer's input ids
  ``[B, T]``, which are forwarded in one call. Invalid entries route natively. Use **right padding**
  (tokens at ``[0, n_i)``, position ids ``0..n_i-1``): the model is causal (attention, CCA conv and its
  recurrent value state), so pad columns after a sequence cannot change it, and no position ids or 4-D
  masks are needed. Left padding also works if the trainer passes the 2-D attention mask (ZAYA zeroes
  padded inputs before its conv) and position ids; ``routes_to_batch(..., padding_side="left")`` aligns
  routes for it.
- One sequence (``GenerationResult.routed_experts``): int16 ``[P + G - 1, L, K]``, ``NO_ROUTE`` (-1) where
  nothing was recorded; the final sampled token is never fed back, so it has no row.

Run ``python -m pytest tests/models/test_router_replay.py -q``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from zaya_rl.rollout.base import NO_ROUTE

RouterOutput = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class RouterFamily:
    """How one transformers router class selects experts and weighs them.

    Attributes:
        num_choices: number of selectable indices (ZAYA: E + 1 with the skip class).
        native: ``(module, output) -> [N, K]`` long, the selection the module makes (skip kept as E).
        replay: ``(module, output, idx [N, K], valid [N, 1]) -> output`` with the selection forced where
            valid and gate weights recomputed from the module's own (differentiable) probabilities.
    """

    num_choices: Callable[[nn.Module], int]
    native: Callable[[nn.Module, RouterOutput], torch.Tensor]
    replay: Callable[[nn.Module, RouterOutput, torch.Tensor, torch.Tensor], RouterOutput]


def _zaya_native(mod: nn.Module, out: RouterOutput) -> torch.Tensor:
    # Same ops as ZayaRouter.forward (softmax in the logits' dtype, then fp32 + biases), minus the rewrite.
    probs = torch.softmax(out[0], dim=-1)
    return torch.topk(probs.detach().to(torch.float32) + mod.balancing_biases, mod.top_k, dim=-1).indices


def _zaya_replay(mod: nn.Module, out: RouterOutput, idx: torch.Tensor, valid: torch.Tensor) -> RouterOutput:
    logits, native_w, native_idx, router_states_next = out
    weights = torch.softmax(logits, dim=-1).gather(1, idx)
    skip = idx == mod.num_experts
    weights = weights.masked_fill(skip, 0)
    idx = idx.masked_fill(skip, 0)
    return (
        logits,
        torch.where(valid, weights, native_w),
        torch.where(valid, idx, native_idx),
        router_states_next,
    )


def _qwen3_replay(mod: nn.Module, out: RouterOutput, idx: torch.Tensor, valid: torch.Tensor) -> RouterOutput:
    logits, native_w, native_idx = out
    weights = torch.softmax(logits, dim=-1, dtype=torch.float).gather(1, idx)
    if mod.norm_topk_prob:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    weights = weights.to(logits.dtype)
    return logits, torch.where(valid, weights, native_w), torch.where(valid, idx, native_idx)


#: Router class name -> family. The class name (not the class) keys it, so importing this module does
#: not import every transformers model.
ROUTER_FAMILIES: dict[str, RouterFamily] = {
    "ZayaRouter": RouterFamily(lambda m: m.num_experts + 1, _zaya_native, _zaya_replay),
    "Qwen3MoeTopKRouter": RouterFamily(lambda m: m.num_experts, lambda m, out: out[2], _qwen3_replay),
}


def moe_routers(model: nn.Module) -> list[tuple[nn.Module, RouterFamily]]:
    """The model's supported router modules in layer order, with their family (empty for dense models)."""
    return [
        (m, ROUTER_FAMILIES[type(m).__name__]) for m in model.modules() if type(m).__name__ in ROUTER_FAMILIES
    ]


def find_routers(model: nn.Module) -> list[tuple[nn.Module, RouterFamily]]:
    """``moe_routers`` for code that needs routers: an error naming the model if there are none."""
    routers = moe_routers(model)
    if not routers:
        raise ValueError(
            f"router replay: {type(model).__name__} has no supported MoE router (supported: {sorted(ROUTER_FAMILIES)})"
        )
    return routers


def routing_shape(model: nn.Module) -> tuple[int, int]:
    """``(num_moe_layers, top_k)`` of a model's routing tensors."""
    routers = find_routers(model)
    return len(routers), routers[0][0].top_k


@dataclass
class RoutingStep:
    """Routing of one forward: ``indices`` [B, T, L, K] long, ``valid`` [B, T, L] bool."""

    indices: torch.Tensor
    valid: torch.Tensor


@dataclass
class RoutingRecorder:
    """Filled by forwards inside ``record_routing``; see the module docstring for the layout."""

    num_layers: int
    top_k: int
    steps: list[RoutingStep] = field(default_factory=list)
    _shape: tuple[int, int] | None = None
    _mask: torch.Tensor | None = None
    _layers: dict[int, torch.Tensor] = field(default_factory=dict)

    @property
    def indices(self) -> torch.Tensor:
        """All recorded forwards concatenated along the sequence axis, ``[B, sum T, L, K]``."""
        return self._concat("indices")

    @property
    def valid(self) -> torch.Tensor:
        """Validity of ``indices``, ``[B, sum T, L]``."""
        return self._concat("valid")

    def pop_steps(self) -> list[RoutingStep]:
        """Return the steps recorded so far and forget them (for engines whose batch changes)."""
        steps, self.steps = self.steps, []
        return steps

    def _concat(self, name: str) -> torch.Tensor:
        if not self.steps:
            raise RuntimeError("router replay: nothing recorded yet (no forward inside record_routing)")
        if len({s.indices.shape[0] for s in self.steps}) > 1:
            raise RuntimeError("router replay: recorded forwards have different batch sizes; use pop_steps()")
        return torch.cat([getattr(s, name) for s in self.steps], dim=1)

    def _begin(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        source = ids if ids is not None else kwargs["inputs_embeds"]
        self._shape = (source.shape[0], source.shape[1])
        mask = kwargs.get("attention_mask")
        self._mask = mask if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None
        self._layers = {}

    def _capture(
        self, layer: int, family: RouterFamily, module: nn.Module, args: tuple, out: RouterOutput
    ) -> None:
        with torch.no_grad():
            self._layers[layer] = family.native(module, out)

    def _end(self, module: nn.Module, args: tuple, out: Any) -> None:
        missing = sorted(set(range(self.num_layers)) - set(self._layers))
        if missing:
            raise RuntimeError(f"router replay: MoE layers {missing} did not run in this forward")
        b, t = self._shape
        idx = torch.stack([self._layers[i].view(b, t, self.top_k) for i in range(self.num_layers)], dim=2)
        if self._mask is None:
            valid = torch.ones(b, t, self.num_layers, dtype=torch.bool, device=idx.device)
        else:
            valid = (
                self._mask[:, -t:]
                .to(device=idx.device, dtype=torch.bool)[:, :, None]
                .expand(-1, -1, self.num_layers)
            )
        self.steps.append(RoutingStep(idx, valid.contiguous()))
        self._layers = {}


@contextmanager
def record_routing(
    model: nn.Module, routers: list[tuple[nn.Module, RouterFamily]] | None = None
) -> Iterator[RoutingRecorder]:
    """Record the native expert selection of every forward of ``model`` inside the block.

    Args:
        model: the policy.
        routers: ``find_routers(model)``, for callers that record every decode step and would otherwise
            walk the module tree each time.
    """
    routers = routers if routers is not None else find_routers(model)
    recorder = RoutingRecorder(num_layers=len(routers), top_k=routers[0][0].top_k)
    base = model.base_model
    handles = [
        base.register_forward_pre_hook(recorder._begin, with_kwargs=True),
        base.register_forward_hook(recorder._end),
    ]
    handles += [
        r.register_forward_hook(partial(recorder._capture, i, fam)) for i, (r, fam) in enumerate(routers)
    ]
    try:
        yield recorder
    finally:
        for h in handles:
            h.remove()


#: The counts ``ReplayStats`` keeps on the device, in the order of its accumulator.
_DEVICE_COUNTS = ("mismatched", "total", "covered", "positions", "samples_covered")


@dataclass
class ReplayStats:
    """Router-replay statistics of one optimizer step (several micro-batch forwards), the keys of ``counts()``.

    ``mismatched``/``total``: replayed (token, layer) pairs, and those whose native top-k set (what the
    trainer's router would have chosen) differs from the replayed one; filled by the forwards inside
    ``replay_routing``. ``covered``/``positions`` and ``samples_covered``/``samples``: real input positions
    replayed in every MoE layer, and sequences with at least one replayed position; filled by
    ``add_coverage`` for every micro-batch, replayed or not.

    The counts stay on the device where they are computed (reading one per router per forward made the host
    wait for the GPU between MoE layers); ``counts``/``metrics`` read them all at once.
    """

    samples: int = 0
    _sums: torch.Tensor | None = field(default=None, repr=False, init=False)

    def _add(self, name: str, value: torch.Tensor) -> None:
        if self._sums is None:
            self._sums = torch.zeros(len(_DEVICE_COUNTS), dtype=torch.long, device=value.device)
        self._sums[_DEVICE_COUNTS.index(name)] += value.to(torch.long)

    def counts(self) -> dict[str, int]:
        """Every count as an int (one read from the device)."""
        sums = [0] * len(_DEVICE_COUNTS) if self._sums is None else self._sums.tolist()
        return {**dict(zip(_DEVICE_COUNTS, sums, strict=True)), "samples": self.samples}

    @property
    def disagreement(self) -> float:
        """Fraction of replayed (token, layer) pairs whose native selection differs (0 when none)."""
        c = self.counts()
        return c["mismatched"] / c["total"] if c["total"] else 0.0

    def add_coverage(self, valid: torch.Tensor | None, attention_mask: torch.Tensor) -> None:
        """Count one micro-batch: ``valid`` ``[B, T, L]`` (None: nothing replayed), ``attention_mask`` ``[B, T]``."""
        real = attention_mask.bool()
        self._add("positions", real.sum())
        self.samples += int(real.shape[0])
        if valid is not None:
            self._add("covered", (valid.all(dim=-1) & real).sum())
            self._add("samples_covered", (valid.any(dim=-1) & real).any(dim=-1).sum())

    def metrics(self) -> dict[str, float]:
        """``replay/coverage`` (token positions), ``replay/sample_coverage``, ``replay/disagreement``."""
        c = self.counts()
        return {
            "replay/coverage": c["covered"] / c["positions"] if c["positions"] else 0.0,
            "replay/sample_coverage": c["samples_covered"] / c["samples"] if c["samples"] else 0.0,
            "replay/disagreement": c["mismatched"] / c["total"] if c["total"] else 0.0,
        }


def _replay_hook(
    layer: int,
    family: RouterFamily,
    idx: torch.Tensor,
    valid: torch.Tensor,
    stats: ReplayStats,
    module: nn.Module,
    args: tuple,
    out: RouterOutput,
) -> RouterOutput:
    if out[0].shape[0] != idx.shape[0]:
        raise ValueError(
            f"router replay: layer {layer} routes {out[0].shape[0]} tokens but the replayed routing covers "
            f"{idx.shape[0]} (indices must be [B, T, L, K] for the exact [B, T] batch forwarded)"
        )
    with torch.no_grad():
        native = family.native(module, out).sort(dim=-1).values
        differs = (native != idx.sort(dim=-1).values).any(dim=-1) & valid[:, 0]
        stats._add("mismatched", differs.sum())
        stats._add("total", valid.sum())
    return family.replay(module, out, idx, valid)


@contextmanager
def replay_routing(
    model: nn.Module, indices: torch.Tensor, valid: torch.Tensor, stats: ReplayStats | None = None
) -> Iterator[ReplayStats]:
    """Force the recorded expert selection in every forward of ``model`` inside the block.

    Args:
        model: the policy (any module whose routers are in ``ROUTER_FAMILIES``).
        indices: ``[B, T, L, K]`` expert indices (ZAYA: 0..E, E = skip) for the ``[B, T]`` batch forwarded.
        valid: ``[B, T, L]`` bool; False entries route natively.
        stats: accumulate the disagreement into this (e.g. one per optimizer step); default: a new one.
    """
    routers = find_routers(model)
    _check_replay_inputs(routers, indices, valid)
    device = next(model.parameters()).device
    b, t, n_layers, k = indices.shape
    stats = stats if stats is not None else ReplayStats()
    handles = []
    for i, (router, family) in enumerate(routers):
        v = valid[:, :, i].reshape(b * t, 1).to(device)
        # Invalid entries may hold the -1 sentinel; clamp so the gather stays in range (they are not used).
        idx = torch.where(v, indices[:, :, i, :].reshape(b * t, k).to(device), 0).long()
        handles.append(router.register_forward_hook(partial(_replay_hook, i, family, idx, v, stats)))
    try:
        yield stats
    finally:
        for h in handles:
            h.remove()


def _check_replay_inputs(
    routers: list[tuple[nn.Module, RouterFamily]], indices: torch.Tensor, valid: torch.Tensor
) -> None:
    n_layers, k = len(routers), routers[0][0].top_k
    if indices.dim() != 4 or indices.shape[2:] != (n_layers, k):
        raise ValueError(
            f"router replay: indices must be [B, T, {n_layers}, {k}], got {tuple(indices.shape)}"
        )
    if valid.shape != indices.shape[:3] or valid.dtype != torch.bool:
        raise ValueError(
            f"router replay: valid must be bool {tuple(indices.shape[:3])}, got {valid.dtype} {tuple(valid.shape)}"
        )
    if indices.device.type != "cpu":  # the range check reads from the device: ``check_routes`` on the host
        return
    for i, (router, family) in enumerate(routers):
        chosen = indices[:, :, i][valid[:, :, i]]
        limit = family.num_choices(router)
        if chosen.numel() and (int(chosen.min()) < 0 or int(chosen.max()) >= limit):
            raise ValueError(
                f"router replay: layer {i} has indices in [{int(chosen.min())}, {int(chosen.max())}] but "
                f"{type(router).__name__} has {limit} choices"
            )


def check_routes(model: nn.Module, routes: Sequence[np.ndarray | None]) -> None:
    """Every recorded route (one ``[n, L, K]`` array per sample, ``NO_ROUTE`` = none; None: a sample without
    routes) names one of its MoE layer's choices, checked on the host before the routes move to the GPU,
    where ``replay_routing`` does not check them (it would wait for the device). The error names the sample."""
    routers = find_routers(model)
    limits = np.array([family.num_choices(router) for router, family in routers])
    for i, r in enumerate(routes):
        if r is None or not len(r):
            continue
        if r.ndim != 3 or r.shape[1] != len(limits):
            raise ValueError(f"sample {i}: routed_experts shape {r.shape} does not match [*, {len(limits)}, K]")
        over = np.argwhere((r >= limits[None, :, None]) | (r < NO_ROUTE))
        if len(over):
            _, layer, _ = over[0]
            raise ValueError(f"sample {i}: routed_experts of MoE layer {layer} hold {int(r[:, layer].max())} (min "
                             f"{int(r[:, layer].min())}) but {type(routers[layer][0]).__name__} has {limits[layer]} "
                             f"choices ({NO_ROUTE}: none recorded)")


def to_routed_experts(indices: torch.Tensor, valid: torch.Tensor) -> np.ndarray:
    """One sequence's routing ``[n, L, K]`` + ``[n, L]`` -> ``GenerationResult.routed_experts`` (int16, -1 = none)."""
    out = indices.to(torch.int16).clone()
    out[~valid] = NO_ROUTE
    return out.cpu().numpy()


def routes_to_batch(
    routes: Sequence[np.ndarray | None],
    lengths: Sequence[int],
    seq_len: int,
    num_layers: int,
    top_k: int,
    padding_side: Literal["right", "left"] = "right",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence ``routed_experts`` -> replay tensors for a padded batch.

    Args:
        routes: per row, ``[n_i - 1, L, K]`` routes of its ``n_i`` tokens (negative = no route), or None.
        lengths: ``n_i``, the number of real tokens of each row (prompt + completion).
        seq_len: ``T``, the padded length of the batch.
        num_layers: ``L``.
        top_k: ``K``.
        padding_side: where the batch's padding is; row tokens sit at ``[0, n_i)`` or ``[T - n_i, T)``.

    Returns:
        ``indices`` ``[B, T, L, K]`` long (0 where invalid) and ``valid`` ``[B, T, L]`` bool; a (position,
        layer) is valid when all K recorded entries are non-negative.
    """
    indices = torch.zeros(len(routes), seq_len, num_layers, top_k, dtype=torch.long)
    valid = torch.zeros(len(routes), seq_len, num_layers, dtype=torch.bool)
    for row, (r, n) in enumerate(zip(routes, lengths, strict=True)):
        if r is None:
            continue
        r = torch.as_tensor(np.asarray(r, dtype=np.int64))
        if r.dim() != 3 or r.shape[1:] != (num_layers, top_k) or r.shape[0] > n or n > seq_len:
            raise ValueError(
                f"routed_experts of row {row}: shape {tuple(r.shape)} does not fit [<= {n}, {num_layers}, {top_k}] "
                f"in a batch of length {seq_len}"
            )
        start = 0 if padding_side == "right" else seq_len - n
        ok = (r >= 0).all(dim=-1)
        indices[row, start : start + r.shape[0]] = r.clamp(min=0)
        valid[row, start : start + r.shape[0]] = ok
    return indices, valid


def logprob_gap(
    train_logprobs: torch.Tensor,
    behaviour_logprobs: torch.Tensor,
    mask: torch.Tensor,
    prefix: str = "logprob_gap",
) -> dict[str, float]:
    """Train-vs-behaviour log-prob gap over masked tokens (all inputs ``[B, T]``; research/algorithms.md §6).

    Returns ``{prefix}/mean_abs`` (mean |log p_train - log q|), ``{prefix}/max_abs`` and ``{prefix}/max_ratio``
    (max of p/q and q/p, i.e. exp(max_abs)). Log it with replay on and off under different prefixes.
    """
    with torch.no_grad():
        diff = (train_logprobs.detach().float() - behaviour_logprobs.float()).abs()[mask.bool()]
        if diff.numel() == 0:
            return {f"{prefix}/mean_abs": 0.0, f"{prefix}/max_abs": 0.0, f"{prefix}/max_ratio": 1.0}
        max_abs = float(diff.max())
        return {
            f"{prefix}/mean_abs": float(diff.mean()),
            f"{prefix}/max_abs": max_abs,
            f"{prefix}/max_ratio": float(np.exp(max_abs)),
        }
