"""``zaya-rl envs list | sample | check``: output, exit codes, and no hang on a hanging environment.

python -m pytest tests/environments/test_envs_cli.py -q
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from zaya_rl.cli import main


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(["envs", *argv])
    return code, capsys.readouterr().out


def test_list_filters_by_category_and_reports_broken_plugins(capsys, plugin):
    code, out = run(capsys, "list", "--category", "tiny")
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == ["name", "category", "difficulty", "source", "note"]
    assert lines[1].split() == ["arithmetic", "tiny", "0..7", "zaya-rl"]
    assert "4 environments" in out
    assert "note: 'zt_broken': failed to load entry point" in out


def test_sample_prints_prompts_and_reference_answers(capsys):
    code, out = run(capsys, "sample", "arithmetic", "--difficulty", "3", "-n", "2", "--seed", "1")
    assert code == 0
    assert out.splitlines()[:5] == [
        "=== arithmetic  difficulty=3  seed=1",
        "[user]",
        "57+96=",
        "[reference answer]",
        "153",
    ]
    assert "seed=2" in out


@pytest.mark.parametrize("command", ["sample", "check"])
def test_an_unknown_name_is_one_clean_line_with_suggestions(command):
    # a subprocess, as a user sees it: before any worker starts, no traceback, the usage exit code
    proc = subprocess.run([sys.executable, "-m", "zaya_rl.cli", "envs", command, "revers"], capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("zaya-rl: unknown environment 'revers'; did you mean reverse")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_check_passing_environment_exits_zero(capsys):
    code, out = run(capsys, "check", "mini_sudoku", "--difficulties", "0", "4", "-n", "2")
    assert code == 0
    assert out.splitlines()[0] == "PASS  mini_sudoku"
    assert "1 environments" in out and "1 PASS, 0 FAIL" in out


def test_check_hanging_environment_fails_without_hanging(capsys, plugin):
    start = time.monotonic()
    code, out = run(capsys, "check", "zt/hang", "--difficulties", "0", "-n", "1", "--timeout", "0.5")
    assert code == 1 and time.monotonic() - start < 20
    assert "FAIL  zt/hang" in out and "timeout: verify exceeded 0.5s" in out


def test_check_time_boxes_generation_and_tries_a_slow_level_once(capsys, plugin):
    start = time.monotonic()
    code, out = run(capsys, "check", "zt/slow", "--difficulties", "0", "1", "2", "3", "-n", "3",
                    "--generate-timeout", "1")
    # before: every seed of a slow level waited out the call deadline, twice (rg/jugs: more than 200 s)
    assert code == 1 and time.monotonic() - start < 60
    lines = [line.strip() for line in out.splitlines()]
    for d in (2, 3):
        assert (f"d={d}: too slow to generate (generate exceeded 1s; worker process group killed); "
                "not tried for other seeds") in lines
        assert sum(f"d={d}" in line for line in lines) == 1
    assert "FAIL  zt/slow" in out and "d=0" not in out and "d=1" not in out  # the fast levels pass


def test_check_all_prints_a_summary_table(capsys, plugin):
    code, out = run(
        capsys, "check", "--all", "--category", "testing", "--difficulties", "0", "-n", "1", "--timeout", "1"
    )
    assert code == 1
    table = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("zt/")}
    assert table["zt/echo"] == ["PASS", "1/1", "1/1", "1/1", "1/1"]
    assert table["zt/raise"][:2] == ["FAIL", "0/1"]  # its generate raises
    assert table["zt/crash"][0] == table["zt/hang"][0] == "FAIL"
    assert "ValueError: boom" not in out  # zt/raise fails in generation, before verification
    assert "RuntimeError: cannot generate seed 0" in out


def test_envs_help_imports_nothing_heavy():
    code = (
        "import sys, environments.commands, environments.registry\n"
        "heavy = {'torch', 'numpy', 'sympy', 'Gym', 'reasoning_gym', 'ray'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
