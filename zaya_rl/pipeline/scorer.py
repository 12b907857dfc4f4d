"""Scorer actor: problem generation and verification off the trainer's path, in killable processes.

Every environment call (``generate``, ``verify``, reference responses) runs in the worker processes of
``environments.workers.VerifierPool``: a verifier that raises, hangs or crashes its process yields a
``Score`` with status ``error``/``timeout`` and a reason, and the run goes on. Nothing from an environment
runs in the trainer or in this actor's own process (RLVE generators touch global RNGs; two RLVE verifiers
``sympify`` model output, which executes code: research/environments.md §0.7).
"""

from __future__ import annotations

from typing import Any

from zaya_rl.config import RunConfig


class Scorer:
    """Ray actor (threaded: ``max_concurrency`` above the number of pool processes)."""

    def __init__(self, cfg_dict: dict[str, Any]) -> None:
        from environments.workers import VerifierPool

        cfg = RunConfig.model_validate(cfg_dict)
        # Preloading imports each mixture environment once per worker (RLVE takes ~5 s), outside any call's
        # verification deadline, and again after every respawn.
        preload = [(e.name, dict(e.kwargs)) for e in cfg.data.environments]
        self.pool = VerifierPool(
            num_processes=cfg.pipeline.scorer_processes, timeout_s=cfg.pipeline.verify_timeout_s,
            generate_timeout_s=cfg.pipeline.generate_timeout_s, preload=preload,
        )

    def make_problems(
        self, draws: list[dict[str, Any]], with_reference: bool = False
    ) -> list[dict[str, Any] | None]:
        """Generate problems for ``draws`` (``environments.sampler.Draw`` as dicts), as ``Problem`` dicts.

        A draw whose generation failed gives None (the pool logs why). ``with_reference`` adds
        ``reference_response`` (the SFT target; None where the environment has none).
        """
        problems = self.pool.generate_batch([(d["env"], d["kwargs"], d["seed"], d["difficulty"]) for d in draws])
        out = [None if isinstance(p, Exception) else p for p in problems]
        if with_reference:
            ok = [p for p in out if p is not None]
            refs = iter(self.pool.responses_batch(ok))
            return [None if p is None else {**p.to_dict(), "reference_response": _ref(next(refs))} for p in out]
        return [None if p is None else p.to_dict() for p in out]

    def make_problem(self, draw: dict[str, Any]) -> dict[str, Any]:
        """One problem; raises the pool's ``WorkerCallError`` (with the reason) when generation failed."""
        return self.pool.generate(draw["env"], draw["kwargs"], draw["seed"], draw["difficulty"]).to_dict()

    def score(self, problem: dict[str, Any], responses: list[str]) -> list[dict[str, Any]]:
        """Verify each response in parallel; ``Score.to_dict()`` per response, failures included."""
        from environments.base import Problem

        p = Problem.from_dict(problem)
        return [s.to_dict() for s in self.pool.verify_batch([(p, r) for r in responses])]


def _ref(responses: Any) -> str | None:
    return None if isinstance(responses, Exception) else responses.get("reference")
