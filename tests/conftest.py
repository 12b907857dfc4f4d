"""Settings for every test: no hub access, one torch thread per test.

Tiny models gain nothing from intra-op threads, and OpenMP barriers stall badly when another process holds
the second core of a 2-core CI machine (measured: 8x slower decode steps); the thread count is restored
after each test.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
