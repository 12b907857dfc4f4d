"""Tiny CPU-demo tasks and the logic puzzles, checked against independent solvers of their prompts.

python -m pytest tests/environments/test_envs_builtin.py -q
"""

from __future__ import annotations

import itertools
import random
import re
import time

import pytest

from environments import get_environment
from environments.builtin.puzzles import KnightsAndKnaves, MiniSudoku, parse_roles

TINY = ("arithmetic", "reverse", "sort_digits", "count_char")
SEEDS = range(150)


def _solve_tiny(name: str, prompt: str) -> str:
    """Independent answers, computed from the prompt text alone."""
    if name == "arithmetic":
        a, op, b = re.fullmatch(r"(\d+)([+-])(\d+)=", prompt).groups()
        return str(int(a) + int(b) if op == "+" else int(a) - int(b))
    if name == "reverse":
        return prompt.removeprefix("reverse ")[::-1]
    if name == "sort_digits":
        return "".join(sorted(prompt.removeprefix("sort ")))
    c, s = re.fullmatch(r"count (\w) in (\w+)", prompt).groups()
    return str(s.count(c))


@pytest.mark.parametrize("name", TINY)
def test_tiny_answers_match_an_independent_solver_and_fit_the_byte_budget(name):
    env = get_environment(name)
    for d in range(env.max_difficulty + 1):
        for seed in SEEDS:
            p = env.generate(seed, d)
            assert p.messages == [{"role": "user", "content": p.prompt_text}]
            assert p.answer == _solve_tiny(name, p.prompt_text), (d, seed, p.prompt_text)
            assert len(p.prompt_text.encode()) <= 40 and len(p.answer.encode()) <= 12
            assert env.verify(p, env.reference_response(p)).accuracy == 1.0
            assert env.verify(p, env.wrong_response(p)).accuracy == 0.0


@pytest.mark.parametrize("name", TINY)
def test_tiny_difficulty_grows_the_problem(name):
    env = get_environment(name)
    size = [max(len(env.generate(s, d).prompt_text) for s in SEEDS) for d in range(env.max_difficulty + 1)]
    assert size == sorted(size) and size[-1] >= size[0] + 6


def test_tiny_levels_are_the_documented_ones():
    arith = get_environment("arithmetic")
    ops = {d: {re.search(r"[+-]", arith.generate(s, d).prompt_text).group() for s in SEEDS} for d in range(8)}
    assert ops[0] == ops[2] == ops[6] == {"+"} and ops[1] == ops[7] == {"+", "-"}
    assert max(len(arith.generate(s, 7).prompt_text) for s in SEEDS) == 10  # 4-digit operands
    assert {len(get_environment("reverse").generate(s, 5).answer) for s in SEEDS} == {7}


@pytest.mark.parametrize(
    "response, accuracy, extracted",
    [
        ("\\boxed{153}", 1.0, "153"),
        ("Answer: 153", 1.0, "153"),
        ("  153\n", 1.0, "153"),
        ("+0153", 1.0, "+0153"),
        ("153.0", 1.0, "153.0"),
        ("<answer> 153 </answer>", 1.0, "153"),
        ("\\boxed{152} then Answer: 153", 0.0, "152"),  # boxed wins over the Answer: line
        ("Answer: 152\nAnswer: 153", 1.0, "153"),  # the last Answer: line
        ("1 5 3", 0.0, "1 5 3"),
    ],
)
def test_tiny_verify_extraction_order(response, accuracy, extracted):
    env = get_environment("arithmetic")
    problem = env.generate(1, 3)
    assert problem.prompt_text == "57+96="
    score = env.verify(problem, response)
    assert (score.accuracy, score.reward, score.extracted) == (accuracy, accuracy, extracted)


def test_empty_response_is_a_format_failure():
    env = get_environment("reverse")
    score = env.verify(env.generate(0, 0), "   ")
    assert (score.accuracy, score.format_ok) == (0.0, False)


@pytest.mark.parametrize("name", [*TINY, "knights_knaves", "mini_sudoku"])
def test_deterministic_without_touching_global_rng(name):
    env = get_environment(name)
    random.seed(123)
    state = random.getstate()
    first = [env.generate(s, 2).to_dict() for s in range(20)]
    assert random.getstate() == state
    assert first == [get_environment(name).generate(s, 2).to_dict() for s in range(20)]
    assert len({p["answer"] for p in first}) > 3


def test_tiny_generation_takes_microseconds():
    env = get_environment("count_char")
    start = time.perf_counter()
    for s in range(2000):
        env.verify(env.generate(s, 8), "3")
    assert (time.perf_counter() - start) / 2000 < 200e-6


