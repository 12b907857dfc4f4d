"""reasoning-gym adapter: its procedural tasks as ``rg/<task>``.

Source: PyPI ``reasoning-gym`` (open-thought/reasoning-gym, Apache-2.0; arXiv 2505.24760);
research/environments.md §2.2.

* **Difficulty.** A task with a curriculum has attributes with discrete levels (``basic_arithmetic``:
  ``num_terms`` [2..6], ``num_digits`` [1..4]). Our level d is reasoning-gym's *global* level:
  ``set_global_level(d)`` puts every attribute at min(d, its top level), and the configuration is read in
  ``UPPER_BOUND`` mode, so level d means "the level-d values" (an interval attribute spans levels d and
  d + 1) rather than reasoning-gym's default ``INCLUSIVE`` "everything up to d"; mixing lower levels is the
  adaptive-difficulty window's job. ``max_difficulty`` = the largest attribute's top level. Tasks without a
  curriculum have the single level 0 with the dataset's default configuration.
  Some upstream curricula produce configs their own ``validate()`` rejects at some levels (0.1.25:
  ``caesar_cipher`` 2-3, ``modulo_grid`` 1, ``rubiks_cube`` 4, ``knight_swap`` 0): ``max_difficulty`` stops
  below the first invalid level, and a task with no valid level is not registered.
* **Generation.** ``DatasetCls(config with seed=<seed>, size=1)[0]`` inside
  ``environments.global_state.isolated_global_state(seed)``: the global ``random``/NumPy RNGs are seeded
  from the seed (``codeio`` and ``list_functions`` draw from them unseeded) and the ``decimal`` context
  is a fresh default one (``decimal_arithmetic`` sets the global precision, which changed what
  ``decimal_chain_sum`` generated next in the same worker); everything is restored afterwards. A task
  that raises is retried with derived seeds; if all fail, ``generate`` raises (0.1.25: ``letter_jumble``
  fails at every seed for d >= 2). ``word_ladder``'s reference ladder depends on ``str`` hashing; the
  pool gives every worker ``PYTHONHASHSEED=0``, so workers agree with each other. Some tasks take
  seconds at high levels (``bf``, ``futoshiki``) or more than 20 s (``jugs``, ``countdown`` and
  ``puzzle24`` at d = 3; ``jugs`` at d = 2 sometimes), which is why generation runs in ``VerifierPool``
  workers. Levels that cannot generate within the generation bound are not offered (``SLOW_FROM``:
  ``max_difficulty`` stops below them, and ``zaya-rl envs list`` notes it); ``sokoban`` is slow at every
  level and not registered.
* **Prompt and answer format** (``answer_format``). ``tags`` (default): the question plus "Give your final
  answer between <answer> and </answer> tags." (reasoning-gym's own system prompts ask for the same tags;
  we put it in the user message so no system prompt is needed); the answer is the last
  ``<answer>...</answer>`` content, else the last ``\\boxed{}``. ``number``, for tasks whose answer is one
  number and models that never write tags (SmolLM2-135M-Instruct: 0% of its answers, research/
  vllm_cpu_probe.md §5): the question plus ``NUMBER_INSTRUCTION``, and the answer is
  ``environments.extract.final_number`` (boxed, tags, "#### 8", "The answer is 8", or the result of a
  final equation; never a number the response does not mark as its answer).
* **Held-out split** (``holdout``, default 0): the fraction of the problem space reserved for evaluation
  seeds (``environments.holdout``), for small spaces such as one-digit ``basic_arithmetic``.
* **Verification.** The extracted answer goes to the task's ``score_answer(answer, entry)``, whose score in
  [0, 1] is the reward (``reward="binary"`` uses accuracy instead); accuracy = score >= 1. Scoring runs in the same isolation (unseeded). A
  ``score_answer`` that raises on a malformed answer (``prime_factorization`` on non-integers) scores 0,
  with the exception as the reason. The entry is carried in the problem (typed JSON,
  ``environments.codec``), so scoring never regenerates it.
* Tasks whose ``answer`` is None (``boxnet``, ``graph_color``, ...; ``score_answer`` validates instead)
  have no reference response. Not registered: ``composite`` (a mixture needing a dataset list) and
  ``game_of_life_halting`` (its ``score_answer`` compares ``bool(answer) == bool(oracle)``, so every
  non-empty answer scores 1).

Without ``reasoning-gym`` installed, ``provide`` raises ``EnvironmentUnavailable``: the ``rg/`` names are
absent from ``zaya-rl envs list``, which prints the reason.
"""

