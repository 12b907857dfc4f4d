"""Check: the production trainer under DeepSpeed ZeRO takes the same optimizer steps as the plain torch step.

    python tests/trainer/ds_equivalence.py                                      # ZeRO-3, 1 rank, gloo, fp32
    python tests/trainer/ds_equivalence.py --world 2                            # 2 ranks (2 processes)
    python tests/trainer/ds_equivalence.py --device cuda --dtype bfloat16       # 1 GPU, NCCL, the production dtype
    python tests/trainer/ds_equivalence.py --device cuda --world 2 --stage 2 --preset tiny-qwen3moe
    python tests/trainer/ds_equivalence.py --lm-head-bias --persistence-threshold 0   # biased head, all partitioned

**What runs.** ``configs/zaya1/_base.yaml`` (DeepSpeed ZeRO-3, bf16, fp32 LM head, router replay, Muon +
AdamW, warm-up), validated with the overrides of ``scaled_down`` (tiny model, one node, a learning rate large
enough to see). ``TrainerActor``s are built from it as the pipeline builds them, without Ray: the DeepSpeed
one (``init_parallel`` → ``parallel.wrap_for_training``; one rank steps through ``train_step``, several ranks
each through ``train_shard`` with their shard, as rank 0 fans a step out) and, on rank 0, the references with
``trainer.backend=torch`` (``trainer.step.train_step`` + ``MuonAdamW``):

- ``fp32``: float32, the maths of record;
- ``fp32_replay_off``: the same with ``algorithm.router_replay=false`` (only to show the checks would see
  replay missing);
- ``bf16_master`` (``--dtype bfloat16``): the bf16 model with ``MasterWeights``, textbook mixed precision
  written without DeepSpeed, i.e. DeepSpeed's bf16 arithmetic minus DeepSpeed.

All start from the same weights (rounded to bf16 first with ``--dtype bfloat16``) and take ``--steps`` steps
on one batch whose routes are replayed: random expert choices (ZAYA: skip included) that differ from the
router's own, a fraction ``--unrecorded`` of positions without a route (routed natively), behaviour
log-probs = the reference's own under replay + noise (so DPPO masks a few tokens), mixed-sign advantages and
one empty completion.

``--lm-head-bias``: tiny ZAYA with an output bias (``lm_head_bias``, random, ``tests/trainer/test_lm_head_bias.py``),
saved to a temporary checkpoint that ``model.path`` loads: the bias is read outside ``lm_head.forward``
(``token_logprobs(..., bias)``), as the head's weight is. ``--persistence-threshold N``: DeepSpeed's
``stage3_param_persistence_threshold`` (default 1e5 elements, under which ZeRO-3 keeps a parameter whole on every
rank): the tiny models' parameters are nearly all below it (94 of tiny ZAYA's 97), ZAYA1-8B's matrices far above;
0 partitions every parameter, as production partitions its head.

**Compared** (one JSON line; exit 1 if a check fails; ``TOLERANCES`` per dtype, with the reasons):

- ``vs_<ref>.loss_rel_err``: max over steps of |loss_ds − loss_ref| / loss_scale, where loss_scale =
  (1/B)·Σ_i |A_i|·Σ_t |q_it| / L_max is the loss with every term made positive (the loss itself cancels
  across mixed-sign advantages, so a ratio to it would measure the cancellation).
- ``vs_<ref>.update_rel_err`` (``_muon``, ``_adamw``: per optimizer): ‖W_ds − W_ref‖ / ‖W_ref − W_0‖ after
  the last step, W_ds being DeepSpeed's fp32 master weights (``safe_get_full_fp32_param``; the bf16
  reference's master copy likewise); ``max_abs_diff`` the largest entry and ``worst`` its tensor.
- ``published_vs_master``: what ``TrainerActor.get_weights`` publishes to vLLM (ZeRO-3: gathered) minus the
  master weights cast to ``model.dtype``: exactly 0 (bf16: the engine gets the rounded master).
- ``init_diff``: DeepSpeed's starting master weights minus the references': exactly 0.
- ``nonfinite_step``: one more step whose batch holds a NaN advantage (on one rank's shard) must be skipped
  (DeepSpeed's overflow check, on every rank) and leave the master weights exactly as they were.
- Discrimination, so the checks cannot pass by accident: ``replay_effect.update_rel`` (the update of
  ``fp32_replay_off`` against ``fp32``) must be 3x the loosest update tolerance, and ``params_moved`` > 1e-4.

**bf16 batches** (the defaults of ``--samples``, ``--max-new``, ``--unrecorded`` depend on ``--dtype``):
bf16 runs every position replayed and a larger batch. At initialisation ZAYA's router probabilities are
nearly uniform, so a natively routed token's top-1 is a near-tie that bf16 rounding flips: bf16 and fp32 then
train different experts (measured: expert gradients 50% apart with 15% of positions unrecorded). And Muon
orthogonalises: a gradient of rank r < min(A, B) (few tokens per expert) has rounding noise in its null
space, which Newton–Schulz amplifies ~480x (a = 3.4445, 5 steps) into O(1) update directions; ~1,000 tokens
keep the expert gradients close to full rank.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "configs" / "zaya1" / "_base.yaml"

#: Why these numbers (measured with this file's defaults on 2 CPU cores, gloo, 2026-12-07; bf16 with NS in bf16):
#: float32: the paths run the same ops on the same data and differ only in summation order (DeepSpeed
#: accumulates micro-batch gradients in its flat buffers, two ranks add their shards' gradients, AdamW steps
#: flat partitions): the first loss is equal to ~1e-8 and the update to ~1e-5 relative (float32 rounding,
#: magnified by AdamW's g/sqrt(v) on near-zero gradients and by Newton–Schulz on small singular values).
#: bfloat16: against ``bf16_master`` (same bf16 arithmetic) only the accumulation dtype/order differs:
#: loss ~1e-5, update ~3-4% (Muon's NS amplification above; AdamW part ~0.5%). Against ``fp32`` the
#: forward/backward itself is bf16 (unit roundoff 2^-9): loss ~1e-3, update ~4% (AdamW's first steps are
#: ~sign(g) and flip where g lies within the rounding). Without router replay the update is ~93% off
#: (float32 batch: ~48%).
TOLERANCES: dict[str, dict[str, dict[str, float]]] = {
    "float32": {"fp32": {"loss_rel_err": 1e-5, "update_rel_err": 1e-3, "max_abs_diff": 2e-5}},
    "bfloat16": {"bf16_master": {"loss_rel_err": 1e-3, "update_rel_err": 0.1},
                 "fp32": {"loss_rel_err": 1e-2, "update_rel_err": 0.1}},
}

#: ``--dtype`` -> (samples, longest completion, fraction of positions without a route); module docstring.
BATCH_DEFAULTS = {"float32": (9, 12, 0.15), "bfloat16": (24, 64, 0.0)}


def scaled_down(preset: str, world: int, stage: int, dtype: str, max_new: int, extra: list[str]) -> list[str]:
    """Overrides that turn the production base config into this check's shape (every other key as shipped)."""
    return [
        f"model.preset={preset}",            # the production model is model.path=<ZAYA1-8B checkpoint>
        f"model.dtype={dtype}",              # production: bfloat16; float32 for the exact CPU comparison
        f"trainer.num_gpus={world}",         # production: 4 ranks on one 8-GPU node
        f"trainer.zero_stage={stage}",
        "trainer.logprob_chunk_size=8",      # production 1024: several chunks per micro-batch here too
        "optim.lr=0.003",                    # production 1e-6 moves weights by ~1e-7: float32 rounding level
        "optim.grad_clip=1.0e9",             # DeepSpeed does not clip under Muon (trainer/parallel.py, (b))
        f"rollout.sampling.max_new_tokens={max_new}",  # L_max of Dr-GRPO (production: the model's budget)
        *extra,
    ]


