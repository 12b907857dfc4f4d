"""One RL optimizer step: micro-batched forward/backward with router replay, the NaN guard, clip, step.

    for each micro-batch (packed end to end, or sorted by length and right-padded: trainer/packing.py):
        hidden = base_model(input_ids)                    # under replay_routing(...) for MoE models (R3)
        logp   = token_logprobs(hidden[loss positions], lm_head, targets, T)   # chunked or fused, never [N × V]
        loss_mb = policy_loss(logp, behaviour, A, mask, δ, C, mode, L_max, num_sequences=B_global)
        loss_mb.backward()                                # Σ_mb loss_mb == full-batch loss
    clip the global gradient norm
    read the loss, the norm and the metrics from the device (the step's one wait for it)
    if the loss or the gradient norm is non-finite: zero the gradients and skip the step; else optimizer.step()

With ``router_replay`` every step logs ``replay/coverage`` (real positions replayed in every MoE layer; a
sample without routes routes natively), ``replay/sample_coverage`` and ``replay/disagreement`` (replayed
(token, layer) pairs where the trainer's own router would have chosen differently; ``ReplayStats``).

The maths lives in ``zaya_rl.algorithms`` (loss, log-probs) and ``zaya_rl.optim``; this module only wires
it to a model. The caller (the trainer actor) owns the count of consecutive skipped steps.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from zaya_rl.algorithms.fused_logprobs import resolve_impl
from zaya_rl.algorithms.logprobs import token_logprobs
from zaya_rl.algorithms.loss import policy_loss
from zaya_rl.models.router_replay import ReplayStats, check_routes, replay_routing
from zaya_rl.trainer.batch import MicroBatch, TrainSample, count_nonempty
from zaya_rl.trainer.packing import (
    forward_view,
    packing_separators,
    padded_fraction,
    padding_fraction,
    plan_micro_batches,
    with_positions,
)


@dataclass(frozen=True)
class LossSettings:
    """What the step needs from the run config (``RunConfig`` → ``loss_settings``)."""

    temperature: float
    delta: float
    tis_cap: float
    aggregation: str
    max_len: int
    logprob_chunk_size: int
    router_replay: bool
    grad_clip: float
    micro_batch_size: int
    fp32_lm_head: bool = False
    logprob_impl: str = "auto"
    logprob_grad_filter: bool = False
    packing: str = "never"
    micro_batch_tokens: int | None = None


@dataclass
class StepResult:
    metrics: dict[str, float]
    skipped: bool
    reason: str = ""


def base_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor | None]:
    """The decoder stack, the output-embedding weight and its bias (None without one) of an HF causal LM."""
    if getattr(model.config, "final_logit_softcapping", None):
        raise ValueError("models with final_logit_softcapping are not supported by token_logprobs")
    head = model.get_output_embeddings()
    return getattr(model, model.base_model_prefix), head.weight, head.bias


def describe_kernels(model: torch.nn.Module, settings: LossSettings) -> dict[str, str]:
    """Which log-prob implementation and micro-batch layout the step will use for ``model``, and why."""
    _, head, bias = base_and_head(model)
    impl, why = resolve_impl(
        settings.logprob_impl, device=head.device, weight_dtype=head.dtype, fp32=settings.fp32_lm_head,
        has_bias=bias is not None,
    )
    if settings.logprob_grad_filter:
        if impl != "cce":
            raise ValueError(f"trainer.logprob_grad_filter is cut-cross-entropy's, but the log-prob kernel here is "
                             f"{impl}" + (f" ({why})" if why else ""))
        impl += " with gradient filtering"
    separators, no_pack = packing_separators(model)
    if settings.packing == "always" and separators is None:
        raise ValueError(f"trainer.packing=always: {no_pack}")
    if settings.packing == "never":
        layout = "right-padded (trainer.packing: never)"
    elif separators is None:
        layout = f"right-padded ({no_pack})"
    else:
        when = "where it costs less than padding" if settings.packing == "auto" else "always"
        layout = f"packed {when} ({separators} separator slots between sequences)"
    return {"logprob_impl": f"{impl} ({why})" if why else impl, "micro_batches": layout}


def sequence_logprobs(
    model: torch.nn.Module,
    mb: MicroBatch,
    *,
    settings: LossSettings,
    replay: bool | None = None,
    replay_stats: ReplayStats | None = None,
    check_targets: bool = True,
) -> torch.Tensor:
    """Log-probs ``[B, T]`` of ``mb.targets`` at loss positions (0 elsewhere), at the sampling temperature.

    ``replay`` overrides ``settings.router_replay``; ``replay_stats`` accumulates the replay statistics
    (coverage from the per-sequence ``[B, T]`` view, disagreement from the forward's routes: the same counts
    in the packed and the right-padded layout). ``check_targets``: ``token_logprobs``' range check (False
    where the caller checked the token ids on the host). With ``mb.positions`` found on the host
    (``packing.with_positions``) nothing here waits for the device.
    """
    base, head, bias = base_and_head(model)
    if mb.positions is None:
        mb = with_positions(mb)
    view = forward_view(model, mb)
    use_replay = settings.router_replay if replay is None else replay
    if use_replay and replay_stats is not None:
        replay_stats.add_coverage(mb.replay_valid, mb.attention_mask)
    ctx = (
        replay_routing(model, view.replay_indices, view.replay_valid, replay_stats)
        if use_replay and view.replay_indices is not None
        else contextlib.nullcontext()
    )
    with ctx:
        hidden = base(**view.inputs).last_hidden_state
    lp = token_logprobs(
        hidden.reshape(-1, hidden.shape[-1])[view.loss_rows],
        head,
        mb.targets.reshape(-1)[mb.positions.loss],
        temperature=settings.temperature,
        chunk_size=settings.logprob_chunk_size,
        fp32=settings.fp32_lm_head,
        bias=bias,
        impl=settings.logprob_impl,
        grad_filter=settings.logprob_grad_filter,
        check_targets=check_targets,
    )
    return lp.new_zeros(mb.loss_mask.numel()).index_put((mb.positions.loss,), lp).view(mb.loss_mask.shape)


def _micro_batch_loss(
    model: torch.nn.Module,
    mb: MicroBatch,
    *,
    num_sequences: int,
    num_tokens: int,
    settings: LossSettings,
    replay_stats: ReplayStats | None = None,
    on_host: bool = False,
) -> tuple[torch.Tensor, dict[str, float] | dict[str, torch.Tensor]]:
    """The micro-batch's loss and metrics. ``on_host``: the caller checked the token ids and found the loss
    positions on the host, and takes the metrics as device tensors (nothing here waits for the device)."""
    logp = sequence_logprobs(model, mb, settings=settings, replay_stats=replay_stats, check_targets=not on_host)
    return policy_loss(
        logp,
        mb.behaviour_logp,
        mb.advantages,
        mb.loss_mask,
        delta=settings.delta,
        tis_cap=settings.tis_cap,
        mode=settings.aggregation,
        max_len=settings.max_len,
        num_sequences=num_sequences,
        num_tokens=num_tokens,
        sync_metrics=not on_host,
    )


def check_token_ids(samples: Sequence[TrainSample], vocab_size: int) -> None:
    """Every prompt and completion id in [0, vocab_size), checked on the host; the error names the sample."""
    for i, s in enumerate(samples):
        ids = [*s.prompt_ids, *s.token_ids]
        if ids and not 0 <= min(ids) <= max(ids) < vocab_size:
            raise ValueError(f"sample {i} of the step has token ids in [{min(ids)}, {max(ids)}], outside the "
                             f"model's vocabulary [0, {vocab_size})")


def _read_from_device(
    losses: list[torch.Tensor], norm: torch.Tensor | None, stats: list[dict[str, torch.Tensor]], device: torch.device
) -> tuple[float, float, dict[str, float]]:
    """The step's loss (sum over micro-batches), gradient norm (0 without gradients) and loss metrics (each
    micro-batch's weighted by its loss tokens, ``loss/num_tokens``; none without loss tokens), read from the
    device in one transfer."""
    names = list(stats[0]) if stats else []
    zero = torch.zeros(1, device=device)
    parts = [torch.stack(losses).float().sum().reshape(1) if losses else zero,
             norm.detach().float().reshape(1) if norm is not None else zero]
    if stats:
        table = torch.stack([torch.stack([m[k] for k in names]) for m in stats]).float()
        weight = table[:, names.index("loss/num_tokens")]
        parts += [(table * weight[:, None]).sum(0), weight.sum().reshape(1)]
    else:
        parts.append(zero)
    total_loss, grad_norm, *sums, weight_sum = torch.cat(parts).tolist()  # the one read
    metrics = {k: v / weight_sum for k, v in zip(names, sums, strict=True)} if weight_sum > 0 else {}
    return total_loss, grad_norm, metrics


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    samples: Sequence[TrainSample],
    *,
    settings: LossSettings,
    pad_id: int,
) -> StepResult:
    """Accumulate the loss of ``samples`` over micro-batches and take one optimizer step (or skip it).

    The host reads from the device once, after the last backward: the loss, the gradient norm and the
    metrics together (then it decides between stepping and skipping). Token ids, routes, loss positions and
    the step's counts are checked and found on the host before the micro-batches move, so the host queues
    every micro-batch's forward and backward without waiting for the device in between."""
    device = next(model.parameters()).device
    check_token_ids(samples, base_and_head(model)[1].shape[0])
    routes = [s.routed_experts for s in samples]
    if settings.router_replay and any(r is not None for r in routes):  # a dense model's samples carry none
        check_routes(model, routes)
    micro = plan_micro_batches(
        model, samples, packing=settings.packing, micro_batch_size=settings.micro_batch_size,
        micro_batch_tokens=settings.micro_batch_tokens, pad_id=pad_id,
    )
    layout = {"train/padding_frac": padding_fraction(micro)}
    if any(mb.packed is not None for mb in micro):  # what the right-padded layout would have wasted
        layout["train/padding_frac_unpacked"] = padded_fraction(samples, settings.micro_batch_size)
    # Global denominators of the whole step, shared by every micro-batch (micro-batch invariance).
    num_sequences = count_nonempty(samples)
    num_tokens = sum(int(mb.loss_mask.sum()) for mb in micro)
    micro = [with_positions(mb).to(device, non_blocking=True) for mb in micro]
    model.train()
    optimizer.zero_grad(set_to_none=True)
    losses, stats = [], []
    replay = ReplayStats()
    for mb in micro:
        loss, m = _micro_batch_loss(
            model, mb, num_sequences=num_sequences, num_tokens=num_tokens, settings=settings, replay_stats=replay,
            on_host=True,
        )
        loss.backward()
        losses.append(loss.detach())
        stats.append(m)
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, settings.grad_clip) if params else None
    total_loss, grad_norm, metrics = _read_from_device(losses, norm, stats, device)
    if not math.isfinite(total_loss):
        optimizer.zero_grad(set_to_none=True)
        return StepResult({"train/nonfinite": 1.0}, skipped=True, reason=f"non-finite loss {total_loss}")
    if not math.isfinite(grad_norm):
        optimizer.zero_grad(set_to_none=True)
        return StepResult({"train/nonfinite": 1.0}, skipped=True, reason=f"non-finite gradient norm {grad_norm}")
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if settings.router_replay:
        metrics.update(replay.metrics())
    metrics.update(
        {
            "train/loss": total_loss,
            "train/grad_norm": grad_norm,
            "train/num_sequences": float(num_sequences),
            "train/num_tokens": float(num_tokens),
            "train/nonfinite": 0.0,
            **layout,
        }
    )
    return StepResult(metrics, skipped=False)
