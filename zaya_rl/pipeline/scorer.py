"""Scorer actor: problem generation and verification off the trainer's path, in killable processes.

Every environment call (``generate``, ``verify``, ``reference_response``) runs in the worker processes of
``environments.workers.VerifierPool``: a verifier that raises, hangs or crashes its process yields a
``Score`` with status ``error``/``timeout`` and a reason, and the run goes on. Nothing from an environment
runs in the trainer or in this actor's own process (RLVE generators touch global RNGs; two RLVE verifiers
``sympify`` model output, which executes code: research/environments.md §0.7).
"""

from __future__ import annotations

from typing import Any

from zaya_rl.config import RunConfig


class Scorer:
    """Ray actor (threaded: ``max_concurrency`` = number of pool processes)."""

    def __init__(self, cfg_dict: dict[str, Any]) -> None:
        from environments.workers import VerifierPool

        cfg = RunConfig.model_validate(cfg_dict)
        self.env_kwargs = {e.name: dict(e.kwargs) for e in cfg.data.environments}
        self.pool = VerifierPool(
            num_processes=cfg.pipeline.scorer_processes, timeout_s=cfg.pipeline.verify_timeout_s
        )

    def make_problem(self, env: str, seed: int, difficulty: int, with_reference: bool = False) -> dict[str, Any]:
        """Generate one problem (as a dict); ``with_reference`` adds ``reference_response`` (SFT targets)."""
        return self.pool.generate(env, self.env_kwargs.get(env, {}), seed, difficulty, with_reference=with_reference)

    def make_problems(self, triples: list[tuple[str, int, int]], with_reference: bool = False) -> list[dict | None]:
        """Generate many problems; a failing one becomes None (logged by the pool) instead of failing all."""
        out: list[dict | None] = []
        for env, seed, difficulty in triples:
            try:
                out.append(self.make_problem(env, seed, difficulty, with_reference=with_reference))
            except Exception:  # noqa: BLE001 - one broken problem must not cost the batch
                out.append(None)
        return out

    def score(self, problem: dict[str, Any], responses: list[str]) -> list[dict[str, Any]]:
        """Verify each response; returns ``Score.to_dict()`` per response, failures included."""
        return [s.to_dict() for s in self.pool.verify_many(problem, responses, self.env_kwargs.get(problem["env"], {}))]

    def close(self) -> None:
        self.pool.close()
