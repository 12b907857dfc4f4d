"""Shared fixtures: tiny policies built locally (never a hub download)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and OpenMP barriers stall badly when another
    process holds the second core (measured: 8x slower decode steps). Restored after each test."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_zaya():
    from zaya_rl.models.policy import load_policy

    return load_policy("tiny-zaya", seed=0)


@pytest.fixture(scope="module")
def tiny_qwen():
    from zaya_rl.models.policy import load_policy

    return load_policy("tiny-qwen3moe", seed=0)
