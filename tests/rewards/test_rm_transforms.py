"""RM score transforms and the behavioural mix: python -m pytest tests/rewards/test_rm_transforms.py -q

Expected values are computed by hand in the comments.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from rewards.rm_transforms import TRANSFORMS, TransformConfig, apply_transform, combine_behavioral


def test_sigmoid_values():
    out = apply_transform([0.0, 2.0, -2.0], None, TransformConfig("sigmoid", temperature=2.0))
    # σ(0) = 0.5, σ(1) = 1/(1+e^-1), σ(-1) = 1/(1+e)
    np.testing.assert_allclose(out, [0.5, 1 / (1 + math.exp(-1)), 1 / (1 + math.e)], rtol=1e-12)
    assert apply_transform([3.0], None, TransformConfig("sigmoid", shift=3.0))[0] == 0.5


def test_sigmoid_extremes_do_not_overflow():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = apply_transform([1e6, -1e6], None, TransformConfig())
    np.testing.assert_array_equal(out, [1.0, 0.0])


def test_group_rank_with_ties():
    groups = ["a", "a", "a", "b", "b", "c"]
    out = apply_transform([3.0, 1.0, 3.0, 5.0, 2.0, 9.0], groups, TransformConfig("group_rank"))
    # group a: 1 has rank 1 -> 0; the two 3s share ranks 2,3 -> 2.5 -> (2.5-1)/2 = 0.75
    # group b: 2 -> 0, 5 -> 1; group c has one sample -> 0.5
    np.testing.assert_allclose(out, [0.75, 0.0, 0.75, 1.0, 0.0, 0.5])


def test_group_rank_is_invariant_to_monotone_rescaling():
    s = np.array([0.3, -1.0, 2.0, 0.1])
    g = [0, 0, 0, 0]
    a = apply_transform(s, g, TransformConfig("group_rank"))
    b = apply_transform(np.exp(3 * s) + 7, g, TransformConfig("group_rank"))
    np.testing.assert_allclose(a, b)
    np.testing.assert_allclose(a, [2 / 3, 0.0, 1.0, 1 / 3])


def test_group_minmax():
    out = apply_transform([1.0, 3.0, 2.0, 4.0, 4.0], [0, 0, 0, 1, 1], TransformConfig("group_minmax"))
    np.testing.assert_allclose(out, [0.0, 1.0, 0.5, 0.5, 0.5])  # group 1 is constant -> 0.5


def test_registry_and_validation():
    assert set(TRANSFORMS) == {"sigmoid", "group_rank", "group_minmax"}
    with pytest.raises(ValueError, match="TransformConfig.name"):
        TransformConfig("softmax")
    with pytest.raises(ValueError, match="temperature"):
        TransformConfig(temperature=0.0)
    with pytest.raises(ValueError, match="finite"):
        apply_transform([float("nan")], None, TransformConfig())
    with pytest.raises(ValueError, match="groups"):
        apply_transform([1.0, 2.0], [0], TransformConfig("group_rank"))


def test_combine_behavioral():
    out = combine_behavioral([0.2, 0.8], [1.0, None], rm_weight=1.0, if_weight=3.0)
    # (1*0.2 + 3*1.0)/4 = 0.8; the second has no IF constraints -> RM alone = 0.8
    np.testing.assert_allclose(out, [0.8, 0.8])
    np.testing.assert_allclose(combine_behavioral([0.4], [0.0], rm_weight=0.0, if_weight=1.0), [0.0])


def test_combine_behavioral_rejects_bad_weights():
    with pytest.raises(ValueError, match="weights"):
        combine_behavioral([0.5], [0.5], rm_weight=0.0, if_weight=0.0)
    with pytest.raises(ValueError, match="rm_weight is 0"):
        combine_behavioral([0.5], [None], rm_weight=0.0, if_weight=1.0)
    with pytest.raises(ValueError, match="IF rewards"):
        combine_behavioral([0.5, 0.1], [0.5], rm_weight=1.0, if_weight=1.0)
