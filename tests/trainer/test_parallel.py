"""DeepSpeed wrapper: config, our Muon rule behind DeepSpeed's hook, parameter tags, sharding; and the
production path under ZeRO against the plain torch step (``ds_equivalence.py``, in a subprocess: one ZeRO-3
rank by default, ~18 s of CPU; ZeRO-2, two ranks, Qwen3-MoE and bf16 are ``slow``). Needs deepspeed (dev extra).

python -m pytest tests/trainer/test_parallel.py -q            # fast part + ZeRO-3 on one gloo rank
python -m pytest tests/trainer/test_parallel.py -q -m slow    # + ZeRO-2/3 on two ranks, Qwen3-MoE, bf16
"""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from zaya_rl.config import config_from_dict
from zaya_rl.optim.muon import MUON_DEFAULTS, Muon
from zaya_rl.trainer.batch import TrainSample
from zaya_rl.trainer.parallel import MuonSpec, deepspeed_config, tag_parameters, zaya_muon_update
from zaya_rl.trainer.parallel_step import global_counts, shard_samples


def _cfg(**trainer):
    return config_from_dict({"trainer": {"backend": "deepspeed", "num_gpus": 1, **trainer},
                             "optim": {"lr": 0.01, "grad_clip": 0.5}})


def test_deepspeed_config_muon_and_adamw():
    cfg = _cfg(zero_stage=3)
    ds = deepspeed_config(cfg.optim, cfg.trainer, "bfloat16")
    assert ds["optimizer"]["type"] == "Muon" and ds["optimizer"]["params"]["momentum"] == 0.0
    assert ds["optimizer"]["params"]["torch_adam"] and ds["zero_optimization"] == {"stage": 3, "reduce_scatter": False}
    assert ds["gradient_clipping"] == 0.0 and ds["bf16"] == {"enabled": True, "check_grad_overflow": True}
    assert ds["managed_gradient_accumulation"] is False
    no_muon = config_from_dict({"optim": {"muon": False, "grad_clip": 0.5}})
    ds2 = deepspeed_config(no_muon.optim, _cfg(zero_stage=2).trainer, "float32")
    assert ds2["optimizer"]["type"] == "AdamW" and ds2["gradient_clipping"] == 0.5
    assert ds2["zero_optimization"] == {"stage": 2} and not ds2["bf16"]["enabled"]


def test_hook_applies_our_muon_rule_per_expert_and_half():
    """update(grad) == (W_before - W_after) / lr of zaya_rl.optim.Muon with lr=1, wd=0."""
    g = torch.Generator().manual_seed(0)
    w = torch.nn.Parameter(torch.randn(3, 8, 5, generator=g))
    grad = torch.randn(3, 8, 5, generator=g)
    group = {**MUON_DEFAULTS, "split_halves": True, "ns_dtype": "float64"}
    spec = MuonSpec(tuple(w.shape), group)
    before = w.detach().clone()
    w.grad = grad.clone()
    Muon([w], lr=1.0, weight_decay=0.0, split_halves=True, ns_dtype="float64").step()
    expected = before - w.detach()
    got = zaya_muon_update(grad.clone(), torch.zeros(1), 0.0, num_heads=spec)
    assert torch.allclose(got, expected, atol=1e-6)
    flat = zaya_muon_update(grad.reshape(-1).clone(), None, is_expert_group=spec)  # ZeRO-3 hands flat views
    assert torch.allclose(flat.reshape(3, 8, 5), expected, atol=1e-6)
    bad = grad.clone()
    bad[0, 0, 0] = float("nan")
    assert torch.isnan(zaya_muon_update(bad, None, num_heads=spec)).any()  # left for the overflow check


