"""Disjoint training and held-out problems for procedural tasks with small problem spaces.

Held-out evaluation seeds (``environments.sampler.EVAL_SEED_BASE + j``) never equal a training seed, but a
small space regenerates the same problem from different seeds: one-digit ``rg/basic_arithmetic`` has about
two thousand distinct prompts, so a run that trains on a few hundred of them has seen a good part of any
evaluation set (measured for the SmolLM2 tasks: benchmarks/results/real_model_cpu.md). With ``holdout = f``
an environment reserves the fraction f of its problem space, chosen by a stable hash of the prompt text,
for evaluation: a training seed redraws (with derived seeds) until its problem falls outside the reserved
part, an evaluation seed until it falls inside. The two sets are then disjoint by construction, on every
machine (the hash is BLAKE2b, not Python's salted ``hash``), and generation stays a pure function of the
seed. Cost: about 1/f draws per evaluation problem and 1/(1-f) per training problem.

Used by ``environments.adapters.reasoning_gym`` and ``environments.builtin.math`` (their ``holdout``
argument). Test: ``python -m pytest tests/environments/test_holdout.py -q``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable

from environments.base import Problem
from environments.sampler import EVAL_SEED_BASE

#: Derived seeds k = 1, 2, ... of a redraw: seed + k·stride mod 2^31 (+ EVAL_SEED_BASE for held-out seeds),
#: so a training seed stays a training seed and an evaluation seed an evaluation seed.
_STRIDE = 0x9E3779B1
#: Redraws before giving up; with f = 0.1 the chance that 400 draws all miss is 0.9^400 ≈ 5e-19.
MAX_REDRAWS = 400


def is_held_out(prompt: str, fraction: float) -> bool:
    """Whether ``prompt`` lies in the reserved fraction of the problem space (stable across machines)."""
    digest = hashlib.blake2b(prompt.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") < fraction * 2**64


def check_fraction(name: str, fraction: float) -> float:
    """``fraction`` as a float in [0, 1), or a ValueError naming the environment."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"{name}: holdout must be in [0, 1), got {fraction!r}")
    return float(fraction)


def generate_on_side(make: Callable[[int], Problem], seed: int, fraction: float) -> Problem:
    """``make(seed)``, redrawn until the problem is on the seed's side of the split (module docstring).

    The returned problem keeps the requested ``seed`` (the draw that produced it is a function of it); its
    metadata records the redraw count as ``holdout_redraws``.
    """
    if fraction <= 0.0:
        return make(seed)
    held_out = seed >= EVAL_SEED_BASE
    base = seed - EVAL_SEED_BASE if held_out else seed
    for k in range(MAX_REDRAWS):
        draw = (base + k * _STRIDE) % EVAL_SEED_BASE + (EVAL_SEED_BASE if held_out else 0)
        problem = make(draw)
        if is_held_out(problem.prompt_text, fraction) == held_out:
            return dataclasses.replace(problem, seed=seed, metadata={**problem.metadata, "holdout_redraws": k})
    side = "held-out" if held_out else "training"
    raise RuntimeError(f"{problem.env}: no {side} problem in {MAX_REDRAWS} draws from seed {seed} "
                       f"(holdout={fraction}); the problem space may be too small for this fraction")
