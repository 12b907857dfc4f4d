"""Weight-update seconds and GB/s into a running vLLM engine, per transport, against the machine's links.

    python benchmarks/gpu/bench_weights.py --frontend async_llm --out /tmp/zaya_gpu/weights.json     # 1 GPU
    python benchmarks/gpu/bench_weights.py --frontend async_llm --nccl --out ...      # 2 GPUs: trainer on cuda:1
    python benchmarks/gpu/bench_weights.py --dry-run --out /tmp/weights_dry.json     # CPU: torch engine, file/state_dict

A random Qwen3-MoE of ~0.5 B parameters (~1 GB in bf16: 8 layers, 32 experts of 512, top-4, hidden
1024; ``--small`` for a 50 MB one) is the "trainer" model, on the GPU of this process; vLLM serves the
same architecture. Each transport sends every parameter ``--repeats`` times through the engine's
``apply_update`` (pause → load → resume) exactly as ``zaya_rl.weights.senders`` do, minus Ray:

- ``file``: safetensors buckets into /dev/shm, then ``reload_weights(weights_path=...)``;
- ``state_dict``: CPU copies (in process: ``reload_weights(weights_iterator=...)``; AsyncLLM: via /dev/shm);
- ``ipc`` (``--frontend async_llm``, one GPU): CUDA IPC handles of the live parameters;
- ``nccl`` (``--nccl``, two GPUs): packed NCCL broadcast from cuda:1 into the engine on cuda:0.

GB/s counts the model's bytes over the whole update (transfer + vLLM's layerwise reload + pause/resume).
Reference links measured in the same process: device-to-device copy, pinned host-to-device and
device-to-host copy. Last check: an update with ``lm_head`` zeroed makes every log-prob log(1/V).
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


def build_trainer_model(small: bool, device: str, folder: Path):
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(model_config(small), dtype=torch.bfloat16 if device != "cpu" else torch.float32)
    model.save_pretrained(folder)
    return model


def build_engine(args, folder: Path):
    from zaya_rl.rollout.vllm_build import FRONTENDS
    from zaya_rl.rollout.vllm_engine import VLLMEngine

    if args.dry_run:
        from transformers import AutoModelForCausalLM

        from zaya_rl.models.tokenizer import build_byte_tokenizer
        from zaya_rl.rollout.torch_engine import TorchEngine

        return TorchEngine(AutoModelForCausalLM.from_pretrained(folder), build_byte_tokenizer(), record_routing=False)
    backend = "nccl" if args.nccl else ("ipc" if args.frontend == "async_llm" else None)
    kw = {"model": str(folder), "dtype": "bfloat16", "seed": 0, "gpu_memory_utilization": 0.35, "enforce_eager": True,
          "max_model_len": 512, "max_num_seqs": 16, "skip_tokenizer_init": True, "disable_log_stats": True,
          "logprobs_mode": "processed_logprobs"}
    if backend:
        kw["weight_transfer_config"] = {"backend": backend}
    return VLLMEngine(FRONTENDS[args.frontend](kw), None, in_process=args.frontend == "stepped",
                      shm_dir=str(args.shm))


async def _apply(engine, update):
    if hasattr(engine, "apply_update"):
        return await engine.apply_update(update)
    from zaya_rl.weights.receive import apply_to_engine

    return await apply_to_engine(engine, update)


def _meta(named):
    from zaya_rl.weights.files import tensor_meta

    return tuple(tensor_meta(n, t) for n, t in named)


async def send_file(engine, model, version):
    from zaya_rl.weights.base import WeightUpdate
    from zaya_rl.weights.files import write_folder

    folder = SHM[0] / f"v{version}"
    with Timer() as t:
        metas = write_folder(((n, p.data) for n, p in model.named_parameters()), folder, BUCKET)
    timings = await _apply(engine, WeightUpdate(version, "file", tuple(metas), str(folder)))
    return {"write_s": t.s, **timings}


async def send_state_dict(engine, model, version):
    from zaya_rl.weights.base import WeightUpdate

    with Timer() as t:
        state = {n: p.data.to("cpu", copy=True) for n, p in model.named_parameters()}
    return {"copy_s": t.s, **await _apply(engine, WeightUpdate(version, "state_dict", _meta(state.items()), state))}


async def send_ipc(engine, model, version):
    import base64
    import pickle

    import torch
    from torch.multiprocessing.reductions import reduce_tensor

    from zaya_rl.weights.base import WeightUpdate

    uuid_ = str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)
    named = [(n, p.data.contiguous()) for n, p in model.named_parameters()]
    payload = base64.b64encode(pickle.dumps([{uuid_: reduce_tensor(t)[1]} for _, t in named])).decode("ascii")
    torch.cuda.synchronize()
    return await _apply(engine, WeightUpdate(version, "ipc", _meta(named), payload))


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

    async def send(self, engine, version):
        import torch
        from vllm.distributed.weight_transfer.nccl_engine import (
            NCCLTrainerSendWeightsArgs,
            NCCLWeightTransferEngine,
        )

        from zaya_rl.weights.base import WeightUpdate

        named = [(n, p.data) for n, p in self.model.named_parameters()]
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


async def check_effective(engine, model, send, version: int) -> dict[str, float]:
    """Send weights with ``lm_head`` zeroed; every sampled token's log-prob must then be log(1/V)."""
    from zaya_rl.rollout.base import GenerationRequest, SamplingParams

    head = model.get_output_embeddings().weight
    saved = head.data.clone()
    head.data.zero_()
    await send(engine, model, version)
    head.data.copy_(saved)
    reqs = [GenerationRequest(f"chk{version}-{i}", [1, 2, 3 + i], SamplingParams(max_new_tokens=8, seed=i))
            for i in range(4)]
    res = await asyncio.gather(*(engine.generate(r) for r in reqs))
    err = max(abs(lp - uniform_logprob(model.config.vocab_size)) for r in res for lp in r.logprobs)
    return {"uniform_max_abs_err": err, "ok": err < 1e-2 and all(set(r.versions) == {version} for r in res)}