def _config(args: argparse.Namespace, *extra: str) -> dict:
    from zaya_rl.config import load_config

    over = scaled_down(args.preset, args.world, args.stage, args.dtype, args.max_new, [*args.set, *extra])
    return load_config(BASE, over).model_dump(mode="json")


def _batch(actor, n: int, seed: int, max_new: int, unrecorded: float) -> list:
    """Rollouts with replayed routes and behaviour log-probs near the model's own (module docstring)."""
    from zaya_rl.models.router_replay import moe_routers, routing_shape
    from zaya_rl.trainer.batch import TrainSample, collate
    from zaya_rl.trainer.step import sequence_logprobs

    g = torch.Generator().manual_seed(seed)
    layers, k = routing_shape(actor.model)
    router, family = moe_routers(actor.model)[0]
    choices = family.num_choices(router)
    samples = []
    for i in range(n):
        p, t = 3 + i % 5, (0 if i == n - 1 else 2 + (i * 5) % (max_new - 1))  # the last one: an empty completion
        rows = p + t - 1
        routes = torch.rand(rows, layers, choices, generator=g).topk(k, dim=-1).indices.to(torch.int16)
        routes[torch.rand(rows, generator=g) < unrecorded] = -1  # unrecorded positions route natively
        samples.append(TrainSample(
            prompt_ids=torch.randint(3, 200, (p,), generator=g).tolist(),
            token_ids=torch.randint(3, 200, (t,), generator=g).tolist(),
            logprobs=[0.0] * t,
            advantage=float(torch.randn(1, generator=g)),
            routed_experts=routes.numpy(),
        ))
    with torch.no_grad():
        for s in samples:
            mb = collate([s], actor.pad_id).to(actor.device)
            lp = sequence_logprobs(actor.model, mb, settings=actor.settings)[mb.loss_mask].double().cpu()
            s.logprobs = (lp + 0.06 * torch.randn(lp.shape, generator=g, dtype=torch.float64)).clamp(max=0).tolist()
    return samples


