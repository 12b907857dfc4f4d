"""Self-checks of environments, run through a ``VerifierPool`` (``zaya-rl envs check``).

For each (difficulty, seed): the problem is generated twice (possibly in two different workers) and
must be identical; the environment's ``reference_response`` must verify with accuracy 1 and its
``wrong_response`` with accuracy 0. Every call goes through the pool, so a hanging or crashing
environment becomes a timeout/error line in the report instead of hanging the command.

Generation is time-boxed (the pool's ``generate_timeout_s``, by default the run's
``pipeline.generate_timeout_s``): each level is first probed with one problem, and a level whose probe
times out is reported once and not tried again, so a slow level costs one bound, not one per seed. An
offered level (inside the environment's range) that cannot generate within the bound is a failure: a run
would abandon those problems.

Verdict: ``PASS``, or ``FAIL`` on any generation error or timeout, non-determinism, verifier error,
accepted wrong answer, or rejected reference. Environments without a reference answer (the verifier
validates solutions instead) are checked for everything else and marked ``no-ref``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from environments.base import Problem
from environments.registry import EnvSpec
from environments.workers import VerifierPool, WorkerCallError

#: Failure lines kept per environment in the report.
_MAX_REASONS = 5


@dataclass
class EnvCheck:
    """Outcome of checking one environment.

    Attributes:
        name: environment name.
        problems: (difficulty, seed) pairs tried.
        generated: pairs whose problem generated (both times).
        deterministic: pairs whose two generations were identical.
        ref_total: problems that have a reference response.
        ref_ok: reference responses verified correct.
        wrong_ok: wrong responses verified incorrect.
        failures: one line per failed check.
    """

    name: str
    problems: int = 0
    generated: int = 0
    deterministic: int = 0
    ref_total: int = 0
    ref_ok: int = 0
    wrong_ok: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return "FAIL" if self.failures else "PASS"

    def row(self) -> list[str]:
        ref = f"{self.ref_ok}/{self.ref_total}" if self.ref_total else "no-ref"
        return [self.name, self.verdict, f"{self.generated}/{self.problems}", f"{self.deterministic}/{self.generated}",
                ref, f"{self.wrong_ok}/{self.generated}"]  # fmt: skip


def levels_for(spec: EnvSpec, requested: Sequence[int] | None, count: int = 4) -> list[int]:
    """The requested levels (default: the lowest ``count``) that lie inside the environment's range."""
    levels = requested or range(spec.min_difficulty, spec.min_difficulty + count)
    top = spec.max_difficulty
    return [d for d in levels if d >= spec.min_difficulty and (top is None or d <= top)]


def check_environment(
    pool: VerifierPool,
    spec: EnvSpec,
    difficulties: Sequence[int],
    seeds: Sequence[int],
    env_kwargs: dict[str, Any] | None = None,
) -> EnvCheck:
    """Run the checks of the module docstring for one environment."""
    result = EnvCheck(spec.name)
    kwargs = dict(env_kwargs or {})
    requests = [(spec.name, kwargs, s, d) for d in difficulties for s in seeds]
    result.problems = len(requests)
    probes = pool.generate_batch([(spec.name, kwargs, seeds[0], d) for d in difficulties])
    slow = {d: p for d, p in zip(difficulties, probes, strict=True)
            if isinstance(p, WorkerCallError) and p.status == "timeout"}
    for d, p in slow.items():
        result.failures.append(f"d={d}: too slow to generate ({p.reason}); not tried for other seeds")
    requests = [r for r in requests if r[3] not in slow]
    first, second = pool.generate_batch(requests), pool.generate_batch(requests)
    problems: list[Problem] = []
    for (_, _, seed, d), a, b in zip(requests, first, second, strict=True):
        where = f"d={d} seed={seed}"
        bad = a if isinstance(a, WorkerCallError) else b if isinstance(b, WorkerCallError) else None
        if bad is not None:
            result.failures.append(f"{where}: generate {bad}")
            continue
        result.generated += 1
        if a.to_dict() == b.to_dict():
            result.deterministic += 1
        else:
            result.failures.append(f"{where}: two generations differ")
        problems.append(a)
    _check_responses(pool, problems, result)
    return result


def _check_responses(pool: VerifierPool, problems: list[Problem], result: EnvCheck) -> None:
    answers = pool.responses_batch(problems)
    items, kinds = [], []
    for problem, resp in zip(problems, answers, strict=True):
        where = f"d={problem.difficulty} seed={problem.seed}"
        if isinstance(resp, WorkerCallError):
            result.failures.append(f"{where}: responses {resp}")
            continue
        items.append((problem, resp["wrong"]))
        kinds.append(("wrong", where))
        if resp["reference"] is not None:
            result.ref_total += 1
            items.append((problem, resp["reference"]))
            kinds.append(("reference", where))
    for (kind, where), score in zip(kinds, pool.verify_batch(items), strict=True):
        expected = 1.0 if kind == "reference" else 0.0
        if score.status == "ok" and score.accuracy == expected:
            result.ref_ok += kind == "reference"
            result.wrong_ok += kind == "wrong"
            continue
        detail = (
            f"{score.status}: {score.reason}"
            if score.status != "ok"
            else f"accuracy {score.accuracy} ({score.reason})"
        )
        result.failures.append(f"{where}: {kind} response -> {detail}"[:300])


def format_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """Left-aligned text table."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]
    ]
    return "\n".join(lines)


CHECK_HEADER = ("environment", "verdict", "generated", "deterministic", "reference", "wrong-rejected")


def failure_lines(result: EnvCheck) -> list[str]:
    """The first few failure lines of an environment, indented for the report."""
    extra = len(result.failures) - _MAX_REASONS
    lines = [f"    {line}" for line in result.failures[:_MAX_REASONS]]
    return lines + ([f"    ... and {extra} more"] if extra > 0 else [])
