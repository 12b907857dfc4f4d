"""Sample GPU utilisation while a step runs, and who uses each GPU (rollout worker or trainer).

    python benchmarks/gpu/gpu_sampler.py OUT.jsonl [--period 0.5]      # until killed (run_x2.sh: around e2e)
    python benchmarks/gpu/gpu_sampler.py --summarize OUT.jsonl         # -> JSON: mean/p50 utilisation per role

Every ``--period`` s one ``nvidia-smi --query-gpu`` line per GPU (``utilization.gpu`` is the fraction of the
sample window in which a kernel ran: NVML's definition), every 10th sample also ``--query-compute-apps``
with each process's command line, whose Ray process title (``ray::TrainerActor...``,
``ray::RolloutWorker...``, vLLM's ``VLLM::EngineCore``) names its role. Without nvidia-smi (CPU rehearsal)
it writes one ``{"error": ...}`` line and exits 0.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROLES = (("TrainerActor", "trainer"), ("RolloutWorker", "rollout"), ("EngineCore", "rollout"))


def _smi(*query: str) -> list[list[str]]:
    out = subprocess.run(["nvidia-smi", *query, "--format=csv,noheader,nounits"], capture_output=True, text=True,
                         timeout=10).stdout
    return [[c.strip() for c in line.split(",")] for line in out.splitlines() if line.strip()]


def _role(pid: str) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"
    return next((role for key, role in ROLES if key in cmd), cmd[:60])


def sample(path: Path, period: float) -> None:
    with path.open("a") as f:
        if shutil.which("nvidia-smi") is None:
            f.write(json.dumps({"error": "nvidia-smi not found"}) + "\n")
            return
        uuid_index = {u: int(i) for i, u in _smi("--query-gpu=index,uuid")}
        k = 0
        while True:
            t = time.time()
            rec = {"t": t, "util": {int(i): float(u) for i, u, *_ in _smi("--query-gpu=index,utilization.gpu,memory.used")}}
            if k % 10 == 0:
                rec["apps"] = [{"gpu": uuid_index.get(u, u), "pid": p, "mem_mib": float(m), "role": _role(p)}
                               for u, p, m in _smi("--query-compute-apps=gpu_uuid,pid,used_memory")]
            f.write(json.dumps(rec) + "\n")
            f.flush()
            k += 1
            time.sleep(max(0.0, period - (time.time() - t)))


def summarize(path: Path) -> dict:
    """Mean and median utilisation (%) per GPU over the samples, and the roles seen on each GPU."""
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not recs or "error" in recs[0]:
        return {"error": recs[0]["error"] if recs else "no samples"}
    gpus = sorted({g for r in recs for g in r["util"]})
    roles = {g: sorted({a["role"] for r in recs for a in r.get("apps", []) if str(a["gpu"]) == str(g)}) for g in gpus}
    per = {}
    for g in gpus:
        u = [r["util"][g] for r in recs if g in r["util"]]
        per[str(g)] = {"mean_util_pct": statistics.fmean(u), "p50_util_pct": statistics.median(u), "roles": roles[g]}
    by_role = {}
    for role in ("rollout", "trainer"):
        gs = [g for g in gpus if roles[g] == [role]]
        if gs:
            by_role[role] = {"gpus": gs, "mean_util_pct": statistics.fmean(per[str(g)]["mean_util_pct"] for g in gs)}
    return {"samples": len(recs), "seconds": recs[-1]["t"] - recs[0]["t"], "per_gpu": per, "by_role": by_role}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("path")
    ap.add_argument("--period", type=float, default=0.5)
    ap.add_argument("--summarize", action="store_true")
    args = ap.parse_args()
    path = Path(args.path)
    if args.summarize:
        print(json.dumps(summarize(path)))
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        sample(path, args.period)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