from __future__ import annotations

import dataclasses
from functools import cache
from typing import Any, ClassVar, Literal

from environments import codec
from environments.base import Environment, Problem, Score
from environments.extract import final_number, last_answer_tag, last_boxed
from environments.global_state import isolated_global_state
from environments.holdout import check_fraction, generate_on_side
from environments.registry import EnvironmentUnavailable

INSTALL_HINT = "pip install reasoning-gym"
INSTRUCTION = "Give your final answer between <answer> and </answer> tags."
#: ``answer_format="number"``: lets the model work it out in its own words, then conclude. Chosen on
#: SmolLM2-135M-Instruct's greedy outputs (32-64 problems each): one-digit chain_sum 0.50 with it,
#: 0.31 with the bare question (a one-line guess), 0.19 with 'End your response with "The answer is: X"'
#: (it then skips the working and guesses); basic_arithmetic 0.19 / 0.25 / 0.09, format found 0.97 / 0.72.
NUMBER_INSTRUCTION = "Solve it step by step, then state the final answer."
#: answer_format -> instruction appended to the question.
INSTRUCTIONS = {"tags": INSTRUCTION, "number": NUMBER_INSTRUCTION}
#: Tasks not registered, with the reason.
EXCLUDED = {
    "composite": "a mixture that needs a list of datasets",
    "game_of_life_halting": "score_answer accepts every non-empty answer (bool(answer) == bool(oracle))",
}
#: First level not offered because generating one problem takes too long: the slowest of seeds 0-2 needed
#: more than half of the default generation bound (``pipeline.generate_timeout_s`` = 10 s), in CPU seconds,
#: so unmeasured seeds and a loaded machine still fit. Measured by ``benchmarks/rg_generation_time.py``
#: (reasoning-gym 0.1.25, 2 shared cores, 2026-12-07): countdown d2 5.6 s, futoshiki d3 5.3 s, jugs d2
#: 9.1 s, puzzle24 d3 > 10 s, sokoban d0 11.1 s (seed 1), zebra_puzzles d5 > 10 s; every other task's
#: slowest level took at most 3.1 s (n_queens d4).
SLOW_FROM = {"countdown": 2, "futoshiki": 3, "jugs": 2, "puzzle24": 3, "sokoban": 0, "zebra_puzzles": 5}
#: Derived seeds for retries stay below 2^32.
_RETRY_STRIDE = 0x9E3779B1
#: Tolerance for "score >= 1" (scores are floats such as len(oracle)/len(answer)).
_EPS = 1e-9


