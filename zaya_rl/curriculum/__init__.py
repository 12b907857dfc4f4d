"""Staged curricula (DESIGN.md §5): a runner that chains stages through checkpoints.

The stages themselves are config: ``zaya_rl.config.stages`` (``StageConfig``, how stage k's complete
``RunConfig`` is merged) and ``RunConfig.stage_configs()``, validated when the config loads.

- ``layers``: ``zaya-rl train BASE.yaml MORE.yaml ...``: YAML files deep-merged before validation.
- ``state``: ``curriculum.json`` (which stages are done, their results), stage-boundary records in the
  run's ``metrics.jsonl``, the curriculum summary.
- ``runner``: ``run_curriculum`` / ``resume_curriculum``, what ``zaya-rl train`` / ``resume`` call for a
  config with ``stages``.

Importing this package imports no torch or ray (the runner imports them when it runs).
"""
