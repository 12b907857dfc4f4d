"""Verifiers and reward functions; every one runs in verifier worker processes, never in the trainer.

- ``rewards.math``: answer extraction and math-verify equivalence.
- ``rewards.sandbox`` (+ ``rewards.isolation``): run untrusted Python under OS-level limits.
- ``rewards.code``: code extraction and stdin/stdout or self-checking test scoring through the sandbox.
- ``rewards.ifeval``: lm-eval's IFEval instruction checkers, loaded offline.
- ``rewards.reward_model`` (+ ``rewards.rm_transforms``): sequence-classification reward models and the
  score transforms / behavioural mix.

Submodules import their heavy dependencies lazily; importing this package imports nothing.
"""
