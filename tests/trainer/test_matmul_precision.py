"""``trainer.matmul_precision`` reaches the trainer process (TF32 products for a float32 trainer on a GPU).

Run: python -m pytest tests/trainer/test_matmul_precision.py -q
"""

import pytest
import torch

from zaya_rl.config import ConfigError, config_from_dict


@pytest.mark.parametrize("precision", ["high", "medium"])
def test_the_trainer_actor_sets_the_float32_matmul_precision(precision):
    from zaya_rl.pipeline.trainer_actor import TrainerActor

    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        TrainerActor(config_from_dict({"trainer": {"matmul_precision": precision}}).model_dump(mode="json"))
        assert torch.get_float32_matmul_precision() == precision
    finally:
        torch.set_float32_matmul_precision(before)


def test_an_unknown_precision_names_the_field():
    with pytest.raises(ConfigError, match="matmul_precision"):
        config_from_dict({"trainer": {"matmul_precision": "tf32"}})
