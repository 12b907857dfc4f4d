"""Bucket planning against hand-computed plans.

python -m pytest tests/weights/test_buckets.py -q
"""

import pytest

from zaya_rl.weights.buckets import TensorMeta, plan_buckets, total_bytes


def _m(name, dtype, *shape):
    return TensorMeta(name, dtype, tuple(shape))


def test_nbytes_by_dtype():
    assert _m("a", "bfloat16", 3, 4).nbytes == 24
    assert _m("b", "float32", 5).nbytes == 20
    assert _m("c", "float32").nbytes == 4  # a scalar is one element
    with pytest.raises(ValueError, match="unsupported dtype 'complex64'"):
        _ = _m("d", "complex64", 2).nbytes


def test_greedy_in_order_with_oversized_tensor_alone():
    # sizes 40, 40, 30, 120, 10, 10 bytes; capacity 100
    metas = [_m("a", "float32", 10), _m("b", "float32", 10), _m("c", "bfloat16", 15),
             _m("big", "float32", 30), _m("d", "bfloat16", 5), _m("e", "bfloat16", 5)]
    plan = plan_buckets(metas, 100)
    assert [[m.name for m in b] for b in plan] == [["a", "b"], ["c"], ["big"], ["d", "e"]]
    # 40 + 40 = 80, +30 would be 110 > 100 -> new bucket; 30 + 120 > 100 -> "big" alone although it
    # exceeds the capacity; 120 + 10 > 100 -> new bucket for d, e
    assert sum(len(b) for b in plan) == len(metas) and total_bytes(metas) == 250


def test_one_bucket_when_everything_fits_and_edge_cases():
    metas = [_m(f"t{i}", "float32", 4) for i in range(5)]  # 5 x 16 bytes
    assert len(plan_buckets(metas, 80)) == 1 and len(plan_buckets(metas, 79)) == 2
    assert plan_buckets([], 10) == []
    assert [len(b) for b in plan_buckets(metas, 1)] == [1] * 5  # each tensor alone when none fits
    with pytest.raises(ValueError, match="bucket_bytes must be > 0"):
        plan_buckets(metas, 0)
    with pytest.raises(ValueError, match="duplicate tensor names"):
        plan_buckets([metas[0], metas[0]], 100)
