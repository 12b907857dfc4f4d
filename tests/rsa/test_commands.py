"""``zaya-rl rsa eval``: argument validation, light imports, and an end-to-end run on the tiny preset.

``python -m pytest tests/rsa/test_commands.py -q``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from zaya_rl.config import ConfigError
from zaya_rl.rsa import commands


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    commands.add_parser(parser.add_subparsers())
    return parser.parse_args(["rsa", "eval", *argv])


def test_defaults_are_the_zaya_settings(tmp_path):
    job = commands.job_from_args(parse("--env", "arithmetic", "--model", "tiny-zaya", "--out", str(tmp_path)))
    r = job.rsa
    assert (r.num_candidates, r.budget, r.tail_tokens, r.tails_per_prompt, r.aggregation_rounds) == (
        16, 40000, 4000, 4, 2)
    assert job.first_problem_seed is None and job.num_problems == 8


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--N", "2", "--C", "3"], "rsa.tails_per_prompt"),
        (["--tau", "0"], "rsa.tail_tokens"),
        (["-n", "0"], "num-problems"),
        (["--env-kwargs", "[1]"], "--env-kwargs"),
        (["--env-kwargs", "{bad"], "--env-kwargs"),
    ],
)
def test_bad_arguments_name_the_field(tmp_path, argv, match):
    with pytest.raises(ConfigError, match=match):
        commands.job_from_args(parse("--env", "arithmetic", "--model", "tiny-zaya", "--out", str(tmp_path), *argv))


def test_unknown_env_and_model(tmp_path):
    with pytest.raises(ConfigError, match="--env: unknown environment"):
        commands.job_from_args(parse("--env", "arithmetik", "--model", "tiny-zaya", "--out", str(tmp_path)))
    with pytest.raises(ConfigError, match="--model"):
        commands.job_from_args(parse("--env", "arithmetic", "--model", str(tmp_path), "--out", str(tmp_path)))


def test_command_module_imports_no_torch():
    code = "import sys, zaya_rl.rsa.commands, zaya_rl.rsa; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_end_to_end_tiny_preset(tmp_path, capsys):
    from zaya_rl.cli import main

    argv = ["rsa", "eval", "--env", "arithmetic", "--model", "tiny-qwen3moe", "-n", "2", "--N", "3", "--C", "2",
            "--tau", "8", "--budget", "8", "--rounds", "1", "--out", str(tmp_path)]
    assert main(argv) == 0
    assert "| 0 | initial |" in capsys.readouterr().out  # the table is printed
    data = json.loads((tmp_path / "rsa_eval.json").read_text())
    rows = data["rounds"]
    assert [r["round"] for r in rows] == [0, 1]
    assert all(0.0 <= r["mean_accuracy"] <= 1.0 and 0.0 <= r["majority_accuracy"] <= 1.0 for r in rows)
    assert rows[0]["mean_new_tokens"] <= 8 and rows[1]["mean_new_tokens"] <= 8
    assert rows[1]["max_prompt_tokens"] > rows[0]["max_prompt_tokens"]  # aggregation prompts hold tails
    assert data["settings"]["first_problem_seed"] == 2**31 and len(data["problems"]) == 2
    assert "| 1 | after aggregation 1 |" in (tmp_path / "rsa_eval.md").read_text()
