"""zaya_rl environments: the contract, the entry-point registry and the built-in environments.

    from environments import get_environment, list_environments
    env = get_environment("arithmetic")
    problem = env.generate(seed=0, difficulty=2)
    score = env.verify(problem, "\\boxed{42}")

In the pipeline, generation and verification run in killable worker processes
(``environments.workers.VerifierPool``), never in the trainer. The adaptive-difficulty controller is
``environments.difficulty``, the mixture sampler ``environments.sampler``.
"""

from environments.base import Environment, Problem, Score
from environments.registry import (
    EnvironmentNotFound,
    EnvironmentUnavailable,
    EnvSpec,
    get_environment,
    get_spec,
    list_environments,
    registry_problems,
)

__all__ = [
    "Environment",
    "EnvironmentNotFound",
    "EnvironmentUnavailable",
    "EnvSpec",
    "Problem",
    "Score",
    "get_environment",
    "get_spec",
    "list_environments",
    "registry_problems",
]
