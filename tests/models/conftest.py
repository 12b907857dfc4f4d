"""Tiny policies built locally (never a hub download), shared by the model tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def tiny_zaya():
    from zaya_rl.models.policy import load_policy

    return load_policy("tiny-zaya", seed=0)


@pytest.fixture(scope="module")
def tiny_qwen():
    from zaya_rl.models.policy import load_policy

    return load_policy("tiny-qwen3moe", seed=0)
