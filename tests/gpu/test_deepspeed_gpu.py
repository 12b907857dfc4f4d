"""DeepSpeed ZeRO-2/3 with our Muon hook on one GPU (NCCL): same steps as ``MuonAdamW`` (float32).

python -m pytest tests/gpu/test_deepspeed_gpu.py -q
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "trainer" / "ds_equivalence.py"

pytestmark = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed not installed")


@pytest.mark.parametrize("world", [1, 2])
@pytest.mark.parametrize("stage", [2, 3])
def test_zero_step_equals_muon_adamw_on_gpu(stage, world):
    import torch

    if torch.cuda.device_count() < world:
        pytest.skip(f"needs {world} GPUs")
    # GPU matmuls (TF32 off by default for fp32 in torch) differ from the reference only by reduction order.
    out = subprocess.run([sys.executable, str(SCRIPT), "--stage", str(stage), "--device", "cuda", "--tol", "1e-4",
                          "--world", str(world)], capture_output=True, text=True, timeout=300)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    assert lines, out.stderr[-3000:]
    res = json.loads(lines[-1])
    print(res)
    assert out.returncode == 0, (res, out.stderr[-2000:])
