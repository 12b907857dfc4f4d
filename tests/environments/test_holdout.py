"""Held-out split by prompt hash (environments/holdout.py) in the reasoning-gym adapter and the math env.

python -m pytest tests/environments/test_holdout.py -q
"""

from __future__ import annotations

import hashlib
import random

import pytest

from environments.holdout import generate_on_side, is_held_out
from environments.registry import get_environment
from environments.sampler import EVAL_SEED_BASE


def test_hash_split_is_stable_and_has_the_requested_size():
    # independent of the implementation's arithmetic: the first 8 digest bytes as a fraction of 2^64
    text = "Calculate 4 / 2."
    u = int(hashlib.blake2b(text.encode(), digest_size=8).hexdigest(), 16) / 2**64
    assert is_held_out(text, u + 1e-9) and not is_held_out(text, max(u - 1e-9, 0.0))
    rng = random.Random(0)
    texts = [f"{rng.random()}" for _ in range(20000)]
    frac = sum(is_held_out(t, 0.25) for t in texts) / len(texts)
    assert abs(frac - 0.25) < 0.015
    assert not any(is_held_out(t, 0.0) for t in texts[:100])


@pytest.mark.parametrize("name, kwargs", [("rg/basic_arithmetic", {}), ("math", {"families": ["arithmetic"]})])
def test_training_and_held_out_problems_are_disjoint(name, kwargs):
    train_seeds = [random.Random(i).randrange(EVAL_SEED_BASE) for i in range(300)]
    eval_seeds = [EVAL_SEED_BASE + j for j in range(120)]

    def prompts(env, seeds):
        return {env.generate(s, 0).prompt_text for s in seeds}

    plain = get_environment(name, **kwargs)
    assert prompts(plain, train_seeds) & prompts(plain, eval_seeds)  # small space: overlap without a split
    split = get_environment(name, holdout=0.3, **kwargs)
    train, held = prompts(split, train_seeds), prompts(split, eval_seeds)
    assert not train & held
    assert all(is_held_out(p, 0.3) for p in held) and not any(is_held_out(p, 0.3) for p in train)
    p = split.generate(EVAL_SEED_BASE + 7, 0)
    assert p.seed == EVAL_SEED_BASE + 7 and p.metadata["holdout_redraws"] >= 0
    assert split.generate(EVAL_SEED_BASE + 7, 0) == p  # still a pure function of the seed
    assert split.verify(p, split.reference_response(p)).accuracy == 1.0


def test_bad_fraction_and_exhausted_redraws_are_named():
    with pytest.raises(ValueError, match="rg/chain_sum: holdout must be in"):
        get_environment("rg/chain_sum", holdout=1.0)
    with pytest.raises(ValueError, match="math: holdout must be in"):
        get_environment("math", holdout=-0.1)
    env = get_environment("math", families=["arithmetic"])
    always_out = "x"
    while is_held_out(always_out, 1e-12):  # a prompt certainly outside a tiny reserved fraction
        always_out += "x"

    def make(seed):
        return env.generate(seed, 0).__class__(env="math", seed=seed, difficulty=0,
                                               messages=[{"role": "user", "content": always_out}])

    with pytest.raises(RuntimeError, match="math: no held-out problem in"):
        generate_on_side(make, EVAL_SEED_BASE, 1e-12)
