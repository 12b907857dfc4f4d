"""Fixtures for the RSA tests: the byte tokenizer and a problem. Run ``python -m pytest tests/rsa -q``."""

from __future__ import annotations

import os

import pytest

from environments.base import Problem

os.environ.setdefault("HF_HUB_OFFLINE", "1")

@pytest.fixture(scope="session")
def tok():
    from zaya_rl.models.tokenizer import build_byte_tokenizer

    return build_byte_tokenizer()


@pytest.fixture
def problem() -> Problem:
    return Problem(env="stub", seed=3, difficulty=0, answer="42",
                   messages=[{"role": "system", "content": "Be brief."},
                             {"role": "user", "content": "What is 6*7? Reply ANSWER=<n>."}])
