"""``zaya-rl rsa eval``: single-rollout accuracy vs Markovian-RSA accuracy on one environment.

Loads a policy (a preset or an HF folder, ``zaya_rl.models.policy.load_policy``) into the torch rollout
engine, generates ``num_problems`` problems of the environment in ``environments.workers.VerifierPool``
processes, runs ``MarkovianRSA`` on all of them concurrently, scores every candidate with the same pool
(so a hanging or crashing verifier costs one score, not the run), and writes the per-round table
(``zaya_rl.rsa.report``) as Markdown and JSON.

Problem seeds are ``first_problem_seed + i``; by default the held-out evaluation seeds of the training
pipeline (``environments.sampler.EVAL_SEED_BASE + i``, disjoint from every training seed).

Run ``zaya-rl rsa eval --env math --model tiny-zaya -n 2 --N 4 --C 2 --tau 16 --budget 32 --rounds 1
--out runs/rsa`` (about a minute on 2 CPU cores); ``python -m pytest tests/rsa/test_commands.py -q``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zaya_rl.config.schema import RSAConfig


@dataclass(frozen=True)
class EvalJob:
    """What ``run_eval`` evaluates, and where it writes.

    Attributes:
        env: registered environment name.
        model: preset name or HF checkpoint folder.
        rsa: N, β, τ, C, rounds, sampling.
        out: output folder (``rsa_eval.md``, ``rsa_eval.json``).
        num_problems: problems to evaluate.
        difficulty: difficulty level of every problem.
        first_problem_seed: problem ``i`` has seed ``first_problem_seed + i``; None: the pipeline's held-out
            seeds (``EVAL_SEED_BASE + i``).
        seed: RSA seed (tail draws, tie-breaks, sampling).
        env_kwargs: constructor arguments of the environment.
        device: ``auto`` (CUDA if available), ``cpu`` or ``cuda``.
        dtype: model dtype.
        max_batch_size: most sequences the engine decodes together.
        verifier_processes: processes of the verifier pool.
        verify_timeout_s: per-call timeout of the verifier pool.
    """

    env: str
    model: str
    rsa: RSAConfig
    out: str
    num_problems: int = 8
    difficulty: int = 0
    first_problem_seed: int | None = None
    seed: int = 0
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    dtype: str = "float32"
    max_batch_size: int = 64
    verifier_processes: int = 1
    verify_timeout_s: float = 20.0

    def __post_init__(self) -> None:
        if self.num_problems < 1:
            raise ValueError(f"rsa eval: -n/--num-problems must be >= 1, got {self.num_problems}")

    def settings(self) -> dict[str, Any]:
        return {**asdict(self), "rsa": self.rsa.model_dump()}


def run_eval(job: EvalJob) -> dict[str, Any]:
    """Evaluate ``job``; returns ``{"rows", "markdown", "md_path", "json_path", "wall_s"}``."""
    import torch

    from environments.base import Problem
    from environments.sampler import EVAL_SEED_BASE
    from environments.workers import VerifierPool
    from zaya_rl.models.policy import load_policy
    from zaya_rl.rollout.torch_engine import TorchEngine
    from zaya_rl.rsa.algorithm import MarkovianRSA
    from zaya_rl.rsa.report import markdown_table, summarize, to_json

    t0 = time.perf_counter()
    first = EVAL_SEED_BASE if job.first_problem_seed is None else job.first_problem_seed
    seeds = list(range(first, first + job.num_problems))
    device = ("cuda" if torch.cuda.is_available() else "cpu") if job.device == "auto" else job.device
    model, tokenizer = load_policy(job.model, job.dtype, device)
    _warn_if_context_short(model, job.rsa)
    # Router recording is for training; an evaluation does not need the routes.
    engine = TorchEngine(model, tokenizer, max_batch_size=job.max_batch_size, record_routing=False, seed=job.seed)
    pool = VerifierPool(num_processes=job.verifier_processes, timeout_s=job.verify_timeout_s)
    try:
        problems = _generate(pool, job, seeds)

        def score(problem: Problem, responses: list[str]) -> list:
            return pool.verify_batch([(problem, r) for r in responses], env_kwargs=job.env_kwargs)

        results = MarkovianRSA(engine, tokenizer, score, job.rsa, seed=job.seed).run(problems)
    finally:
        pool.close()
    wall_s = time.perf_counter() - t0
    rows = summarize(results)
    markdown = _markdown(job, seeds, device, wall_s, markdown_table(rows))
    out = Path(job.out)
    out.mkdir(parents=True, exist_ok=True)
    md_path, json_path = out / "rsa_eval.md", out / "rsa_eval.json"
    md_path.write_text(markdown + "\n")
    settings = {**job.settings(), "first_problem_seed": first, "device": device, "wall_s": wall_s}
    json_path.write_text(to_json(rows, settings, results) + "\n")
    return {"rows": rows, "markdown": markdown, "md_path": str(md_path), "json_path": str(json_path), "wall_s": wall_s}


def _generate(pool: Any, job: EvalJob, seeds: list[int]) -> list:
    """The problems, generated in the pool's worker processes; a failed generation names its seed."""
    problems = pool.generate_batch([(job.env, job.env_kwargs, s, job.difficulty) for s in seeds])
    for seed, p in zip(seeds, problems, strict=True):
        if isinstance(p, Exception):
            raise RuntimeError(f"rsa eval: generating {job.env} seed {seed} difficulty {job.difficulty} failed: {p}")
    return problems


def _markdown(job: EvalJob, seeds: list[int], device: str, wall_s: float, table: str) -> str:
    r = job.rsa
    return "\n".join([
        f"# Markovian RSA on `{job.env}` (difficulty {job.difficulty}) with `{job.model}`",
        "",
        f"{job.num_problems} problems (seeds {seeds[0]}..{seeds[-1]}); "
        f"N={r.num_candidates}, budget β={r.budget}, tail τ={r.tail_tokens}, C={r.tails_per_prompt}, "
        f"aggregation rounds={r.aggregation_rounds}, temperature={r.temperature}, top_p={r.top_p}, seed={job.seed}; "
        f"{device}, {wall_s:.0f} s.",
        "",
        "Round 0: `mean acc` is single-rollout accuracy, `majority@N` the vote over N independent samples. "
        "Round t ≥ 1: `majority@N` is the RSA answer's accuracy after t aggregation rounds.",
        "",
        table,
    ])


def _warn_if_context_short(model: Any, rsa: RSAConfig) -> None:
    """Warn when an aggregation prompt plus the budget can pass the model's position limit."""
    limit = getattr(model.config, "max_position_embeddings", None)
    need = rsa.tails_per_prompt * rsa.tail_tokens + rsa.budget
    if limit is not None and need > limit:
        print(f"[zaya-rl rsa] warning: C·τ + β = {need} tokens (before the problem and template) exceeds the "
              f"model's max_position_embeddings ({limit})", file=sys.stderr, flush=True)