def _loss_scale(samples, max_len: int) -> float:
    nonempty = [s for s in samples if len(s.token_ids)]
    return sum(abs(s.advantage) * sum(abs(q) for q in s.logprobs) for s in nonempty) / (len(nonempty) * max_len)


def _round_to(model: torch.nn.Module, dtype: str) -> None:
    if dtype == "bfloat16":
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.bfloat16().float())


class MasterWeights:
    """Textbook mixed precision (Micikevicius et al., arXiv 1710.03740): the bf16 model runs forward and
    backward, an fp32 copy of its weights is what ``MuonAdamW`` steps, and the bf16 weights are the copy
    rounded after each step. Installed as a torch-backend ``TrainerActor``'s optimizer, it is the reference
    for DeepSpeed's bf16 path computed without DeepSpeed: same bf16 arithmetic, so only the order and dtype
    of gradient accumulation differ."""

    def __init__(self, model: torch.nn.Module, optim_cfg) -> None:
        import copy

        from zaya_rl.optim.build import build_optimizer

        self.model, self.master = model, copy.deepcopy(model).float()
        self.inner, _ = build_optimizer(self.master, optim_cfg)
        self.param_groups = self.inner.param_groups
        self.pairs = list(zip(model.parameters(), self.master.parameters(), strict=True))

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.model.zero_grad(set_to_none=True)

    @torch.no_grad()
    def step(self) -> None:
        for p, m in self.pairs:
            m.grad = None if p.grad is None else p.grad.float()
        self.inner.step()
        for p, m in self.pairs:
            p.copy_(m)


def _references(args: argparse.Namespace) -> dict:
    """The torch-backend trainers DeepSpeed is compared with (module docstring), by name."""
    from zaya_rl.pipeline.trainer_actor import TrainerActor

    fp32 = ("trainer.backend=torch", "model.dtype=float32")
    refs = {"fp32": TrainerActor(_config(args, *fp32)),
            "fp32_replay_off": TrainerActor(_config(args, *fp32, "algorithm.router_replay=false"))}
    for a in refs.values():
        _round_to(a.model, args.dtype)
    if args.dtype == "bfloat16":
        mp = TrainerActor(_config(args, "trainer.backend=torch"))
        mp.optimizer = MasterWeights(mp.model, mp.cfg.optim)
        mp.base_lrs = [g["lr"] for g in mp.optimizer.param_groups]
        refs["bf16_master"] = mp
    return refs


