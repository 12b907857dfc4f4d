"""RLVE-Gym adapter: the 400 environments of PyPI ``rlve-gym`` as ``rlve/<Identifier>``.

Source: arXiv 2511.07317 (RLVE); ``Zhiyuan-Zeng/RLVE:Gym``; research/environments.md §1.

* **Difficulty** d is RLVE's: the number of ``update()`` calls on a fresh parameter controller. The
  controller's level-d list holds one or more parameter dicts; one is drawn with ``random.Random(seed)``
  (RLVE draws it with the global ``random``). Levels are unbounded (``max_difficulty = None``).
* **Generation** replicates ``VerifiableEnvironment.generator`` without its thread-based timeout (which
  raises but leaves the computation running): seed RLVE's global RNGs, call ``_generate``. The global
  ``random``/NumPy/torch RNG states and ``PYTHONHASHSEED`` are restored afterwards (``environments.
  global_state``). A generation that raises (RLVE's ``generator`` would return False) is retried with
  derived seeds ``(seed + k·_RETRY_STRIDE) mod 2^32`` for k = 1..``max_generation_attempts``−1; the seed RLVE actually
  used is stored in the problem. Without the 10 s thread timeout a slow level simply takes longer
  (``CardColoringCounting`` at d=6, seed 7: 12 s, which RLVE's ``generator`` reports as a failure); the
  pool's generation deadline bounds it (``pipeline.generate_timeout_s``, 10 s like RLVE's), and an adaptive
  ladder stops below a level that exceeds it (``environments.difficulty``).
* **Prompt**: RLVE's prompt plus one line naming the answer format: ``\\boxed{}`` (default; RLVE's chat
  runs) or ``<answer></answer>`` (RLVE's TinyZero runs). RLVE's chat runs add no such line and rely on
  R1-style models boxing by habit; we add it so any instruction-following model knows the format.
* **Reward**: RLVE scores lie in [−1, 1] (−1 no parsable answer, −0.5 invalid, [0, 1] graded). ``reward``
  chooses the map to [0, 1]: ``binary`` (default) = RLVE's ``accuracy`` (score ≥ passing threshold);
  ``shifted`` = (r + 1) / 2; ``clip`` = max(r, 0). ``accuracy`` is always RLVE's binary accuracy (what the
  adaptive-difficulty controller counts). A scorer exception scores −1 as in RLVE, with the reason kept.
* **Reference answers**: 334 of 400 environments store ``reference_answer``; the other 66 store only the
  optimal objective (``gold_answer``) and verify by checking the submitted solution, so they have no
  reference response (``envs check`` reports them as ``no-ref``). ``PolyaModel``'s scorer parses the raw
  output instead of the text between the answer markers (upstream bug), so its own reference never
  verifies; we pass it the extracted answer instead (``_SCORES_RAW_OUTPUT``).

**Safety.** This adapter is plain code: RLVE generators seed global RNGs, ``Integral``/``Differentiate``
call ``sympy.sympify`` on model output (which evaluates Python), and ``Countdown`` ``eval``s arithmetic that
can be ``9**9**9**9``. Run generation and verification through ``environments.workers.VerifierPool``,
whose killable worker processes keep a hang or crash out of the caller (the pipeline does). The pool does
not sandbox: answers to the two ``sympify`` scorers are therefore screened first (arithmetic over a small
allow-list of symbols and functions, ``_safe_expression``); anything else scores 0 without being evaluated.

Requires ``rlve-gym`` (import name ``Gym``) plus ``numpy``, ``networkx``, ``sympy`` and ``torch`` (it calls
``torch.manual_seed``), which ``rlve-gym`` does not declare. Without it, ``provide`` raises
``EnvironmentUnavailable`` and the ``rlve/`` names are absent from ``zaya-rl envs list`` (which prints why).
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import random
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from environments import codec
from environments.base import Environment, Problem, Score
from environments.global_state import isolated_global_state
from environments.registry import EnvironmentUnavailable

RewardMap = Literal["binary", "shifted", "clip"]
AnswerFormat = Literal["boxed", "answer_tags"]

_REWARD_MAPS = {
    "binary": lambda score, accuracy: float(accuracy),
    "shifted": lambda score, accuracy: (score + 1.0) / 2.0,
    "clip": lambda score, accuracy: max(score, 0.0),
}
_MARKERS = {"boxed": ("\\boxed{", "}"), "answer_tags": ("<answer>", "</answer>")}
_INSTRUCTIONS = {
    "boxed": "Put your final answer within \\boxed{}.",
    "answer_tags": "Put your final answer between <answer> and </answer>.",
}
#: RLVE's verifier tolerance around its thresholds (Gym/environment.py).
_EPS = 1e-6
#: Retry seeds stay below 2^32 (NumPy's seed limit); a large odd stride spreads them.
_RETRY_STRIDE = 0x9E3779B1
#: Environments whose ``scorer`` parses the raw output instead of calling ``processor`` (upstream bug).
_SCORES_RAW_OUTPUT = frozenset({"PolyaModel"})
INSTALL_HINT = "pip install rlve-gym numpy networkx sympy"


class RLVEEnvironment(Environment):
    """One RLVE-Gym environment; ``provide`` makes a subclass per identifier.

    Args:
        reward: map of RLVE's [−1, 1] score to [0, 1]: ``binary`` (default), ``shifted`` or ``clip``.
        answer_format: ``boxed`` (``\\boxed{...}``, default) or ``answer_tags`` (``<answer>...</answer>``).
        max_generation_attempts: seeds tried before generation gives up.
        **rlve_kwargs: passed to the RLVE environment's constructor (e.g. ``rewarding_beta``).
    """

    category = "rlve"
    source = "rlve-gym"
    min_difficulty = 0
    max_difficulty = None
    identifier: ClassVar[str]

    def __init__(
        self,
        reward: RewardMap = "binary",
        answer_format: AnswerFormat = "boxed",
        max_generation_attempts: int = 5,
        **rlve_kwargs: Any,
    ) -> None:
        if reward not in _REWARD_MAPS:
            raise ValueError(f"{self.name}: reward must be one of {sorted(_REWARD_MAPS)}, got {reward!r}")
        if answer_format not in _MARKERS:
            raise ValueError(
                f"{self.name}: answer_format must be one of {sorted(_MARKERS)}, got {answer_format!r}"
            )
        if max_generation_attempts < 1:
            raise ValueError(f"{self.name}: max_generation_attempts must be >= 1")
        from Gym.environments import identifier2environment
        from Gym.parameter_controllers import identifier2controller

        self._env_cls = identifier2environment[self.identifier]
        self._controller_cls = identifier2controller[self.identifier]
        self.reward, self.answer_format = reward, answer_format
        self.max_generation_attempts, self.rlve_kwargs = max_generation_attempts, rlve_kwargs

    def _new(self) -> Any:
        return self._env_cls(answer_markers=_MARKERS[self.answer_format], **self.rlve_kwargs)

    def parameter(self, seed: int, difficulty: int) -> dict[str, Any]:
        """The controller's parameter dict for (seed, difficulty)."""
        controller = self._controller_cls()
        for _ in range(difficulty):
            controller.update()
        return copy.deepcopy(random.Random(seed).choice(controller.get_parameter_list()))

    def generate(self, seed: int, difficulty: int) -> Problem:
        d = self.check_difficulty(difficulty)
        parameter, errors = self.parameter(seed, d), []
        for attempt in range(self.max_generation_attempts):
            rlve_seed = (seed + attempt * _RETRY_STRIDE) % 2**32
            env = self._new()
            try:
                _generate(env, rlve_seed, parameter)
            except Exception as e:  # RLVE's generator() swallows these too and asks for another seed
                errors.append(f"seed {rlve_seed}: {type(e).__name__}: {e}")
                continue
            prompt = f"{env.prompt_generator()}\n\n{_INSTRUCTIONS[self.answer_format]}"
            reference = env.parameter.get("reference_answer")
            return Problem(
                env=self.name,
                seed=seed,
                difficulty=d,
                messages=[{"role": "user", "content": prompt}],
                answer=None if reference is None else str(reference),
                metadata={"rlve_config": codec.encode(env.get_config())},
            )
        raise RuntimeError(
            f"{self.name}: generation failed at difficulty {d} for {len(errors)} seeds: {errors[-1]}"
        )

    def verify(self, problem: Problem, response: str) -> Score:
        env = self._new()
        env.set_config(codec.decode(problem.metadata["rlve_config"]))
        extracted = _last_marked(response, *_MARKERS[self.answer_format])
        if self.identifier in _SYMPIFY_SCORERS and not _safe_expression(extracted or ""):
            return Score(reward=0.0, accuracy=0.0, format_ok=False, extracted=extracted,
                         reason="answer rejected before sympify: only arithmetic on known symbols is allowed")
        scored = (extracted or "") if self.identifier in _SCORES_RAW_OUTPUT else response
        reason = ""
        try:
            score = float(env.scorer(scored))
        except Exception as e:  # RLVE's verifier() maps any scorer exception to -1 (wrong format)
            score, reason = -1.0, f"RLVE scorer raised {type(e).__name__}: {e}"
        if not -1.0 <= score <= 1.0:
            raise ValueError(f"{self.name}: RLVE score {score} outside [-1, 1]")
        accuracy = float(score >= env.passing_reward_threshold - _EPS)
        reward = min(max(_REWARD_MAPS[self.reward](score, accuracy), 0.0), 1.0)
        reason = reason or f"rlve_score={score:.4g}"
        return Score(
            reward=reward,
            accuracy=accuracy,
            format_ok=score >= -1.0 + _EPS,
            extracted=extracted,
            reason=reason,
        )

    def reference_response(self, problem: Problem) -> str:
        if problem.answer is None:
            raise NotImplementedError(f"{self.name}: RLVE stores no reference solution, only the optimum")
        start, end = _MARKERS[self.answer_format]
        return f"{start}{problem.answer}{end}"