def test_tags_follow_our_partition_not_ndim():
    from zaya_rl.models.policy import build_preset
    from zaya_rl.optim.partition import partition_parameters

    model, _ = build_preset("tiny-zaya")
    groups = partition_parameters(model)
    tag_parameters(groups, dict(MUON_DEFAULTS))
    by_name = dict(model.named_parameters())
    conv = next(n for n, p in by_name.items() if p.ndim == 3 and "experts" not in n)
    assert by_name[conv].use_muon is False and by_name[conv].muon_num_heads is None  # 3-D but AdamW
    gate_up = next(n for n in by_name if n.endswith("experts.gate_up_proj"))
    spec = by_name[gate_up].muon_num_heads
    assert by_name[gate_up].use_muon and spec.group["split_halves"] and spec.shape == tuple(by_name[gate_up].shape)
    assert by_name[gate_up].is_expert_group is spec
    embed = model.get_input_embeddings().weight
    assert embed.use_muon is False


def _s(n_tokens: int, prompt: int = 2) -> TrainSample:
    return TrainSample([1] * prompt, [5] * n_tokens, [-0.5] * n_tokens, 1.0)


def test_shards_balance_and_global_counts():
    samples = [_s(n) for n in (9, 1, 7, 3, 5, 0)]
    shards = shard_samples(samples, 2)
    assert [[len(s.token_ids) for s in sh] for sh in shards] == [[9, 5, 1], [7, 3, 0]]  # longest first, alternating
    assert global_counts(samples, micro_batch_size=2, world_size=2) == {
        "num_sequences": 5, "num_tokens": 25, "num_micro": 2}
    with pytest.raises(ValueError, match="world_size"):
        shard_samples(samples, 0)


needs_deepspeed = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed not installed")


def _check(*args: str) -> dict:
    """``ds_equivalence.py`` (tolerances and their reasons: its ``TOLERANCES``), asserted to pass."""
    from tests.trainer.ds_equivalence import run_check

    res = run_check("--device", "cpu", *args, timeout=900)
    print(json.dumps(res))
    assert res["ok"], res["failures"]
    return res


@needs_deepspeed
def test_production_zero3_step_equals_torch_step_on_cpu():
    """configs/zaya1/_base.yaml scaled down (tiny ZAYA, router replay, Muon/AdamW, ZeRO-3) on one gloo rank in
    float32: DeepSpeed's two steps equal ``train_step`` + ``MuonAdamW``'s to float32 rounding (loss 1e-5 of its
    scale, update 1e-3 relative, 2e-5 absolute; measured ~1e-8, ~1e-5, ~2e-7). ~18 s of CPU time (one thread).
    """
    res = _check()
    assert res["router_replay"] and res["fp32_lm_head"] and res["stage"] == 3
    assert res["replay_effect"]["update_rel"] > 0.1  # the batch's routes matter, so replay was exercised


@pytest.mark.slow  # each runs ~35-130 s on 2 CPU cores (two ranks: two processes on two cores)
@needs_deepspeed
@pytest.mark.parametrize("args", [
    ("--world", "2"),                                # ZeRO-3, 2 ranks: shards + global denominators
    ("--stage", "2"),
    ("--stage", "2", "--world", "2"),
    ("--preset", "tiny-qwen3moe", "--set", "optim.weight_decay=0.1"),  # top-2 replay, untied head, decay
    ("--dtype", "bfloat16", "--set", "optim.ns_dtype=bfloat16"),  # the GPU check's arithmetic, on CPU
], ids=["zero3-2ranks", "zero2", "zero2-2ranks", "qwen3moe", "bf16"])
def test_zero_steps_equal_torch_steps_on_cpu(args):
    _check(*args)


@pytest.mark.slow  # ~55 s on 2 loaded CPU cores
@needs_deepspeed
def test_zero3_with_lm_head_bias_and_every_parameter_partitioned():
    """ZAYA's ``lm_head_bias`` (read outside ``lm_head.forward``, like the head's weight) under ZeRO-3 with no
    parameter kept whole (the tiny model's would fall under DeepSpeed's persistence threshold)."""
    res = _check("--lm-head-bias", "--persistence-threshold", "0")
    assert res["lm_head_bias"] and res["unpartitioned"] == 0 and res["stage"] == 3
