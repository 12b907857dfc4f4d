"""Optimizers: momentum-free Muon (2-D matrices and 3-D expert stacks) and its AdamW companion.

``build_optimizer(model, cfg.optim)`` returns one ``MuonAdamW`` and the parameter partition
(``describe_partition`` prints it). Pure tensor code: no Ray, no I/O.
"""

from zaya_rl.optim.build import build_optimizer
from zaya_rl.optim.muon import Muon, newton_schulz
from zaya_rl.optim.muon_adamw import MuonAdamW
from zaya_rl.optim.partition import ParamGroupSpec, describe_partition, partition_parameters

__all__ = [
    "Muon",
    "MuonAdamW",
    "ParamGroupSpec",
    "build_optimizer",
    "describe_partition",
    "newton_schulz",
    "partition_parameters",
]