async def run(args, engine, model, out):
    from zaya_rl.weights.buckets import total_bytes

    nbytes = total_bytes(_meta((n, p.data) for n, p in model.named_parameters()))
    out["model_bytes"] = nbytes
    transports = {"file": send_file, "state_dict": send_state_dict}
    if args.nccl:
        trainer = NcclTrainer(model)
        with Timer() as t:
            await trainer.connect(engine)
        out["nccl_connect_s"] = t.s
        transports = {"nccl": trainer.send, **transports}
    elif args.frontend == "async_llm" and not args.dry_run:
        transports = {"ipc": send_ipc, **transports}
    version = 0
    for name, send in transports.items():
        reps = []
        for _ in range(args.repeats):
            version += 1
            with Timer() as t:
                timings = await send(engine, model, version)
            reps.append({"total_s": t.s, **timings})
        best = min(r["total_s"] for r in reps)
        out[name] = {"reps": reps, "best_s": best, "gbps": nbytes / best / 1e9}
    first = next(iter(transports))
    out["effective"] = await check_effective(engine, model, transports[first], version + 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frontend", default="async_llm", choices=["async_llm", "stepped"])
    ap.add_argument("--nccl", action="store_true", help="two GPUs: trainer on cuda:1, NCCL transport")
    ap.add_argument("--dry-run", action="store_true", help="CPU: torch engine, file and state_dict only")
    ap.add_argument("--small", action="store_true", help="a ~50 MB model instead of ~1 GB")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="weights_bench.json")
    args = ap.parse_args()
    # AsyncLLM starts its engine core with multiprocessing; spawn (this file is guarded by __main__) avoids
    # forking a process that may already hold CUDA or threads.
    os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
    os.environ["VLLM_ALLOW_INSECURE_SERIALIZATION"] = "1"  # IPC handles reach AsyncLLM's engine core pickled
    device = "cpu" if args.dry_run else ("cuda:1" if args.nccl else "cuda:0")
    out = {"frontend": "torch(dry-run)" if args.dry_run else args.frontend, "trainer_device": device, "ok": False}
    try:
        import torch

        if device != "cpu":
            torch.cuda.set_device(torch.device(device))
        out.update(link_speeds(device))
        folder = WORK / ("weights_model_small" if args.small or args.dry_run else "weights_model")
        with Timer() as t:
            model = build_trainer_model(args.small or args.dry_run, device, folder)
        out["build_s"] = t.s
        args.shm = SHM[0] = scratch(sum(p.numel() * p.element_size() for p in model.parameters()))
        out["scratch"] = str(args.shm)
        with Timer() as t:
            engine = build_engine(args, folder)
        out["startup_s"] = t.s
        asyncio.run(run(args, engine, model, out))
        out["ok"] = bool(out["effective"]["ok"])
    except Exception as e:  # noqa: BLE001 - any failure is reported in the result JSON
        record_failure(out, e)
    write_json(args.out, out)
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
