"""``zaya-rl envs``: list, sample and check the registered environments.

    zaya-rl envs list [--category rlve]
    zaya-rl envs sample arithmetic --difficulty 3 -n 4 [--seed 0] [--kwarg reward=shifted]
    zaya-rl envs check knights_knaves [--difficulties 0 1 2] [-n 3]
    zaya-rl envs check --all [--category tiny] [-n 1] [--processes 2] [--timeout 60]

``sample`` and ``check`` run every generation and verification in ``VerifierPool`` workers, so a hanging
or crashing environment cannot hang the command; ``check`` exits 0 when every environment passes and 1
otherwise. Heavy modules are imported inside the handlers (STYLE.md rule 7).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any


def add_parser(subparsers: Any) -> None:
    """Register ``envs`` and its sub-commands on the top-level ``zaya-rl`` parser."""
    envs = subparsers.add_parser("envs", help="list, sample and check environments")
    sub = envs.add_subparsers(dest="envs_command", required=True, metavar="SUBCOMMAND")

    ls = sub.add_parser("list", help="registered environments: name, category, difficulty range, source")
    ls.add_argument("--category", help="only this category (tiny, puzzle, rlve, rg, math, ...)")
    ls.set_defaults(handler=_list)

    sm = sub.add_parser("sample", help="print generated prompts and reference answers")
    sm.add_argument("name")
    sm.add_argument("--difficulty", type=int, default=0, help="level (default 0)")
    sm.add_argument("-n", type=int, default=3, help="problems to print (default 3)")
    sm.add_argument("--seed", type=int, default=0, help="first problem seed (default 0)")
    _pool_args(sm, timeout=60.0)
    sm.set_defaults(handler=_sample)

    ck = sub.add_parser(
        "check", help="reference verifies, wrong answer does not, generation is deterministic"
    )
    ck.add_argument("name", nargs="?", help="environment to check (or --all)")
    ck.add_argument("--all", action="store_true", help="check every registered environment")
    ck.add_argument("--category", help="with --all: only this category")
    ck.add_argument("--difficulties", type=int, nargs="+", help="levels (default: the lowest four)")
    ck.add_argument("-n", type=int, default=3, help="seeds per level (default 3)")
    ck.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    ck.add_argument("--processes", type=int, default=2, help="worker processes (default 2)")
    ck.add_argument("--generate-timeout", type=float, help="seconds one problem may take to generate (default: "
                    "the run's pipeline.generate_timeout_s); a level slower than this is reported once")
    _pool_args(ck, timeout=60.0)
    ck.set_defaults(handler=_check)


def _pool_args(p: argparse.ArgumentParser, timeout: float) -> None:
    p.add_argument(
        "--timeout",
        type=float,
        default=timeout,
        help=f"seconds per call before the worker is killed (default {timeout:g})",
    )
    p.add_argument(
        "--kwarg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment constructor argument (YAML value); repeatable",
    )


def _kwargs(items: list[str]) -> dict[str, Any]:
    import yaml

    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"zaya-rl envs: --kwarg {item!r} is not KEY=VALUE")
        out[key] = yaml.safe_load(raw) if raw else ""
    return out


def _spec(name: str) -> Any:
    """The environment's spec; an unknown name is one clean line with suggestions (``zaya-rl: unknown ...``)."""
    from environments.registry import EnvironmentNotFound, get_spec
    from zaya_rl.config.base import ConfigError

    try:
        return get_spec(name)
    except EnvironmentNotFound as e:
        raise ConfigError(str(e)) from None


def _list(args: argparse.Namespace) -> int:
    from environments.checks import format_table
    from environments.registry import list_environments, registry_problems

    specs = list_environments(args.category)
    rows = [[s.name, s.category, s.difficulty_range, s.source, s.note] for s in specs]
    print(format_table(rows, ("name", "category", "difficulty", "source", "note")))
    print(f"\n{len(specs)} environments")
    for name, why in sorted(registry_problems().items()):
        print(f"note: {name!r}: {why}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from environments.workers import VerifierPool, WorkerCallError

    _spec(args.name)  # unknown names fail here, with suggestions, before any worker starts
    requests = [(args.name, _kwargs(args.kwarg), args.seed + i, args.difficulty) for i in range(args.n)]
    with VerifierPool(1, args.timeout) as pool:
        results = pool.generate_batch(requests)
    failed = 0
    for (_, _, seed, d), problem in zip(requests, results, strict=True):
        print(f"=== {args.name}  difficulty={d}  seed={seed}")
        if isinstance(problem, WorkerCallError):
            failed += 1
            print(f"generation failed: {problem}")
            continue
        for m in problem.messages:
            print(f"[{m['role']}]\n{m['content']}")
        print(f"[reference answer]\n{problem.answer}\n")
    return 1 if failed else 0


def _check(args: argparse.Namespace) -> int:
    from environments.checks import check_environment, failure_lines, levels_for
    from environments.registry import list_environments
    from environments.workers import VerifierPool
    from zaya_rl.config.schema import PipelineConfig

    if args.all == bool(args.name):
        raise SystemExit("zaya-rl envs check: give an environment NAME or --all (not both)")
    specs = list_environments(args.category) if args.all else [_spec(args.name)]
    seeds = range(args.seed, args.seed + args.n)
    results, start = [], time.monotonic()
    bound = args.generate_timeout or PipelineConfig.model_fields["generate_timeout_s"].default
    with VerifierPool(args.processes, args.timeout, generate_timeout_s=bound) as pool:
        for spec in specs:
            result = check_environment(
                pool, spec, levels_for(spec, args.difficulties), seeds, _kwargs(args.kwarg)
            )
            results.append(result)
            print(f"{result.verdict:5s} {spec.name}", file=sys.stderr if args.all else sys.stdout, flush=True)
            if result.failures and not args.all:
                print("\n".join(failure_lines(result)))
    _summary(results, args.all, time.monotonic() - start)
    return 1 if any(r.failures for r in results) else 0


def _summary(results: list, table: bool, seconds: float) -> None:
    from environments.checks import CHECK_HEADER, failure_lines, format_table

    if table:
        print(format_table([r.row() for r in results], CHECK_HEADER))
        for r in results:
            if r.failures:
                print(f"\n{r.verdict} {r.name}\n" + "\n".join(failure_lines(r)))
    failed = sum(bool(r.failures) for r in results)
    no_ref = sum(r.ref_total == 0 for r in results)
    print(
        f"\n{len(results)} environments in {seconds:.1f}s: {len(results) - failed} PASS, {failed} FAIL "
        f"({no_ref} without reference answers)"
    )
