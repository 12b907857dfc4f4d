"""Rounding of the trainer's float32 weights to the rollout engine's dtype (``weight_sync.rounding``).

Why it matters. RL steps are small next to a bfloat16 ulp: bfloat16 keeps 8 bits of mantissa, so a weight
of 0.03 sits on a grid of spacing 2^-13 ≈ 1.2e-4, while an optimizer step at lr 3e-5 moves it by ~1e-5 or less.
A model imported from a bfloat16 checkpoint starts *on* that grid, so round-to-nearest sends the engine
the starting weights until a weight has drifted half a grid step: the rollout policy lags the trainer's by
much more than ``max_lag``. Measured with SmolLM2-135M-Instruct after 19 RL steps on CPU (float32 end to
end, held-out accuracy 0.258 → 0.422 on 128 problems): cast back to bfloat16 by round-to-nearest, 97.2% of
the weights equal the starting ones and the same evaluation gives 0.320 (62% of the gain gone); cast by
stochastic rounding, 0.445 and 0.422 with two draws of its random bits (``benchmarks/results/bf16_rounding_cpu.md``).

Stochastic rounding (Gupta et al., 2015, "Deep Learning with Limited Numerical Precision", ICML, §3;
Connolly, Higham and Mary, 2021, "Stochastic rounding and its probabilistic backward error analysis", SIAM
J. Sci. Comput.) rounds ``x`` up with probability equal to its distance from the lower grid point over the
grid step, so ``E[SR(x)] = x``: the engine's weights are unbiased around the trainer's, and the trainer's
DPPO trust region sees the (larger, zero-mean) rounding noise as ordinary train/inference mismatch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

Rounding = Literal["stochastic", "nearest"]

#: The low 16 bits of a float32 are what bfloat16 drops (same sign and exponent bits, 7 of 23 mantissa bits).
_DROPPED = 16


def stochastic_round_to_bfloat16(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """``x`` (float32) rounded to bfloat16 stochastically: up (away from zero) with probability
    ``low16 / 2^16``, where ``low16`` are the 16 mantissa bits bfloat16 drops; exact for values already on
    the bfloat16 grid. Adding a uniform integer in ``[0, 2^16)`` to the bit pattern, then clearing the low
    16 bits, does exactly that for either sign (IEEE-754 is sign-magnitude) and carries into the exponent
    at a binade's end. Non-finite values are rounded to nearest (no carry into a NaN payload or past inf).
    """
    if x.dtype != torch.float32:
        raise TypeError(f"stochastic rounding to bfloat16 takes float32, got {x.dtype}")
    bits = x.contiguous().view(torch.int32)
    noise = torch.randint(0, 1 << _DROPPED, bits.shape, dtype=torch.int32, device=x.device, generator=generator)
    rounded = ((bits + noise) & -(1 << _DROPPED)).view(torch.float32)  # -(1 << 16): ones above bit 16
    out = torch.where(torch.isfinite(x) & torch.isfinite(rounded), rounded, x)
    return out.to(torch.bfloat16)


def rollout_cast(dtype: str, rounding: Rounding, seed: int, version: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The cast of policy ``version``'s tensors to ``dtype`` (a torch dtype name): ``t -> t'`` detached, no
    copy when ``t`` already has it. Stochastic rounding applies float32 -> bfloat16; any other cast rounds to
    nearest. Its random bits come from ``(seed, version)`` and each tensor's position in the call order, so
    a run's updates are reproducible."""
    target = getattr(torch, dtype)
    generators: dict[torch.device, torch.Generator] = {}

    def cast(t: torch.Tensor) -> torch.Tensor:
        t = t.detach()
        if t.dtype == target:
            return t
        if rounding == "stochastic" and t.dtype == torch.float32 and target == torch.bfloat16:
            g = generators.get(t.device)
            if g is None:
                g = generators[t.device] = torch.Generator(device=t.device).manual_seed(seed * 1_000_003 + version)
            return stochastic_round_to_bfloat16(t, g)
        return t.to(target)

    return cast
