"""zaya_rl: asynchronous (PipelineRL-style) RL post-training for MoE LLMs on Ray.

Subpackages: ``config`` (the validated config tree), ``algorithms`` and ``optim`` (pure maths), ``models``
(presets, tokenizer, router replay), ``rollout`` (engines), ``trainer`` (train step, checkpoints),
``pipeline`` (Ray actors and the orchestrator), ``curriculum``, ``logging``. Environments and verifiers
are the sibling top-level packages ``environments`` and ``rewards``.
"""

__version__ = "0.1.0"