def _weights(actor) -> dict[str, torch.Tensor]:
    model = actor.optimizer.master if isinstance(actor.optimizer, MasterWeights) else actor.model
    return {n: p.detach().float().cpu().clone() for n, p in model.named_parameters()}


def _compare(ds: dict, ref: dict, w0: dict, algorithm: dict[str, str]) -> dict[str, float]:
    """‖W_ds − W_ref‖ / ‖W_ref − W_0‖ over all parameters and per optimizer, and the largest entry."""
    out = {}
    for part in ("all", "muon", "adamw"):
        names = [n for n in ref if part == "all" or algorithm[n] == part]
        err = sum(float((ds[n] - ref[n]).double().pow(2).sum()) for n in names)
        upd = sum(float((ref[n] - w0[n]).double().pow(2).sum()) for n in names)
        out[f"update_rel_err{'' if part == 'all' else '_' + part}"] = math.sqrt(err / upd) if upd else 0.0
    per = {n: float((ds[n] - ref[n]).abs().max()) for n in ref}
    worst = max(per, key=per.get)
    return {**out, "max_abs_diff": per[worst], "worst": worst}


def _rank(rank: int, world: int, args: argparse.Namespace, port: int) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import deepspeed
    import torch.distributed as dist

    from zaya_rl.pipeline.trainer_actor import TrainerActor
    from zaya_rl.trainer.parallel_step import global_counts, shard_samples

    ds_cfg = _config(args)
    ds = TrainerActor(ds_cfg)
    if args.persistence_threshold is not None:
        _set_persistence_threshold(args.persistence_threshold)
    t0 = time.perf_counter()
    ds.init_parallel(rank, world, "127.0.0.1", port)
    init_s = time.perf_counter() - t0
    refs = _references(args) if rank == 0 else {}
    box = [_batch(refs["fp32"], args.samples, seed=args.seed, max_new=args.max_new,
                  unrecorded=args.unrecorded) if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    samples = box[0]
    counts = global_counts(samples, ds.settings.micro_batch_size, world)
    shard = shard_samples(samples, world)[rank]

    def master() -> dict[str, torch.Tensor]:  # every rank calls it (ZeRO-3 gathers)
        return {n: deepspeed.utils.safe_get_full_fp32_param(p).detach().float().cpu()
                for n, p in ds.model.named_parameters()}

    start = master()
    w0 = _weights(refs["fp32"]) if rank == 0 else {}
    init_diff = max(float((start[n] - w0[n]).abs().max()) for n in w0) if rank == 0 else 0.0
    losses = {name: [] for name in ["deepspeed", *refs]}
    step_s = []
    for k in range(args.steps):
        t1 = time.perf_counter()
        if world == 1:
            m = ds.train_step(samples)
            assert not m["train/skipped"], m
            loss_ds = m["train/loss"]
        else:
            res = ds.train_shard(shard, counts, k)
            assert not res.skipped, res.reason
            t = torch.tensor([res.metrics["train/loss_rank"]], dtype=torch.float64, device=ds.device)  # NCCL: on GPU
            dist.all_reduce(t)
            loss_ds = float(t)
        step_s.append(time.perf_counter() - t1)
        losses["deepspeed"].append(loss_ds)
        for name, ref in refs.items():
            r = ref.train_step(samples)
            assert not r["train/skipped"], (name, r)
            losses[name].append(r["train/loss"])
    final = master()
    if rank == 0:
        published = ds.get_weights()
    else:
        ds.follow_weights()
    # A NaN advantage in one sample (on one rank's shard): every rank must skip the step, weights untouched.
    bad = [*samples[:-2], dataclasses.replace(samples[-2], advantage=float("nan")), samples[-1]]
    if world == 1:
        nan_skipped = ds.train_step(bad)["train/skipped"] == 1.0
    else:
        nan_skipped = ds.train_shard(shard_samples(bad, world)[rank], counts, args.steps).skipped
    after_nan = master()
    if rank != 0:
        return {}
    dtype = getattr(torch, ds_cfg["model"]["dtype"])
    algorithm = {n: g.algorithm for g in refs["fp32"].partition for n in g.names}
    scale = _loss_scale(samples, ds.cfg.loss_max_len)
    weights = {name: _weights(ref) for name, ref in refs.items()}
    res = {
        "preset": args.preset, "lm_head_bias": ds.model.get_output_embeddings().bias is not None,
        "unpartitioned": sum(bool(getattr(p, "ds_persist", True)) for p in ds.model.parameters()),  # ZeRO-3
        "stage": args.stage, "world": world, "dtype": args.dtype, "device": args.device,
        "steps": args.steps, "samples": len(samples), "router_replay": ds.settings.router_replay,
        "fp32_lm_head": ds.settings.fp32_lm_head, "init_diff": init_diff, "loss_scale": scale,
        "losses": losses,
        "params_moved": max(float((weights["fp32"][n] - w0[n]).abs().max()) for n in w0),
        "nonfinite_step": {"skipped": nan_skipped,
                           "moved": max(float((after_nan[n] - final[n]).abs().max()) for n in final)},
        "published_vs_master": max(float((published[n].float() - final[n].to(dtype).float()).abs().max())
                                   for n in final),
        "deepspeed_init_s": round(init_s, 2), "ds_step_s": [round(s, 3) for s in step_s],
        "machine": torch.cuda.get_device_name() if args.device == "cuda" else f"cpu ({os.cpu_count()} cores)",
        "versions": {"torch": torch.__version__, "deepspeed": deepspeed.__version__,
                     "transformers": importlib.import_module("transformers").__version__},
    }
    for name, w in weights.items():
        res[f"vs_{name}"] = {"loss_rel_err": max(abs(a - b) for a, b in zip(losses[name], losses["deepspeed"],
                                                                           strict=True)) / scale,
                             **_compare(final, w, w0, algorithm)}
    # what the check could not tell apart: the same steps without router replay, against the reference
    off = _compare(weights["fp32_replay_off"], weights["fp32"], w0, algorithm)
    res["replay_effect"] = {"loss_rel": abs(losses["fp32_replay_off"][0] - losses["fp32"][0]) / scale,
                            "update_rel": off["update_rel_err"]}
    return res


def _set_persistence_threshold(elements: int) -> None:
    """Make ``parallel.deepspeed_config`` set ``stage3_param_persistence_threshold`` (module docstring)."""
    from zaya_rl.trainer import parallel

    shipped = parallel.deepspeed_config

    def config(*args, **kwargs) -> dict:
        cfg = shipped(*args, **kwargs)
        cfg["zero_optimization"]["stage3_param_persistence_threshold"] = elements
        return cfg

    parallel.deepspeed_config = config


def _biased_checkpoint(out: str) -> str:
    """Tiny ZAYA with a random ``lm_head`` bias, saved to ``out`` (``--lm-head-bias``)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.trainer.test_lm_head_bias import _biased_zaya
    from zaya_rl.models.policy import save_policy
    from zaya_rl.models.tokenizer import build_byte_tokenizer

    return str(save_policy(_biased_zaya(), build_byte_tokenizer(), out))


def verdict(res: dict, tol: dict[str, dict[str, float]]) -> list[str]:
    """The failed checks (empty: pass)."""
    fails = [f"vs_{ref}.{k} {res[f'vs_{ref}'][k]:.3g} > {v:.3g}"
             for ref, limits in tol.items() for k, v in limits.items() if not res[f"vs_{ref}"][k] <= v]
    if res["init_diff"] != 0.0:
        fails.append(f"DeepSpeed starts from other weights (max diff {res['init_diff']:.3g})")
    if res["published_vs_master"] != 0.0:
        fails.append(f"published weights differ from the master weights by {res['published_vs_master']:.3g}")
    if not (res["nonfinite_step"]["skipped"] and res["nonfinite_step"]["moved"] == 0.0):
        fails.append(f"a step with a NaN advantage was not skipped cleanly: {res['nonfinite_step']}")
    if not res["params_moved"] > 1e-4:
        fails.append(f"parameters did not move ({res['params_moved']:.3g})")
    loosest = max(v for limits in tol.values() for k, v in limits.items() if k.startswith("update_rel_err"))
    if res["router_replay"] and not res["replay_effect"]["update_rel"] > 3 * loosest:
        fails.append(f"replay changes the update by {res['replay_effect']['update_rel']:.3g}, not 3x the "
                     f"update tolerance {loosest:.3g}: the check could not tell replay from none")
    return fails


def run_check(*args: str, timeout: float) -> dict:
    """Run this check in a subprocess (it starts a process group) and return its JSON result."""
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise AssertionError(f"ds_equivalence {' '.join(args)}: no result (exit {out.returncode}):\n{out.stderr[-4000:]}")
    return json.loads(lines[-1])


def _spawned(rank: int, world: int, args: argparse.Namespace, port: int, path: str) -> None:
    if args.device == "cuda":  # one visible GPU per rank, as Ray gives each trainer actor (LOCAL_RANK is 0)
        os.environ["CUDA_VISIBLE_DEVICES"] = str(rank)
    res = _rank(rank, world, args, port)
    if rank == 0:
        Path(path).write_text(json.dumps(res))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="tiny-zaya", choices=["tiny-zaya", "tiny-qwen3moe"])
    ap.add_argument("--stage", type=int, default=3, choices=[2, 3])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--world", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--samples", type=int, help="rollouts in the batch (default: BATCH_DEFAULTS)")
    ap.add_argument("--max-new", type=int, help="longest completion, also L_max (default: BATCH_DEFAULTS)")
    ap.add_argument("--unrecorded", type=float, help="fraction of positions without a route (BATCH_DEFAULTS)")
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra config override")
    ap.add_argument("--lm-head-bias", action="store_true", help="tiny ZAYA with an output bias (docstring)")
    ap.add_argument("--persistence-threshold", type=int, help="ZeRO-3 stage3_param_persistence_threshold")
    ap.add_argument("--out", help="also write the JSON result here")
    args = ap.parse_args()
    for key, value in zip(("samples", "max_new", "unrecorded"), BATCH_DEFAULTS[args.dtype], strict=True):
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.device == "cuda" and args.dtype == "float32":
        # ns_dtype auto is bf16 on GPUs: two float32 gradients 1e-7 apart would round apart there.
        args.set.append("optim.ns_dtype=float32")
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the gloo path, even on a GPU machine
    port = _free_port()
    t0 = time.perf_counter()
    ckpt = tempfile.TemporaryDirectory()  # the --lm-head-bias checkpoint, for every rank
    if args.lm_head_bias:
        if args.preset != "tiny-zaya":
            ap.error("--lm-head-bias builds tiny ZAYA (lm_head_bias is a ZAYA config key)")
        args.set.append(f"model.path={_biased_checkpoint(ckpt.name)}")
    if args.world == 1:
        if args.device == "cuda":
            os.environ.setdefault("CUDA_VISIBLE_DEVICES", "0")
        res = _rank(0, 1, args, port)
    else:
        import torch.multiprocessing as mp

        with tempfile.TemporaryDirectory() as d:
            path = f"{d}/result.json"
            mp.spawn(_spawned, args=(args.world, args, port, path), nprocs=args.world, join=True)
            res = json.loads(Path(path).read_text())
    ckpt.cleanup()
    tol = TOLERANCES[args.dtype]
    fails = verdict(res, tol)
    res.update({"tolerance": tol, "ok": not fails, "failures": fails, "wall_s": round(time.perf_counter() - t0, 1)})
    line = json.dumps(res)
    if args.out:
        Path(args.out).write_text(line + "\n")
    print(line, flush=True)
    return 0 if not fails else 1


if __name__ == "__main__":
    sys.exit(main())
