"""DeepSpeed wrapper: config, our Muon rule behind DeepSpeed's hook, parameter tags, sharding (fast);
and the exact equivalence of ZeRO-2/3 steps with ``MuonAdamW`` (slow: DeepSpeed's first CPU init compiles
its shared-memory comm op for minutes; later runs take ~20 s each).

python -m pytest tests/trainer/test_parallel.py -q            # fast part
python -m pytest tests/trainer/test_parallel.py -q -m slow    # + ZeRO-2/3 on CPU (gloo, 1 rank)
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

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


_SCRIPT = Path(__file__).with_name("ds_equivalence.py")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed not installed")
@pytest.mark.parametrize(("stage", "world"), [(2, 1), (3, 1), (2, 2), (3, 2)])
def test_zero_step_equals_muon_adamw_on_cpu(stage, world):
    # Two ranks sum gradients in another order; AdamW's normalisation magnifies that on rarely-used rows.
    tol = "2e-5" if world == 1 else "1e-4"
    out = subprocess.run([sys.executable, str(_SCRIPT), "--stage", str(stage), "--device", "cpu", "--world",
                          str(world), "--tol", tol], capture_output=True, text=True, timeout=1200)
    line = next(ln for ln in reversed(out.stdout.splitlines()) if ln.startswith("{"))
    res = json.loads(line)
    assert out.returncode == 0, (res, out.stderr[-2000:])
    assert res["max_abs_diff"] <= float(tol) and res["params_moved"] > 1e-4
