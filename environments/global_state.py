"""Isolate third-party generators and scorers that read or write process-global state.

RLVE's generators seed and draw from the global ``random``/NumPy/torch RNGs; two reasoning-gym tasks
(``codeio``, ``list_functions``) draw from the global ``random`` and NumPy RNGs without seeding them, so
their problems differ between calls with the same seed; reasoning-gym's ``decimal_arithmetic`` sets the
global ``decimal`` precision, which changes what ``decimal_chain_sum`` generates next in the same
process. ``isolated_global_state(seed)`` seeds the global RNGs (when ``seed`` is given) and runs the
block in a fresh default ``decimal`` context, then restores every RNG state, the decimal context and
``PYTHONHASHSEED`` (which RLVE sets). torch's state is saved only if torch is already imported.
"""

from __future__ import annotations

import contextlib
import decimal
import os
import random
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def isolated_global_state(seed: int | None = None) -> Iterator[None]:
    """Seed (optionally) the global RNGs and use a default decimal context inside the block; restore after."""
    try:
        import numpy as np
    except ImportError:  # numpy is optional for environments that do not use it
        np = None
    torch = sys.modules.get("torch")
    py_state = random.getstate()
    np_state = np.random.get_state() if np is not None else None
    torch_state = torch.random.get_rng_state() if torch is not None else None
    hash_seed = os.environ.get("PYTHONHASHSEED")
    if seed is not None:
        random.seed(seed)
        if np is not None:
            np.random.seed(seed % 2**32)
    try:
        with decimal.localcontext(decimal.Context()):
            yield
    finally:
        random.setstate(py_state)
        if np is not None:
            np.random.set_state(np_state)
        if torch_state is not None:
            torch.random.set_rng_state(torch_state)
        if hash_seed is None:
            os.environ.pop("PYTHONHASHSEED", None)
        else:
            os.environ["PYTHONHASHSEED"] = hash_seed
