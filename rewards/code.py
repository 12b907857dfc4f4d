"""Scoring code against tests through the sandbox: code extraction, stdin/stdout tests, function tests.

- ``extract_code(response)``: the last fenced code block (```python, ```py, ```python3 or a bare ```),
  else the whole response stripped (a model may answer with raw code).
- ``score_stdio(code, tests, ...)``: runs the program once per test in ``rewards.sandbox.run_python`` and
  compares stdout with the expected output after ``normalize_output`` (LiveCodeBench-style line-wise
  comparison, research/environments.md §4.1). Reward ``all`` = 1 iff every test passes (binary, RLVE's
  ``accuracy``), ``fraction`` = passed / total (verl ``continuous``). ``early_exit`` stops at the first
  failure (the remaining tests count as ``skipped``, i.e. failed), which is exact for ``all`` and a lower
  bound for ``fraction``.
- ``score_program(program)``: one run whose exit status is the verdict (HumanEval: prompt + completion +
  ``check(entry_point)``; an assertion error exits non-zero).

A ``sandbox_error`` (the sandbox itself failed) is not the program's fault: it is returned as
``CodeVerdict.verifier_error`` so the environment turns it into ``Score.failed``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from rewards.sandbox import SandboxResult, run_python

CodeReward = Literal["all", "fraction"]
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class StdioTest:
    """One stdin/stdout test case."""

    stdin: str
    expected: str


@dataclass(frozen=True)
class TestOutcome:
    """How one test went.

    Attributes:
        status: ``pass``, ``wrong_answer``, ``skipped`` (not run after an early exit), or the sandbox
            status of a failed run (``error``, ``timeout``, ``memory``, ``output_limit``, ``sandbox_error``).
        wall_s: wall-clock seconds of the run (0 when skipped).
        detail: the sandbox's reason, or the first differing line for a wrong answer.
    """

    status: str
    wall_s: float = 0.0
    detail: str = ""


@dataclass(frozen=True)
class CodeVerdict:
    """Result of scoring one program.

    Attributes:
        reward: in [0, 1] (see ``CodeReward``).
        passed: tests passed.
        total: tests in the problem.
        outcomes: one ``TestOutcome`` per test, in order.
        verifier_error: set when the sandbox itself failed; the reward is then meaningless.
    """

    reward: float
    passed: int
    total: int
    outcomes: list[TestOutcome] = field(default_factory=list)
    verifier_error: str | None = None


def extract_code(response: str) -> str | None:
    """The last fenced code block of ``response``, else the stripped response; None if empty."""
    blocks = _FENCE.findall(response)
    code = blocks[-1] if blocks else response
    code = code.strip("\n")
    return code if code.strip() else None


def normalize_output(text: str) -> list[str]:
    """Lines with runs of whitespace collapsed and ends stripped; leading/trailing blank lines dropped."""
    return [" ".join(line.split()) for line in text.strip().splitlines()]


def score_stdio(
    code: str,
    tests: list[StdioTest],
    *,
    reward: CodeReward = "all",
    early_exit: bool = True,
    timeout_s: float = 5.0,
    memory_mb: int = 512,
) -> CodeVerdict:
    """Run ``code`` on each test and score it (module docstring).

    Args:
        code: the program.
        tests: the test cases; at least one.
        reward: ``all`` (1 iff every test passes) or ``fraction`` (share of tests passed).
        early_exit: stop at the first failing test.
        timeout_s: wall-clock limit per test.
        memory_mb: memory limit per test.
    """
    if not tests:
        raise ValueError("score_stdio: tests must not be empty")
    outcomes: list[TestOutcome] = []
    for test in tests:
        run = run_python(code, test.stdin, timeout_s=timeout_s, memory_mb=memory_mb)
        if run.status == "sandbox_error":
            return CodeVerdict(0.0, 0, len(tests), outcomes, verifier_error=run.reason)
        outcomes.append(_judge(run, test.expected))
        if early_exit and outcomes[-1].status != "pass":
            break
    outcomes += [TestOutcome("skipped")] * (len(tests) - len(outcomes))
    passed = sum(o.status == "pass" for o in outcomes)
    value = float(passed == len(tests)) if reward == "all" else passed / len(tests)
    return CodeVerdict(value, passed, len(tests), outcomes)


def score_program(program: str, *, timeout_s: float = 10.0, memory_mb: int = 512) -> CodeVerdict:
    """Run a self-checking program (e.g. HumanEval's ``check``); reward 1 iff it exits with status 0."""
    run = run_python(program, timeout_s=timeout_s, memory_mb=memory_mb)
    if run.status == "sandbox_error":
        return CodeVerdict(0.0, 0, 1, [], verifier_error=run.reason)
    outcome = TestOutcome("pass" if run.status == "ok" else run.status, run.wall_s, run.reason)
    return CodeVerdict(float(outcome.status == "pass"), int(outcome.status == "pass"), 1, [outcome])


def _judge(run: SandboxResult, expected: str) -> TestOutcome:
    if run.status != "ok":
        return TestOutcome(run.status, run.wall_s, run.reason)
    got, want = normalize_output(run.stdout), normalize_output(expected)
    if got == want:
        return TestOutcome("pass", run.wall_s)
    line = next((i for i, (g, w) in enumerate(zip(got, want, strict=False)) if g != w), min(len(got), len(want)))
    shown_got = got[line] if line < len(got) else "<end of output>"
    shown_want = want[line] if line < len(want) else "<end of output>"
    return TestOutcome("wrong_answer", run.wall_s, f"line {line + 1}: got {shown_got[:80]!r}, expected {shown_want[:80]!r}")
