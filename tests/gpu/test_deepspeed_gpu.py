"""The production trainer path (configs/zaya1/_base.yaml scaled down: tiny ZAYA, router replay, Muon/AdamW,
DeepSpeed ZeRO, NCCL) on GPUs against the plain torch step: ``tests/trainer/ds_equivalence.py``.

python -m pytest tests/gpu/test_deepspeed_gpu.py -q      # 1 GPU: 3 cases (~25 s each); 2 GPUs: 3 more

Tolerances (``ds_equivalence.TOLERANCES``, reasons there): bf16 against the ``bf16_master`` reference (bf16
model, fp32 master weights, no DeepSpeed) loss 1e-3 of its scale and update 10% relative, against the float32
step loss 1e-2 and update 10% (bf16's unit roundoff 2^-9 through forward, backward and Newton–Schulz;
measured on CPU ~3-4%); float32 (Newton–Schulz in float32 too): loss 1e-5, update 1e-3, 2e-5 absolute.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed not installed")

CASES = {
    "zero3-bf16": ("--dtype", "bfloat16"),           # the production path
    "zero3-fp32": ("--dtype", "float32"),            # the same, exact
    "zero2-bf16": ("--dtype", "bfloat16", "--stage", "2"),
}


@pytest.mark.parametrize("world", [1, 2])
@pytest.mark.parametrize("case", list(CASES))
def test_zero_steps_equal_torch_steps_on_gpu(case, world):
    import torch

    from tests.trainer.ds_equivalence import run_check

    if torch.cuda.device_count() < world:
        pytest.skip(f"needs {world} GPUs")
    res = run_check("--device", "cuda", "--world", str(world), *CASES[case], timeout=240)
    print(json.dumps(res))
    assert res["ok"], res["failures"]