class ReasoningGymEnvironment(Environment):
    """One reasoning-gym task; ``provide`` makes a subclass per task.

    Args:
        reward: ``score`` (reasoning-gym's graded score in [0, 1], default) or ``binary`` (accuracy).
        answer_format: ``tags`` (default) or ``number`` (module docstring: prompt and extraction).
        holdout: fraction of the problem space reserved for held-out seeds (``environments.holdout``).
        max_generation_attempts: seeds tried before generation gives up.
        **config: overrides of the task's config fields (applied after the curriculum's values).
    """

    category = "rg"
    source = "reasoning-gym"
    min_difficulty = 0
    task: ClassVar[str]

    def __init__(
        self,
        reward: Literal["score", "binary"] = "score",
        answer_format: Literal["tags", "number"] = "tags",
        holdout: float = 0.0,
        max_generation_attempts: int = 5,
        **config: Any,
    ) -> None:
        if reward not in ("score", "binary"):
            raise ValueError(f"{self.name}: reward must be 'score' or 'binary', got {reward!r}")
        if answer_format not in INSTRUCTIONS:
            raise ValueError(f"{self.name}: answer_format must be one of {sorted(INSTRUCTIONS)}, got {answer_format!r}")
        if max_generation_attempts < 1:
            raise ValueError(f"{self.name}: max_generation_attempts must be >= 1")
        from reasoning_gym.factory import DATASETS

        self._dataset_cls, self._config_cls = DATASETS[self.task]
        unknown = set(config) - {f.name for f in dataclasses.fields(self._config_cls)}
        if unknown:
            raise ValueError(f"{self.name}: unknown config fields {sorted(unknown)}")
        self.reward, self.max_generation_attempts, self.overrides = reward, max_generation_attempts, config
        self.answer_format, self.holdout = answer_format, check_fraction(self.name, holdout)
        self._scorers: dict[int, Any] = {}

    def config(self, seed: int, difficulty: int) -> Any:
        """The task's config at ``difficulty`` with ``seed`` and size 1 (see the module docstring)."""
        from reasoning_gym.coaching.base_curriculum import DefaultCurriculumContext, RangeAttributeMode
        from reasoning_gym.factory import CURRICULA, create_curriculum

        defaults = {"seed": seed, "size": 1}
        if self.task not in CURRICULA:
            return self._config_cls(**defaults, **self.overrides)
        curriculum = create_curriculum(self.task)
        curriculum.set_global_level(difficulty)
        config = curriculum.generate_configuration(
            defaults=defaults, context=DefaultCurriculumContext(mode=RangeAttributeMode.UPPER_BOUND)
        )
        return dataclasses.replace(config, **self.overrides)

    def generate(self, seed: int, difficulty: int) -> Problem:
        d = self.check_difficulty(difficulty)
        return generate_on_side(lambda s: self._generate(s, d), seed, self.holdout)

    def _generate(self, seed: int, d: int) -> Problem:
        errors = []
        for attempt in range(self.max_generation_attempts):
            rg_seed = (seed + attempt * _RETRY_STRIDE) % 2**32
            try:
                with isolated_global_state(rg_seed):
                    entry = self._dataset_cls(config=self.config(rg_seed, d))[0]
            except Exception as e:  # some tasks raise for unlucky seeds or whole levels
                errors.append(f"seed {rg_seed}: {type(e).__name__}: {e}")
                continue
            answer = entry.get("answer")
            return Problem(
                env=self.name, seed=seed, difficulty=d,
                messages=[{"role": "user", "content": f"{entry['question']}\n\n{INSTRUCTIONS[self.answer_format]}"}],
                answer=None if answer is None else str(answer),
                metadata={"rg_entry": codec.encode(entry), "rg_seed": rg_seed},
            )  # fmt: skip
        raise RuntimeError(
            f"{self.name}: generation failed at difficulty {d} for {len(errors)} seeds: {errors[-1]}"
        )

    def verify(self, problem: Problem, response: str) -> Score:
        extracted = self.extract(response)
        entry, reason = codec.decode(problem.metadata["rg_entry"]), ""
        try:
            with isolated_global_state():
                score = float(self._scorer(problem.difficulty).score_answer(extracted, entry))
        except Exception as e:  # a malformed answer that the task's scorer does not guard against
            score, reason = 0.0, f"score_answer raised {type(e).__name__}: {e}"
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"{self.name}: score_answer returned {score} outside [0, 1]")
        accuracy = float(score >= 1.0 - _EPS)
        reward = accuracy if self.reward == "binary" else score
        return Score(
            reward=reward, accuracy=accuracy, format_ok=extracted is not None, extracted=extracted,
            reason=reason or f"rg_score={score:.4g}",
        )  # fmt: skip

    def extract(self, response: str) -> str | None:
        """The answer ``verify`` scores (``answer_format``: module docstring)."""
        if self.answer_format == "number":
            return final_number(response)[0]
        found = last_answer_tag(response)
        return found if found is not None else last_boxed(response)

    def _scorer(self, difficulty: int) -> Any:
        """A dataset at ``difficulty`` to call ``score_answer`` on (it may read its config); cached per level."""
        if difficulty not in self._scorers:
            self._scorers[difficulty] = self._dataset_cls(config=self.config(0, difficulty))
        return self._scorers[difficulty]

    def reference_response(self, problem: Problem) -> str:
        if problem.answer is None:
            raise NotImplementedError(f"{self.name}: the task validates answers and has no reference answer")
        if self.answer_format == "number":
            return f"The answer is: {problem.answer}"
        return f"<answer>{problem.answer}</answer>"


