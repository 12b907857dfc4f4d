"""Code extraction and test scoring: python -m pytest tests/rewards/test_code_reward.py -q"""

from __future__ import annotations

import pytest

from rewards import code as rcode
from rewards.code import StdioTest, extract_code, normalize_output, score_program, score_stdio
from rewards.sandbox import SandboxResult


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("Here:\n```python\nprint(1)\n```\nand better:\n```python\nprint(2)\n```", "print(2)"),
        ("```py\nx = 1\n```", "x = 1"),
        ("```\nprint('bare fence')\n```", "print('bare fence')"),
        ("```Python3\nprint(3)\n```", "print(3)"),
        ("print('raw code')\n", "print('raw code')"),
        ("   \n  ", None),
    ],
)
def test_extract_code(response, expected):
    assert extract_code(response) == expected


def test_normalize_output():
    assert normalize_output("\n  1   2 \n3\t4  \n\n") == ["1 2", "3 4"]
    assert normalize_output("a\n\nb") == ["a", "", "b"]  # inner blank lines still count
    assert normalize_output("") == []


ECHO_SUM = "print(sum(map(int, input().split())))"
TESTS = [StdioTest("1 2\n", "3\n"), StdioTest("5 5\n", "10"), StdioTest("0 0\n", "  0  \n\n")]


def test_all_tests_pass():
    v = score_stdio(ECHO_SUM, TESTS)
    assert (v.reward, v.passed, v.total, v.verifier_error) == (1.0, 3, 3, None)
    assert [o.status for o in v.outcomes] == ["pass"] * 3


def test_fraction_without_early_exit():
    tests = [StdioTest("1 2\n", "3"), StdioTest("1 2\n", "4"), StdioTest("2 2\n", "4")]
    v = score_stdio(ECHO_SUM, tests, reward="fraction", early_exit=False)
    assert v.reward == pytest.approx(2 / 3) and v.passed == 2
    assert [o.status for o in v.outcomes] == ["pass", "wrong_answer", "pass"]
    assert v.outcomes[1].detail == "line 1: got '3', expected '4'"


def test_early_exit_marks_rest_skipped():
    tests = [StdioTest("1 2\n", "4"), StdioTest("1 2\n", "3")]
    v = score_stdio(ECHO_SUM, tests, reward="all", early_exit=True)
    assert v.reward == 0.0 and [o.status for o in v.outcomes] == ["wrong_answer", "skipped"]


def test_runtime_failures_are_per_test_statuses():
    v = score_stdio("import sys\nn = int(input())\nwhile n: pass\nprint(1 // n)", [StdioTest("0\n", "x"), StdioTest("1\n", "1")],
                    early_exit=False, timeout_s=1)
    assert [o.status for o in v.outcomes] == ["error", "timeout"] and "ZeroDivisionError" in v.outcomes[0].detail


def test_sandbox_failure_is_a_verifier_error(monkeypatch):
    failed = SandboxResult("sandbox_error", "", "", None, 0.0, reason="sandbox: cannot fork")
    monkeypatch.setattr(rcode, "run_python", lambda *a, **k: failed)
    v = score_stdio(ECHO_SUM, TESTS)
    assert v.verifier_error == "sandbox: cannot fork"
    assert score_program("pass").verifier_error == "sandbox: cannot fork"


def test_score_program():
    assert score_program("def f(x):\n    return x + 1\nassert f(1) == 2").reward == 1.0
    bad = score_program("def f(x):\n    return x\nassert f(1) == 2")
    assert bad.reward == 0.0 and bad.outcomes[0].status == "error" and "AssertionError" in bad.outcomes[0].detail


def test_empty_tests_rejected():
    with pytest.raises(ValueError, match="tests"):
        score_stdio("pass", [])