#: RLVE scorers that pass the model's answer to ``sympy.sympify``, which evaluates Python: the answer is
#: screened first (defence in depth on top of the worker process), so ``__import__('os')...`` never runs.
_SYMPIFY_SCORERS = {"Integral", "Differentiate"}
_SAFE_CHARS = re.compile(r"^[0-9A-Za-z+\-*/^().,\s]*$")
_SAFE_NAMES = {
    "x", "y", "z", "t", "e", "E", "pi", "I", "oo", "sin", "cos", "tan", "cot", "sec", "csc", "asin", "acos",
    "atan", "sinh", "cosh", "tanh", "exp", "log", "ln", "sqrt", "Abs", "abs",
}  # fmt: skip


def _safe_expression(expr: str) -> bool:
    """Whether ``expr`` is plain arithmetic over known symbols and functions (no attributes, no dunders)."""
    return bool(_SAFE_CHARS.match(expr)) and all(n in _SAFE_NAMES for n in re.findall(r"[A-Za-z_]+", expr))


def _last_marked(text: str, start: str, end: str) -> str | None:
    """RLVE's extraction: the last non-greedy match between the markers (so ``\\boxed{a{b}}`` → ``a{b``)."""
    matches = re.findall(re.escape(start) + r"(.*?)" + re.escape(end), text, re.DOTALL)
    return matches[-1] if matches else None