def _valid_top_level(task: str) -> int:
    """Highest level L such that levels 0..L all give a config that passes its own ``validate()``; -1: none."""
    from reasoning_gym.coaching.base_curriculum import DefaultCurriculumContext, RangeAttributeMode
    from reasoning_gym.factory import create_curriculum

    curriculum = create_curriculum(task)
    top = max((len(a.levels) - 1 for a in curriculum.attributes.values()), default=0)
    context = DefaultCurriculumContext(mode=RangeAttributeMode.UPPER_BOUND)
    for level in range(top + 1):
        curriculum.set_global_level(level)
        config = curriculum.generate_configuration(defaults={"seed": 0, "size": 1}, context=context)
        try:
            getattr(config, "validate", lambda: None)()
        except (AssertionError, ValueError):
            return level - 1
    return top


@cache
def _tasks() -> dict[str, tuple[int, str]]:
    """Task name -> (max difficulty, note); tasks without an offered level map to (-1, why).

    The max difficulty is the largest attribute's top level, capped at the last level that passes the
    task's own ``validate()`` and below the first ``SLOW_FROM`` level.
    """
    try:
        from reasoning_gym.factory import CURRICULA, DATASETS
    except ImportError as e:
        raise EnvironmentUnavailable(f"reasoning-gym is not installed ({INSTALL_HINT}): {e}") from e
    out = {}
    for name in sorted(set(DATASETS) - set(EXCLUDED)):
        top = _valid_top_level(name) if name in CURRICULA else 0
        if top < 0:
            out[name] = (-1, "no level passes reasoning-gym's own validate()")
        elif name in SLOW_FROM and SLOW_FROM[name] <= top:
            slow = SLOW_FROM[name]
            levels = f"level {slow}" if slow == top else f"levels {slow}..{top}"
            why = f"{levels} not offered: one problem takes more than 5 s to generate"
            out[name] = (slow - 1, why if slow > 0 else "every level takes more than 5 s to generate one problem")
        else:
            out[name] = (top, "")
    return out


def provide() -> list[type[ReasoningGymEnvironment]]:
    """Entry-point provider: one ``ReasoningGymEnvironment`` subclass per offered reasoning-gym task."""
    return [
        type(
            f"RG_{task}",
            (ReasoningGymEnvironment,),
            {"name": f"rg/{task}", "task": task, "max_difficulty": top, "note": note, "__module__": __name__},
        )  # fmt: skip
        for task, (top, note) in _tasks().items() if top >= 0
    ]


def excluded() -> dict[str, str]:
    """``rg/<task>`` -> why it is not offered (``zaya-rl envs list`` prints these as notes)."""
    out = {f"rg/{task}": why for task, why in EXCLUDED.items()}
    out.update({f"rg/{task}": why for task, (top, why) in _tasks().items() if top < 0})
    return out


provide.excluded = excluded  # type: ignore[attr-defined]  # read by environments.registry
