"""GPU-to-GPU bandwidth of the machine: the reference for the NCCL weight transfer (``bench_weights.py --nccl``).

    python benchmarks/gpu/bench_link.py --out /tmp/zaya_gpu/res/link.json        # 2 GPUs, ~20 s
    python benchmarks/gpu/bench_link.py --dry-run --out ...                     # CPU: gloo broadcast only

- ``p2p_copy_gbps``: ``tensor.to("cuda:0")`` of a 512 MiB buffer living on cuda:1 (and the reverse), one
  process; what a copy between the two GPUs achieves (NVLink or PCIe, whichever links them).
- ``nccl_broadcast_gbps``: ``torch.distributed.broadcast`` of 256 MiB (the transfer's bucket size,
  ``weight_sync.bucket_mb``) from rank 1 (cuda:1, the trainer's GPU) to rank 0 (cuda:0), two processes: the
  most NCCL itself delivers to a weight transfer with that bucket.

Each figure is the best of ``--repeats`` timed repetitions after one warm-up, bytes / seconds / 1e9.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

MIB = 2**20


def p2p_copy(nbytes: int, repeats: int) -> dict[str, float]:
    import torch

    out = {}
    for src, dst in ((1, 0), (0, 1)):
        a = torch.empty(nbytes, dtype=torch.uint8, device=f"cuda:{src}")
        b = torch.empty(nbytes, dtype=torch.uint8, device=f"cuda:{dst}")
        best = float("inf")
        for k in range(repeats + 1):
            torch.cuda.synchronize(src)
            torch.cuda.synchronize(dst)
            t = time.perf_counter()
            b.copy_(a)
            torch.cuda.synchronize(src)
            torch.cuda.synchronize(dst)
            if k:
                best = min(best, time.perf_counter() - t)
        out[f"p2p_copy_{src}to{dst}_gbps"] = nbytes / best / 1e9
    out["p2p_access"] = bool(torch.cuda.can_device_access_peer(0, 1))
    out["p2p_copy_gbps"] = out["p2p_copy_1to0_gbps"]
    return out


def _broadcast_rank(rank: int, nbytes: int, repeats: int, port: int, device: str, path: str) -> None:
    import torch
    import torch.distributed as dist

    if device == "cuda":
        torch.cuda.set_device(rank)
    dist.init_process_group("nccl" if device == "cuda" else "gloo", rank=rank, world_size=2,
                            init_method=f"tcp://127.0.0.1:{port}")
    buf = torch.empty(nbytes, dtype=torch.uint8, device=f"cuda:{rank}" if device == "cuda" else "cpu")
    best = float("inf")
    for k in range(repeats + 1):
        dist.barrier()
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        dist.broadcast(buf, src=1)
        if device == "cuda":
            torch.cuda.synchronize()
        dist.barrier()
        if k:
            best = min(best, time.perf_counter() - t)
    if rank == 0:
        Path(path).write_text(json.dumps({"nccl_broadcast_gbps" if device == "cuda" else "gloo_broadcast_gbps":
                                          nbytes / best / 1e9, "broadcast_bytes": nbytes}))
    dist.destroy_process_group()


def broadcast(nbytes: int, repeats: int, device: str) -> dict[str, float]:
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as d:
        path = f"{d}/bcast.json"
        mp.spawn(_broadcast_rank, args=(nbytes, repeats, port, device, path), nprocs=2, join=True)
        return json.loads(Path(path).read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU: a gloo broadcast stands in for NCCL")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out: dict = {}
    try:
        import torch

        if args.dry_run:
            out.update(broadcast(16 * MIB, 2, "cpu"))
        else:
            if torch.cuda.device_count() < 2:
                raise RuntimeError(f"needs 2 GPUs, found {torch.cuda.device_count()}")
            out["gpus"] = [torch.cuda.get_device_name(i) for i in range(2)]
            out.update(p2p_copy(512 * MIB, args.repeats))
            out.update(broadcast(256 * MIB, args.repeats, "cuda"))
        out["ok"] = True
    except Exception as e:  # noqa: BLE001 - the JSON says what failed
        out.update({"ok": False, "error": f"{type(e).__name__}: {e}"})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
    sys.exit(main())
