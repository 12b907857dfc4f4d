"""benchmarks/trainer_mfu.py's idle-gap attribution (``idle_attribution``), on hand-made timelines (µs)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "trainer_mfu.py"
_spec = importlib.util.spec_from_file_location("trainer_mfu", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_gaps_go_to_the_innermost_host_op_at_their_midpoint():
    # host: the step 0-100; inside it a forward 0-40 and a synchronising item 40-60, then a backward 60-100
    host = [("step", 0, 100), ("forward", 0, 40), ("aten::item", 40, 60), ("backward", 60, 100)]
    # kernels: 2-30 and 35-38 (overlapping launches merge), 62-90; idle: 0-2, 30-35, 38-62, 90-100
    kernels = [(2, 20), (10, 30), (35, 38), (62, 90)]
    got = bench.idle_attribution(kernels, host, min_gap_us=3)
    assert got["gaps"] == 4 and got["idle_s"] == pytest.approx((2 + 5 + 24 + 10) / 1e6)
    rows = {r["op"]: (r["idle_s"], r["gaps"]) for r in got["by_host_op"]}
    # 0-2 is under min_gap; 30-35 (mid 32.5) in the forward; 38-62 (mid 50) in the item; 90-100 in the backward
    assert rows == {"aten::item": (pytest.approx(24e-6), 1), "backward": (pytest.approx(10e-6), 1),
                    "forward": (pytest.approx(5e-6), 1)}
    assert [r["op"] for r in got["by_host_op"]] == ["aten::item", "backward", "forward"]


def test_a_gap_outside_every_host_op_and_an_empty_profile():
    got = bench.idle_attribution([(0, 10), (50, 60)], [("launch", 0, 5)], top=1)
    assert got["by_host_op"] == [{"op": "(no host op)", "idle_s": pytest.approx(40e-6), "gaps": 1}]
    assert bench.idle_attribution([], []) == {"idle_s": 0.0, "gaps": 0, "by_host_op": []}


def test_the_sweep_agrees_with_a_brute_force_scan():
    import random

    rng = random.Random(0)
    for _ in range(50):
        host = [(f"op{k}", s, s + rng.uniform(0, 40)) for k, s in enumerate(rng.uniform(0, 200) for _ in range(30))]
        kernels = [(s, s + rng.uniform(0, 8)) for s in (rng.uniform(0, 220) for _ in range(25))]
        got = bench.idle_attribution(kernels, host, min_gap_us=1, top=100)
        start = min([s for _, s, _ in host] + [s for s, _ in kernels])
        end = max([e for _, _, e in host] + [e for _, e in kernels])
        expect: dict[str, float] = {}
        at = start
        for s, e in sorted(kernels) + [(end, end)]:
            if s - at >= 1:
                mid = (at + s) / 2
                cover = [(e2 - s2, n) for n, s2, e2 in host if s2 <= mid <= e2]
                name = min(cover)[1] if cover else "(no host op)"
                expect[name] = expect.get(name, 0.0) + (s - at) / 1e6
            at = max(at, e)
        assert {r["op"]: r["idle_s"] for r in got["by_host_op"]} == pytest.approx(expect)
