"""The progress bar: step metrics after each optimizer step, counters pinned between steps.

Run ``python -m pytest tests/logging/test_progress_bar.py -q``.
"""

from __future__ import annotations

from zaya_rl.config.schema import LoggingConfig
from zaya_rl.logging.metrics import MetricsLogger


def test_error_counts_show_between_steps_as_integers(tmp_path, capsys):
    logger = MetricsLogger(tmp_path, LoggingConfig(wandb_mode="disabled"), total_steps=4, config={})
    try:
        logger.show(err=8)  # no step yet: a run whose verifier always fails shows its errors at rl 0%
        first = capsys.readouterr().err
        logger.log(1, {"rollout/reward": 0.25, "health/env_errors": 9.0})
        logger.show(err=9, warn="reward_collapse")
        logger.show(warn=None)
        last = capsys.readouterr().err.split("\r")[-1]
    finally:
        logger.close()
    assert "0/4" in first and "err=8]" in first
    assert "1/4" in last and "reward=0.25" in last and "err=9" in last and "warn" not in last
    assert "err=8.0" not in first + last
