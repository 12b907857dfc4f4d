"""Staged curricula (DESIGN.md §5): stages as config, a runner that chains them through checkpoints.

- ``stages``: each stage's complete ``RunConfig`` from the base config and the stage's overrides
  (``stage_configs``), its folder and starting weights; load-time validation (``validate_stages``).
- ``layers``: ``zaya-rl train BASE.yaml MORE.yaml ...``: YAML files deep-merged before validation.
- ``state``: ``curriculum.json`` (which stages are done, their results), stage-boundary records in the
  run's ``metrics.jsonl``, the curriculum summary.
- ``runner``: ``run_curriculum`` / ``resume_curriculum``, what ``zaya-rl train`` / ``resume`` call for a
  config with ``stages``.

Importing this package imports no torch or ray (the runner imports them when it runs).
"""

from zaya_rl.curriculum.stages import (
    deep_merge,
    final_model_dir,
    stage_configs,
    stage_folder,
    validate_stages,
)

__all__ = ["deep_merge", "final_model_dir", "stage_configs", "stage_folder", "validate_stages"]
