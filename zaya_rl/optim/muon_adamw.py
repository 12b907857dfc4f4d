"""One optimizer for the whole model: momentum-free Muon groups and AdamW groups.

Each param group names its update rule in ``group["algorithm"]`` (``"muon"`` or ``"adamw"``); ``step``
dispatches through ``GROUP_STEPS``. Being a single ``torch.optim.Optimizer`` keeps LR schedulers,
``state_dict``/``load_state_dict`` and checkpointing ordinary: the state holds AdamW moments only, Muon
parameters have no entry. The AdamW half is ``torch.optim.adamw.adamw`` (torch's functional AdamW, foreach
where available), so it matches ``torch.optim.AdamW`` step for step.

Test: ``python -m pytest tests/optim/test_muon_adamw.py -q``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim.adamw import adamw

from zaya_rl.optim.muon import MUON_DEFAULTS, check_muon_group, muon_group_step

#: Defaults of an AdamW group (``betas``/``eps`` are AdamW's; Muon's NS floor is ``ns_eps``).
ADAMW_DEFAULTS: dict[str, Any] = {"betas": (0.9, 0.95), "eps": 1e-8}


def _scalar_dtype() -> torch.dtype:
    """dtype of AdamW's step counter, as torch.optim.AdamW chooses it."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


@torch.no_grad()
def adamw_group_step(optimizer: torch.optim.Optimizer, group: dict[str, Any]) -> None:
    """One AdamW step of ``group`` with moments kept in ``optimizer.state`` (created on first use)."""
    params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
    for p in group["params"]:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            raise RuntimeError("AdamW does not support sparse gradients")
        state = optimizer.state[p]
        if not state:
            state["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        params.append(p)
        grads.append(p.grad)
        exp_avgs.append(state["exp_avg"])
        exp_avg_sqs.append(state["exp_avg_sq"])
        steps.append(state["step"])
    if not params:
        return
    beta1, beta2 = group["betas"]
    adamw(
        params, grads, exp_avgs, exp_avg_sqs, [], steps,
        has_complex=any(torch.is_complex(p) for p in params),
        amsgrad=False, beta1=beta1, beta2=beta2, lr=group["lr"], weight_decay=group["weight_decay"],
        eps=group["eps"], maximize=False,
    )  # fmt: skip


def _muon_step(optimizer: torch.optim.Optimizer, group: dict[str, Any]) -> None:
    muon_group_step(group)


def _check_adamw_group(group: dict[str, Any]) -> None:
    if group["lr"] < 0 or group["weight_decay"] < 0 or group["eps"] <= 0:
        raise ValueError(
            f"AdamW needs lr >= 0, weight_decay >= 0, eps > 0; got {group['lr']}, {group['weight_decay']}, {group['eps']}"
        )


#: Update rule of a group by ``group["algorithm"]``: (step function, validator).
GROUP_STEPS: dict[
    str, tuple[Callable[[torch.optim.Optimizer, dict[str, Any]], None], Callable[[dict[str, Any]], None]]
] = {
    "muon": (_muon_step, check_muon_group),
    "adamw": (adamw_group_step, _check_adamw_group),
}


class MuonAdamW(torch.optim.Optimizer):
    """Muon (momentum-free, stateless) and AdamW param groups in one optimizer.

    Args:
        param_groups: dicts with ``params`` and ``algorithm`` (``"muon"``/``"adamw"``), plus any per-group
            override of the defaults (``split_halves``, ``weight_decay``, ...). Extra keys such as ``name``
            are kept (handy in logs).
        lr: γ for both rules (Muon's is rescaled by ``adjust_lr_fn`` per matrix).
        weight_decay: decoupled weight decay for both rules.
        **defaults: other defaults, from ``MUON_DEFAULTS`` (ns_steps, ns_coefficients, ns_eps,
            adjust_lr_fn, split_halves) and ``ADAMW_DEFAULTS`` (betas, eps).
    """

    def __init__(
        self, param_groups: Iterable[dict[str, Any]], lr: float, weight_decay: float = 0.0, **defaults: Any
    ) -> None:
        unknown = set(defaults) - set(MUON_DEFAULTS) - set(ADAMW_DEFAULTS)
        if unknown:
            raise TypeError(f"MuonAdamW got unknown options {sorted(unknown)}")
        merged = {**MUON_DEFAULTS, **ADAMW_DEFAULTS, **defaults, "lr": lr, "weight_decay": weight_decay}
        super().__init__(list(param_groups), merged)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (also used by the constructor); it must name a known ``algorithm``."""
        algorithm = param_group.get("algorithm")
        if algorithm not in GROUP_STEPS:
            raise ValueError(
                f"param group 'algorithm' must be one of {sorted(GROUP_STEPS)}, got {algorithm!r}"
            )
        super().add_param_group(param_group)
        GROUP_STEPS[algorithm][1](self.param_groups[-1])

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Step every group with its rule; returns the closure's loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            GROUP_STEPS[group["algorithm"]][0](self, group)
        return loss
