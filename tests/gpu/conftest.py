"""GPU tests: skipped without CUDA (CI is CPU-only); vLLM / DeepSpeed tests also skip when not importable.

On the GPU machine: ``python -m pytest tests/gpu -x -q`` (``benchmarks/gpu/run_all.sh`` does it first).
"""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_USE_FLASHINFER_SAMPLER", "0")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
# torch.cuda.is_available() counts devices, which marks this process's forks as unable to use CUDA, but does
# not count as "CUDA initialised" for vLLM, which then forks AsyncLLM's engine core: alone, the vLLM tests failed
# with "Cannot re-initialize CUDA in forked subprocess" (H100, 2026-12-07); after the DeepSpeed tests had
# initialised CUDA, vLLM chose spawn by itself. On a GPU machine, spawn always (CPU runs keep vLLM's default).
if torch.cuda.is_available():
    os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.gpu)
            if not torch.cuda.is_available():
                item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