def _generate(env: Any, seed: int, parameter: dict[str, Any]) -> None:
    """``VerifiableEnvironment.generator`` minus its non-killing thread timeout, with global RNGs restored."""
    from Gym.environment import manual_seed

    with isolated_global_state():
        env.seed, env.parameter = seed, copy.deepcopy(parameter)
        manual_seed(seed)
        env._generate()
    if env.parameter is None:
        raise RuntimeError("RLVE _generate cleared its parameter")


def identifiers() -> list[str]:
    """The RLVE identifiers, read from ``Gym/environments/__init__.py`` without importing it.

    Importing RLVE takes ~5 s (400 modules and torch); listing names must not, and the trainer process
    never needs RLVE code at all.
    """
    spec = importlib.util.find_spec("Gym")
    if spec is None or not spec.submodule_search_locations:
        raise EnvironmentUnavailable(f"rlve-gym is not installed ({INSTALL_HINT})")
    init = Path(next(iter(spec.submodule_search_locations))) / "environments" / "__init__.py"
    try:
        tree = ast.parse(init.read_text())
    except OSError as e:
        raise EnvironmentUnavailable(
            f"the installed 'Gym' package is not rlve-gym ({INSTALL_HINT}): {e}"
        ) from e
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", "") == "identifier2environment" for t in node.targets
        ):
            return [k.value for k in node.value.keys]
    raise EnvironmentUnavailable(
        f"the installed 'Gym' package has no identifier2environment ({INSTALL_HINT})"
    )


def provide() -> list[type[RLVEEnvironment]]:
    """Entry-point provider: one ``RLVEEnvironment`` subclass per RLVE identifier."""
    return [
        type(
            f"RLVE_{ident}",
            (RLVEEnvironment,),
            {"name": f"rlve/{ident}", "identifier": ident, "__module__": __name__},
        )
        for ident in identifiers()
    ]
