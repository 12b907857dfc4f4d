"""Versions, GPUs and /dev/shm of the machine, as JSON into ``$ZAYA_GPU_WORK/res/env.json`` (run_all.sh)."""

import importlib
import json
import os
import shutil
import subprocess
import sys

out = {"python": sys.version.split()[0]}
for m in ("torch", "transformers", "vllm", "ray", "deepspeed", "pydantic"):
    try:
        out[m] = importlib.import_module(m).__version__
    except Exception as e:  # noqa: BLE001 - a missing package is a result here
        out[m] = f"missing ({type(e).__name__})"
import torch  # noqa: E402

out["cuda"] = torch.cuda.is_available()
if out["cuda"]:
    out["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
out["dev_shm_free_gb"] = round(shutil.disk_usage("/dev/shm").free / 1e9, 2) if os.path.isdir("/dev/shm") else None
try:
    out["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.used,memory.total",
                                        "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout
except Exception as e:  # noqa: BLE001
    out["nvidia_smi"] = f"{type(e).__name__}: {e}"
path = os.path.join(os.environ.get("ZAYA_GPU_WORK", "/tmp/zaya_gpu"), "res", "env.json")
with open(path, "w") as f:
    f.write(json.dumps(out, indent=1))
print(out)
