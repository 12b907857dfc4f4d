"""The trainer warns when two published weight versions cannot fit Ray's object store (each would spill to
disk, as SmolLM2's 0.54 GB float32 versions did against the 512 MB default on an H100)."""

from __future__ import annotations

import logging

import ray

from zaya_rl.pipeline.trainer_actor import _warn_if_store_small


def test_warns_only_when_two_versions_exceed_the_store(monkeypatch, caplog):
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"object_store_memory": 512 * 2**20})
    with caplog.at_level(logging.WARNING, logger="zaya_rl.pipeline.trainer_actor"):
        _warn_if_store_small(538_000_000)   # SmolLM2 float32
        assert "ray.object_store_mb" in caplog.text
        caplog.clear()
        _warn_if_store_small(200_000_000)   # two fit in 537 MB
        assert caplog.text == ""