# ---------------------------------------------------------------- knights and knaves
_SENTENCES = [
    (r"(\w+) is a knight\.", lambda w, x: w[x]),
    (r"(\w+) is a knave\.", lambda w, x: not w[x]),
    (r"(\w+) and (\w+) are the same kind\.", lambda w, x, y: w[x] == w[y]),
    (r"(\w+) and (\w+) are different kinds\.", lambda w, x, y: w[x] != w[y]),
    (r"(\w+) or (\w+) is a knight\.", lambda w, x, y: w[x] or w[y]),
    (r"(\w+) and (\w+) are both knaves\.", lambda w, x, y: not w[x] and not w[y]),
]


def _consistent_worlds(prompt: str) -> list[dict[str, bool]]:
    claims = re.findall(r'^(\w+) says: "(.*)"$', prompt, flags=re.MULTILINE)
    names = [speaker for speaker, _ in claims]
    worlds = []
    for values in itertools.product((True, False), repeat=len(names)):
        w = dict(zip(names, values, strict=True))
        truths = []
        for _, sentence in claims:
            (pattern, fn), args = next(
                (s, m.groups()) for s in _SENTENCES if (m := re.fullmatch(s[0], sentence))
            )
            truths.append(fn(w, *args))
        if all(t == w[n] for t, n in zip(truths, names, strict=True)):
            worlds.append(w)
    return worlds


@pytest.mark.parametrize("difficulty", range(5))
def test_knights_knaves_has_exactly_the_stated_unique_solution(difficulty):
    env = KnightsAndKnaves()
    for seed in range(15):
        p = env.generate(seed, difficulty)
        worlds = _consistent_worlds(p.prompt_text)
        assert len(worlds) == 1 and len(worlds[0]) == difficulty + 2
        expected = ", ".join(f"{n}={'knight' if k else 'knave'}" for n, k in worlds[0].items())
        assert p.answer == expected
        assert env.verify(p, env.reference_response(p)).accuracy == 1.0
        assert env.verify(p, env.wrong_response(p)).accuracy == 0.0


def test_knights_knaves_answer_formats():
    names = ["Ann", "Bob", "Cal"]
    want = (True, False, True)
    assert parse_roles("Ann=knight, Bob=knave, Cal=knight", names) == want
    assert parse_roles("Ann is a knight; bob is a KNAVE and Cal: knight", names) == want
    assert parse_roles("Ann=knight, Bob=knave", names) is None  # Cal missing
    assert parse_roles("Ann=knight, Ann=knave, Bob=knave, Cal=knight", names) is None  # Ann twice
    env = KnightsAndKnaves()
    p = env.generate(0, 1)
    assert env.verify(p, "no idea").format_ok is False


# ---------------------------------------------------------------- mini sudoku
def _brute_force_solutions(givens: list[int]) -> list[list[int]]:
    rows = []
    for r in range(4):
        rows.append(
            [
                perm
                for perm in itertools.permutations(range(1, 5))
                if all(g in (0, v) for g, v in zip(givens[r * 4 : r * 4 + 4], perm, strict=True))
            ]
        )
    out = []
    for combo in itertools.product(*rows):
        cols_ok = all(len({combo[r][c] for r in range(4)}) == 4 for c in range(4))
        boxes_ok = all(
            len({combo[br + i][bc + j] for i in (0, 1) for j in (0, 1)}) == 4
            for br in (0, 2)
            for bc in (0, 2)
        )
        if cols_ok and boxes_ok:
            out.append([v for row in combo for v in row])
    return out


@pytest.mark.parametrize("difficulty", range(5))
def test_mini_sudoku_is_unique_with_the_documented_blanks(difficulty):
    env = MiniSudoku()
    for seed in range(6):
        p = env.generate(seed, difficulty)
        givens = [
            int(v) for v in re.findall(r"^([0-4]) ([0-4]) ([0-4]) ([0-4])$", p.prompt_text, re.M) for v in v
        ]
        assert givens == p.metadata["givens"] and givens.count(0) == 4 + 2 * difficulty
        solutions = _brute_force_solutions(givens)
        assert len(solutions) == 1
        assert p.answer.replace(" ", "") == "".join(map(str, solutions[0]))
        assert env.verify(p, f"\\boxed{{{p.answer}}}").accuracy == 1.0
        assert env.verify(p, env.wrong_response(p)).accuracy == 0.0


def test_mini_sudoku_rejects_a_grid_that_ignores_the_givens():
    env = MiniSudoku()
    p = env.generate(0, 0)
    relabelled = p.answer.translate(str.maketrans("12", "21"))  # still a valid Sudoku, but not these givens
    score = env.verify(p, f"\\boxed{{{relabelled}}}")
    assert score.accuracy == 0.0 and score.format_ok
