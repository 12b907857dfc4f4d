"""Check: DeepSpeed ZeRO (1 rank) with our Muon hook takes the same optimizer steps as ``MuonAdamW``.

Run as a script (it initialises a process group, so tests run it in a subprocess):

    python tests/trainer/ds_equivalence.py --stage 2 --device cpu      # gloo
    python tests/trainer/ds_equivalence.py --stage 3 --device cuda     # nccl
    python tests/trainer/ds_equivalence.py --stage 3 --device cuda --world 2   # 2 GPUs, 2 ranks

Two optimizer steps on the same batch of a tiny Qwen3-MoE (3-D experts, fused gate/up, untied head) in
float32: one through ``trainer.step.train_step`` + ``MuonAdamW`` (full batch, on rank 0), one through
``trainer.parallel_step.distributed_train_step`` + DeepSpeed (each rank its shard, global denominators). Gradient clipping is set out of reach
(DeepSpeed does not clip under Muon: ``trainer/parallel.py`` deviation (b)). Prints one JSON line with the
largest parameter difference and exits 1 if it is above the tolerance.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time

import torch


def _samples(n: int, seed: int):
    from zaya_rl.trainer.batch import TrainSample

    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        p, t = 3 + i % 4, 2 + (i * 3) % 7
        out.append(TrainSample(
            prompt_ids=torch.randint(3, 200, (p,), generator=g).tolist(),
            token_ids=torch.randint(3, 200, (t,), generator=g).tolist(),
            logprobs=(-torch.rand(t, generator=g) * 3).tolist(),
            advantage=float(torch.randn(1, generator=g)),
        ))
    return out


def _rank(rank: int, world: int, args: argparse.Namespace, port: int, result: dict) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from zaya_rl.config import config_from_dict
    from zaya_rl.models.policy import build_preset
    from zaya_rl.optim.build import build_optimizer
    from zaya_rl.trainer.parallel import init_distributed, wrap_for_training
    from zaya_rl.trainer.parallel_step import distributed_train_step, global_counts, shard_samples
    from zaya_rl.trainer.step import LossSettings, train_step

    device = f"cuda:{rank}" if args.device == "cuda" else "cpu"
    if args.device == "cuda":
        torch.cuda.set_device(rank)
    cfg = config_from_dict({"optim": {"lr": 3e-3, "weight_decay": 0.1, "ns_dtype": "float32", "grad_clip": 1e9},
                            "trainer": {"backend": "deepspeed", "zero_stage": args.stage, "num_gpus": world,
                                        "micro_batch_size": 3}})
    settings = LossSettings(temperature=0.9, delta=0.1, tis_cap=10.0, aggregation="seq-mean-token-sum-norm",
                            max_len=16, logprob_chunk_size=64, router_replay=False, grad_clip=1e9,
                            micro_batch_size=3)
    ref, tok = build_preset("tiny-qwen3moe", seed=1)
    ref = ref.to(device)
    ds_model = copy.deepcopy(ref)
    opt, _ = build_optimizer(ref, cfg.optim)
    samples = _samples(8, seed=2)
    t0 = time.perf_counter()
    init_distributed(rank, world, "127.0.0.1", port, "nccl" if args.device == "cuda" else "gloo")
    setup = wrap_for_training(ds_model, cfg.optim, cfg.trainer, dtype="float32")
    init_s = time.perf_counter() - t0
    shard = shard_samples(samples, world)[rank]
    for _ in range(2):
        a = train_step(ref, opt, samples, settings=settings, pad_id=tok.pad_token_id)
        b = distributed_train_step(setup, shard, settings=settings, pad_id=tok.pad_token_id,
                                   **global_counts(samples, 3, world))
        assert not a.skipped and not b.skipped, (a.reason, b.reason)
    full = [(n, q.detach().clone()) for n, q in setup.named_weights()]  # every rank iterates (ZeRO-3 gathers)
    if rank != 0:
        return
    diffs = {n: float((p.detach() - q).abs().max()) for (n, p), (_, q) in zip(ref.named_parameters(), full, strict=True)}
    start = build_preset("tiny-qwen3moe", seed=1)[0]
    moved = max(float((p.detach() - q.detach().cpu()).abs().max()) for p, q in zip(start.parameters(), ref.parameters(), strict=True))
    worst = max(diffs, key=diffs.get)
    result.update({"stage": args.stage, "device": args.device, "world": world, "max_abs_diff": diffs[worst],
                   "worst": worst, "params_moved": moved, "deepspeed_init_s": round(init_s, 2),
                   "loss_ref": a.metrics["train/loss"], "loss_ds_rank0": b.metrics["train/loss_rank"]})


def _spawned(rank: int, world: int, args: argparse.Namespace, port: int, path: str) -> None:
    result: dict = {}
    _rank(rank, world, args, port, result)
    if rank == 0:
        with open(path, "w") as f:
            json.dump(result, f)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stage", type=int, default=2, choices=[2, 3])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--world", type=int, default=1)
    ap.add_argument("--tol", type=float, default=2e-5)
    args = ap.parse_args()
    port = 29533 + args.stage
    if args.world == 1:
        out: dict = {}
        _rank(0, 1, args, port, out)
    else:
        import tempfile

        import torch.multiprocessing as mp

        path = tempfile.mktemp(suffix=".json")
        mp.spawn(_spawned, args=(args.world, args, port, path), nprocs=args.world, join=True)
        out = json.loads(open(path).read())
    print(json.dumps(out), flush=True)
    return 0 if out["max_abs_diff"] <= args.tol and out["params_moved"] > 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
