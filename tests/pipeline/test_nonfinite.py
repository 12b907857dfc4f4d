"""A NaN loss skips the step (logged and booked); repeated NaNs stop the run with a clear message."""

from __future__ import annotations

from collections import deque

import pytest
import torch

from zaya_rl.config import config_from_dict
from zaya_rl.pipeline.accounting import Accounting
from zaya_rl.pipeline.orchestrator import Orchestrator
from zaya_rl.pipeline.trainer_actor import NonFiniteError, TrainerActor
from zaya_rl.trainer.batch import TrainSample


def _samples(n: int = 4) -> list[TrainSample]:
    return [TrainSample([1, 2, 3], [40 + i, 41], [-1.0, -2.0], advantage=1.0 if i % 2 else -1.0) for i in range(n)]


@pytest.fixture()
def trainer():
    cfg = config_from_dict({"trainer": {"max_consecutive_nan": 2}, "algorithm": {"router_replay": False}})
    return TrainerActor(cfg.model_dump(mode="json"))


def test_finite_step_advances_and_nan_step_is_skipped_without_touching_weights(trainer):
    m = trainer.train_step(_samples())
    assert m["train/skipped"] == 0.0 and trainer.step == 1
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with torch.no_grad():
        trainer.model.get_input_embeddings().weight[41].fill_(float("nan"))
    m = trainer.train_step(_samples())
    assert m["train/skipped"] == 1.0 and "non-finite" in m["train/skip_reason"] and trainer.step == 1
    after = trainer.model.state_dict()
    changed = [k for k in before if not torch.equal(before[k].nan_to_num(), after[k].nan_to_num())]
    assert changed == ["model.embed_tokens.weight"] or changed == ["model.embed_tokens.weight", "lm_head.weight"]


def test_consecutive_nan_steps_stop_the_run(trainer):
    with torch.no_grad():
        trainer.model.get_input_embeddings().weight.fill_(float("nan"))
    trainer.train_step(_samples())
    with pytest.raises(NonFiniteError, match="2 consecutive optimizer steps were skipped"):
        trainer.train_step(_samples())


class _Logger:
    def __init__(self) -> None:
        self.records: list = []

    def log(self, step, metrics, advance=1) -> None:
        self.records.append((step, metrics))


def test_orchestrator_books_a_skipped_step_as_dropped_and_does_not_advance():
    cfg = config_from_dict({})
    acc = Accounting()
    orch = Orchestrator.__new__(Orchestrator)  # only the bookkeeping of _on_train_done is under test
    orch.cfg, orch.acc, orch.logger, orch.step, orch.draws = cfg, acc, _Logger(), 3, {}
    orch.train_batch, orch.train_task, orch.trainer_busy_s, orch._train_t0 = [], None, 0.0, 0.0
    orch.ready, orch.pending_samples = deque(), 8
    acc.add_generated(8)

    class _G:
        spec = type("S", (), {"group_id": 1})()

    class _R:
        min_version = 3

    orch.train_batch = [(_G(), [_R()] * 8)]
    orch._on_train_done({"train/skipped": 1.0, "train/skip_reason": "non-finite loss nan"})
    assert orch.step == 3 and acc.dropped["nonfinite_step"] == 8 and orch.pending_samples == 0
    acc.check(pending=0)
    assert orch.logger.records[-1][1]["train/skip_reason"] == "non-finite loss nan"
