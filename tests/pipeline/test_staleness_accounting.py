"""Admission control, lag, and the sample books (pure parts of the pipeline)."""

import pytest

from zaya_rl.pipeline.accounting import Accounting, AccountingError
from zaya_rl.pipeline.staleness import admissible_count, admission_open, is_stale, lag


def test_sync_schedule_admits_one_batch_per_published_version():
    # max_lag=0: version 0 admits exactly groups_per_step groups, none more until version 1 is published.
    assert admissible_count(active_groups=0, published_version=0, groups_per_step=4, max_lag=0) == 4
    assert not admission_open(active_groups=4, published_version=0, groups_per_step=4, max_lag=0)
    # step 1 trained (4 groups consumed) but not yet published: still closed.
    assert not admission_open(active_groups=4, published_version=0, groups_per_step=4, max_lag=0)
    assert admissible_count(active_groups=4, published_version=1, groups_per_step=4, max_lag=0) == 4


def test_async_lag_one_runs_one_batch_ahead():
    assert admissible_count(active_groups=0, published_version=0, groups_per_step=4, max_lag=1) == 8
    # Simulate: groups n=0..7 admitted at version 0; group n is trained at step n // 4 with trainer version n // 4.
    for n in range(8):
        assert lag(n // 4, 0) <= 1


def test_lag_and_staleness():
    assert lag(5, 3) == 2
    assert is_stale(5, 3, max_lag=1) and not is_stale(5, 4, max_lag=1)


def test_accounting_balances_and_detects_loss():
    acc = Accounting()
    acc.add_generated(16)
    acc.add_trained(8)
    acc.add_dropped("stale", 4)
    acc.check(pending=4)
    with pytest.raises(AccountingError, match="does not balance"):
        acc.check(pending=3)
    with pytest.raises(ValueError, match="unknown drop reason"):
        acc.add_dropped("lost", 1)
    again = Accounting.from_state_dict(acc.state_dict())
    assert again == acc and again.metrics()["samples/dropped/stale"] == 4.0
