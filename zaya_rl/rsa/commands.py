"""``zaya-rl rsa eval``: Markovian RSA vs single rollouts on an environment (``zaya_rl.rsa.evaluation``).

    zaya-rl rsa eval --env math --model tiny-zaya -n 2 --N 4 --C 2 --tau 16 --budget 32 --rounds 1 --out runs/rsa

Defaults are the ZAYA1 settings (research/algorithms.md §8.2): N=16, β=40000, τ=4000, C=4, 2 aggregation
rounds. Torch is imported inside the handler only, so ``zaya-rl --help`` stays instant (STYLE.md rule 7).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rsa", help="Markovian recursive self-aggregation (test-time compute)")
    rsub = p.add_subparsers(dest="rsa_command", required=True)
    e = rsub.add_parser("eval", help="single-rollout vs RSA accuracy per aggregation round on one environment")
    e.add_argument("--env", required=True, help="registered environment name (zaya-rl envs list)")
    e.add_argument("--model", required=True, help="preset name (tiny-zaya, tiny-qwen3moe) or HF checkpoint folder")
    e.add_argument("-n", "--num-problems", type=int, default=8, help="problems to evaluate")
    e.add_argument("--difficulty", type=int, default=0, help="difficulty level of the problems")
    e.add_argument("--first-problem-seed", type=int, default=None,
                   help="seed of the first problem (problem i: this + i); default: the held-out seeds 2^31 + i")
    e.add_argument("--env-kwargs", default="{}",
                   help='environment constructor arguments as JSON, e.g. \'{"timeout_s": 5}\'')
    g = e.add_argument_group("RSA (research/algorithms.md §8.2)")
    g.add_argument("--N", type=int, default=16, help="candidates per round")
    g.add_argument("--budget", type=int, default=40000, help="β: generation budget per candidate, tokens")
    g.add_argument("--tau", type=int, default=4000, help="τ: tail length carried to the next round, tokens")
    g.add_argument("--C", type=int, default=4, help="tails per aggregation prompt (drawn without replacement)")
    g.add_argument("--rounds", type=int, default=2,
                   help="aggregation rounds after the initial generation (RSA-harness T = rounds + 1)")
    g.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    g.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass")
    g.add_argument("--answer-format", default=None,
                   help='how aggregation prompts ask for the answer, e.g. "in \\boxed{}" '
                        "(default: as the problem asks)")
    g.add_argument("--seed", type=int, default=0, help="seed of tail draws, tie-breaks and sampling")
    r = e.add_argument_group("runtime")
    r.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="engine device")
    r.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="model dtype")
    r.add_argument("--max-batch-size", type=int, default=64, help="most sequences decoded together")
    r.add_argument("--verifier-processes", type=int, default=1, help="verifier pool processes")
    r.add_argument("--verify-timeout", type=float, default=20.0, help="verifier timeout per call, seconds")
    e.add_argument("--out", required=True, help="output folder for rsa_eval.md and rsa_eval.json")
    e.set_defaults(handler=_eval)


def job_from_args(args: argparse.Namespace):
    """Validate the arguments into an ``EvalJob`` (a bad RSA setting raises ``ConfigError`` naming it)."""
    from pydantic import ValidationError

    from environments.registry import EnvironmentNotFound, get_spec
    from zaya_rl.config.base import ConfigError, format_validation_error
    from zaya_rl.config.schema import RSAConfig
    from zaya_rl.models.commands import PRESET_NAMES
    from zaya_rl.rsa.evaluation import EvalJob

    try:
        get_spec(args.env)
    except EnvironmentNotFound as exc:
        raise ConfigError(f"--env: {exc}") from None
    if args.model not in PRESET_NAMES and not (Path(args.model) / "config.json").is_file():
        raise ConfigError(f"--model: {args.model!r} is neither a preset {PRESET_NAMES} nor a folder with config.json")

    try:
        rsa = RSAConfig(
            num_candidates=args.N, budget=args.budget, tail_tokens=args.tau, tails_per_prompt=args.C,
            aggregation_rounds=args.rounds, temperature=args.temperature, top_p=args.top_p,
            answer_format=args.answer_format,
        )
    except ValidationError as exc:  # names the field: rsa.num_candidates is --N, rsa.tail_tokens --tau, ...
        raise ConfigError(format_validation_error(exc, prefix="rsa", model=RSAConfig)) from None
    try:
        env_kwargs = json.loads(args.env_kwargs)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--env-kwargs: not valid JSON ({exc})") from None
    if not isinstance(env_kwargs, dict):
        raise ConfigError(f"--env-kwargs: expected a JSON object, got {args.env_kwargs!r}")
    try:
        return EvalJob(env=args.env, model=args.model, rsa=rsa, out=args.out, num_problems=args.num_problems,
                       difficulty=args.difficulty, first_problem_seed=args.first_problem_seed, seed=args.seed, env_kwargs=env_kwargs,
                       device=args.device, dtype=args.dtype, max_batch_size=args.max_batch_size,
                       verifier_processes=args.verifier_processes, verify_timeout_s=args.verify_timeout)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _eval(args: argparse.Namespace) -> int:
    job = job_from_args(args)  # fails here, before the model loads, on any bad argument
    from zaya_rl.rsa.evaluation import run_eval

    result = run_eval(job)
    print(result["markdown"])
    print(f"\nwrote {result['md_path']} and {result['json_path']}", flush=True)
    return 0
