"""Stochastic rounding float32 -> bfloat16 (``zaya_rl.weights.rounding``) and its use by the trainer's
weight publication. Expected values are computed by hand from the bfloat16 grid: in [1, 2) its spacing is
2^-7, so x = 1 + 3·2^-10 lies 3/8 of the way from 1 to 1 + 2^-7 and must round up with probability 3/8."""

from __future__ import annotations

import math

import pytest
import torch

from zaya_rl.weights.rounding import rollout_cast, stochastic_round_to_bfloat16

N = 200_000
#: 4.5 standard deviations of a binomial frequency at p = 1/2 over N draws: a correct rounding fails < 1e-5.
FREQ_TOL = 4.5 * math.sqrt(0.25 / N)


def _up_frequency(x: float, lower: float, upper: float, seed: int = 0) -> float:
    g = torch.Generator().manual_seed(seed)
    out = stochastic_round_to_bfloat16(torch.full((N,), x, dtype=torch.float32), g).float()
    assert set(out.unique().tolist()) <= {lower, upper}
    return (out == upper).float().mean().item()


@pytest.mark.parametrize(("x", "lower", "upper", "p_up"), [
    (1 + 3 * 2**-10, 1.0, 1 + 2**-7, 3 / 8),
    (-(1 + 3 * 2**-10), -1.0, -(1 + 2**-7), 3 / 8),             # sign-magnitude: "up" is away from zero
    (2 - 2**-10, 2 - 2**-7, 2.0, 7 / 8),                         # the carry crosses into the next binade
    (0.03 + 2**-16, 0.0299072265625, 0.030029296875, None),      # p from the grid: (x - lower) / 2^-13
])
def test_rounds_up_with_the_probability_of_its_position_between_grid_points(x, lower, upper, p_up):
    x32 = torch.tensor(x, dtype=torch.float32).item()  # the float32 value actually rounded
    if p_up is None:
        p_up = (x32 - lower) / (upper - lower)
    assert _up_frequency(x32, lower, upper) == pytest.approx(p_up, abs=FREQ_TOL)


def test_values_on_the_grid_and_non_finite_values_are_kept():
    on_grid = torch.randn(10_000).to(torch.bfloat16).float()
    special = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), float("nan"), 3.3895313892515355e38])
    g = torch.Generator().manual_seed(0)
    assert torch.equal(stochastic_round_to_bfloat16(on_grid, g).float(), on_grid)
    out = stochastic_round_to_bfloat16(special, g).float()
    assert out[:4].tolist() == [0.0, -0.0, float("inf"), float("-inf")] and math.copysign(1, out[1]) < 0
    assert math.isnan(out[4]) and math.isfinite(out[5])  # the largest bfloat16 never carries into inf


def test_a_drift_below_half_an_ulp_reaches_the_engine_only_with_stochastic_rounding():
    """The failure it fixes: weights that start on the bfloat16 grid and drift by a quarter ulp."""
    w0 = (torch.rand(N) + 1).to(torch.bfloat16).float()  # in [1, 2): ulp 2^-7
    w = w0 + 0.25 * 2**-7
    nearest = rollout_cast("bfloat16", "nearest", seed=0, version=1)(w).float()
    stochastic = rollout_cast("bfloat16", "stochastic", seed=0, version=1)(w).float()
    assert torch.equal(nearest, w0)  # every step of the trainer is lost
    assert (stochastic - w0).mean().item() == pytest.approx(0.25 * 2**-7, rel=0.02)  # unbiased


def test_rollout_cast_is_reproducible_per_version_and_leaves_other_casts_alone():
    w = torch.randn(1000)
    a = rollout_cast("bfloat16", "stochastic", seed=3, version=7)
    assert torch.equal(a(w), rollout_cast("bfloat16", "stochastic", seed=3, version=7)(w))
    assert not torch.equal(a(w), rollout_cast("bfloat16", "stochastic", seed=3, version=8)(w))
    same = rollout_cast("float32", "stochastic", seed=0, version=0)(w)
    assert same.data_ptr() == w.data_ptr()  # no copy when the dtype already matches
    half = rollout_cast("float16", "stochastic", seed=0, version=0)(w)
    assert torch.equal(half, w.to(torch.float16))  # only float32 -> bfloat16 is rounded stochastically


def test_trainer_publishes_in_the_rollout_dtype_with_stochastic_rounding():
    """``TrainerActor.get_weights`` (the state_dict transport) sends bfloat16 when the vLLM engine runs in
    bfloat16, and a quarter-ulp drift of the float32 master reaches it."""
    from zaya_rl.config import config_from_dict
    from zaya_rl.pipeline.trainer_actor import TrainerActor

    def published(rounding: str) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = config_from_dict({"rollout": {"engine": "vllm", "vllm": {"engine_kwargs": {"dtype": "bfloat16"}}},
                                "weight_sync": {"rounding": rounding}, "algorithm": {"router_replay": False}})
        assert cfg.weight_sync_dtype == "bfloat16"
        trainer = TrainerActor(cfg.model_dump(mode="json"))
        name, p = next((n, p) for n, p in trainer.model.named_parameters() if p.dim() == 2)
        with torch.no_grad():
            p.copy_(p.to(torch.bfloat16).float())  # on the grid, as a bfloat16 checkpoint
            start = p.detach().clone()
            _, e = torch.frexp(p)  # |p| in [2^(e-1), 2^e): its bfloat16 ulp is 2^(e-8)
            p.add_(torch.sign(p) * 0.25 * torch.ldexp(torch.ones_like(p), e - 8))  # a quarter ulp, outwards
        return start, trainer.get_weights(version=1)[name]

    start, sent = published("nearest")
    assert sent.dtype == torch.bfloat16 and torch.equal(sent.float(), start)
    start, sent = published("stochastic")
    moved = (sent.float() != start).float().mean().item()
    assert sent.dtype == torch.bfloat16 and 0.2 < moved < 0.3  # 1/4 of the weights step one ulp
