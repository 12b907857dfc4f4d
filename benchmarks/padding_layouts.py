"""Padding fraction and estimated compute of the right-padded and the packed micro-batch layouts for two synthetic
RL length distributions (no model is run; ``trainer/packing.py``'s planner and cost model are).

- ``long``: 256 rollouts, prompts log-normal around 200 tokens, completions log-normal around 900 with a heavy
  tail cut at a 4,096-token budget; ZAYA1-8B's attention weight α (``packing.attention_weight`` of the full-size
  config) and its 2 separator slots.
- ``short``: 256 rollouts, prompts around 150, completions around 60 (cut at 512); SmolLM2-135M's α, no
  separators.

For each ``micro_batch_size``: the padded layout's padding fraction and micro-batch count, the cheapest packed
layout's (``choose_capacity`` without the padded option), its estimated compute relative to padded
(``layout_cost``), and what ``trainer.packing: auto`` would train.

    python benchmarks/padding_layouts.py            # < 10 s on a CPU
"""

from __future__ import annotations

import numpy as np

from zaya_rl.trainer.batch import TrainSample, make_micro_batches
from zaya_rl.trainer.packing import choose_capacity, layout_cost, make_packed_micro_batches, padding_fraction

#: ``packing.attention_weight`` of the full-size configs (printed by building them on the meta device).
ALPHA = {"ZAYA1-8B": 1.0870e-4, "SmolLM2-135M": 3.2541e-4}


def _samples(rng: np.random.Generator, n: int, prompt: float, gen: float, sigma: float, cap: int) -> list[TrainSample]:
    p = np.clip(rng.lognormal(np.log(prompt), 0.6, n), 20, 1500).astype(int)
    g = np.clip(rng.lognormal(np.log(gen), sigma, n), 1, cap).astype(int)
    return [TrainSample([1] * a, [2] * b, [0.0] * b, 0.0) for a, b in zip(p, g, strict=True)]


def report(samples: list[TrainSample], mbs: int, alpha: float, separators: int) -> None:
    lengths = [len(s.prompt_ids) + len(s.token_ids) - 1 for s in samples]
    kw = {"micro_batch_size": mbs, "budget": mbs * max(lengths), "separators": separators, "attention_weight": alpha}
    auto = choose_capacity(lengths, allow_padded=True, **kw)
    capacity = choose_capacity(lengths, allow_padded=False, **kw)
    padded = make_micro_batches(samples, mbs, 0)
    packed = make_packed_micro_batches(samples, token_budget=kw["budget"], micro_batch_size=mbs,
                                       separators=separators, pad_id=0, capacity=capacity)

    def cost(micro):
        return layout_cost([tuple((m.packed.input_ids if m.packed is not None else m.input_ids).shape) for m in micro],
                           alpha)

    print(f"  micro_batch_size {mbs:>2}: padded {padding_fraction(padded):.3f} in {len(padded)} micro-batches | "
          f"packed (rows of {capacity}) {padding_fraction(packed):.3f} in {len(packed)}, compute "
          f"{cost(packed) / cost(padded):.3f}x | auto trains {'padded' if auto is None else 'packed'}")


def main() -> None:
    rng = np.random.default_rng(0)
    long = _samples(rng, 256, 200, 900, 0.9, 4096)
    short = _samples(np.random.default_rng(1), 256, 150, 60, 1.0, 512)
    for name, samples, model, separators, sizes in (("long", long, "ZAYA1-8B", 2, (2, 8)),
                                                    ("short", short, "SmolLM2-135M", 0, (8, 32))):
        lengths = [len(s.prompt_ids) + len(s.token_ids) - 1 for s in samples]
        print(f"{name}: {len(samples)} rollouts, median {int(np.median(lengths))} tokens, max {max(lengths)}; "
              f"alpha of {model}")
        for mbs in sizes:
            report(samples, mbs, ALPHA[model], separators)


if __name__ == "__main__":
    main()
