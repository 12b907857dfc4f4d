"""Procedural logic puzzles with unique, checkable answers (no dependencies).

================  ======  =====================================================================
name              levels  puzzle
================  ======  =====================================================================
knights_knaves    0..4    d + 2 islanders each make one statement; exactly one assignment of
                          knight/knave is consistent (checked by enumerating all 2^n).
mini_sudoku       0..4    4×4 Sudoku with 4 + 2d blanks (so 12 − 2d givens) and a unique
                          solution (checked by a counting solver).
================  ======  =====================================================================

Generation draws candidates from a local ``random.Random`` until one has a unique solution, so a
(seed, difficulty) pair always gives the same puzzle. Answers go in ``\\boxed{}`` (or ``<answer>`` tags,
or an ``Answer:`` line); reward = accuracy (binary).
"""

from __future__ import annotations

import itertools
import random
import re

from environments.base import Environment, Problem, Score
from environments.extract import extract_answer

NAMES = ("Ann", "Bob", "Cal", "Dee", "Eve", "Fay")
#: Bound on candidate draws; each level finds a unique puzzle within a few dozen draws.
_MAX_DRAWS = 10_000


def _statement(rng: random.Random, speaker: int, n: int) -> tuple:
    others = [i for i in range(n) if i != speaker]
    kind = rng.choice(("is", "same", "diff", "or", "both_knaves"))
    if kind == "is":
        return ("is", rng.choice(range(n)), rng.random() < 0.5)
    x, y = rng.sample(others, 2) if len(others) >= 2 else (others[0], speaker)
    return (kind, x, y)


def _holds(stmt: tuple, knights: tuple[bool, ...]) -> bool:
    kind, x, y = stmt
    return {
        "is": lambda: knights[x] == y,
        "same": lambda: knights[x] == knights[y],
        "diff": lambda: knights[x] != knights[y],
        "or": lambda: knights[x] or knights[y],
        "both_knaves": lambda: not knights[x] and not knights[y],
    }[kind]()


def _say(stmt: tuple, names: tuple[str, ...]) -> str:
    kind, x, y = stmt
    if kind == "is":
        return f"{names[x]} is a {'knight' if y else 'knave'}."
    return {
        "same": f"{names[x]} and {names[y]} are the same kind.",
        "diff": f"{names[x]} and {names[y]} are different kinds.",
        "or": f"{names[x]} or {names[y]} is a knight.",
        "both_knaves": f"{names[x]} and {names[y]} are both knaves.",
    }[kind]


class KnightsAndKnaves(Environment):
    """Knights always tell the truth, knaves always lie; who is which?"""

    name = "knights_knaves"
    category = "puzzle"
    max_difficulty = 4

    def generate(self, seed: int, difficulty: int) -> Problem:
        d = self.check_difficulty(difficulty)
        rng, n = random.Random(f"{self.name}:{seed}:{d}"), d + 2
        names = NAMES[:n]
        for _ in range(_MAX_DRAWS):
            stmts = [_statement(rng, s, n) for s in range(n)]
            worlds = [
                w
                for w in itertools.product((True, False), repeat=n)
                if all(_holds(st, w) == w[i] for i, st in enumerate(stmts))
            ]
            if len(worlds) == 1:
                break
        else:
            raise RuntimeError(
                f"{self.name}: no unique puzzle in {_MAX_DRAWS} draws (seed {seed}, difficulty {d})"
            )
        lines = [f'{names[i]} says: "{_say(st, names)}"' for i, st in enumerate(stmts)]
        prompt = (
            "On an island, knights always tell the truth and knaves always lie.\n"
            + "\n".join(lines)
            + "\nWho is a knight and who is a knave? Answer like \\boxed{Ann=knight, Bob=knave}."
        )
        answer = ", ".join(
            f"{nm}={'knight' if k else 'knave'}" for nm, k in zip(names, worlds[0], strict=True)
        )
        return Problem(
            env=self.name,
            seed=seed,
            difficulty=d,
            messages=[{"role": "user", "content": prompt}],
            answer=answer,
            metadata={"names": list(names)},
        )

    def verify(self, problem: Problem, response: str) -> Score:
        extracted, format_ok = extract_answer(response)
        if extracted is None:
            return Score(reward=0.0, accuracy=0.0, format_ok=False, reason="no \\boxed{} answer")
        names = problem.metadata["names"]
        got = parse_roles(extracted, names)
        want = parse_roles(problem.answer or "", names)
        if got is None:
            return Score(
                reward=0.0, accuracy=0.0, format_ok=False, extracted=extracted, reason="not one role per name"
            )
        ok = got == want
        return Score(
            reward=float(ok),
            accuracy=float(ok),
            format_ok=format_ok,
            extracted=extracted,
            reason="" if ok else f"expected {problem.answer}",
        )

    def wrong_response(self, problem: Problem) -> str:
        swap = {"knight": "knave", "knave": "knight"}
        flipped = re.sub(r"knight|knave", lambda m: swap[m.group()], problem.answer or "")
        return f"\\boxed{{{flipped}}}"


def parse_roles(text: str, names: list[str]) -> tuple[bool, ...] | None:
    """Read ``Name = knight/knave`` (any separator, any case) for every name; None unless each appears once."""
    found: dict[str, bool] = {}
    for nm, role in re.findall(r"([A-Za-z]+)\W+(?:is\s+(?:a\s+)?)?(knight|knave)", text, flags=re.IGNORECASE):
        key = nm.capitalize()
        if key not in names or key in found:
            return None
        found[key] = role.lower() == "knight"
    if set(found) != set(names):
        return None
    return tuple(found[nm] for nm in names)


def _count_solutions(grid: list[int], limit: int = 2) -> int:
    """Solutions of a 4×4 Sudoku (0 = blank), counted up to ``limit``."""
    try:
        i = grid.index(0)
    except ValueError:
        return 1
    r, c = divmod(i, 4)
    total = 0
    for v in range(1, 5):
        if _fits(grid, r, c, v):
            grid[i] = v
            total += _count_solutions(grid, limit - total)
            grid[i] = 0
            if total >= limit:
                break
    return total


def _fits(grid: list[int], r: int, c: int, v: int) -> bool:
    box = [
        grid[(br) * 4 + bc]
        for br in range(r - r % 2, r - r % 2 + 2)
        for bc in range(c - c % 2, c - c % 2 + 2)
    ]
    return v not in grid[r * 4 : r * 4 + 4] and v not in grid[c::4] and v not in box


def is_valid_solution(solution: list[int], givens: list[int]) -> bool:
    """A complete 4×4 grid that keeps every given and has 1-4 once per row, column and 2×2 box."""
    if len(solution) != 16 or any(g and g != s for g, s in zip(givens, solution, strict=True)):
        return False
    units = [list(range(r * 4, r * 4 + 4)) for r in range(4)] + [list(range(c, 16, 4)) for c in range(4)]
    units += [[(br + i) * 4 + bc + j for i in (0, 1) for j in (0, 1)] for br in (0, 2) for bc in (0, 2)]
    return all(sorted(solution[k] for k in unit) == [1, 2, 3, 4] for unit in units)


class MiniSudoku(Environment):
    """4×4 Sudoku; the answer is the 16 digits of the solved grid, row by row."""

    name = "mini_sudoku"
    category = "puzzle"
    max_difficulty = 4

    def generate(self, seed: int, difficulty: int) -> Problem:
        d = self.check_difficulty(difficulty)
        rng, blanks = random.Random(f"{self.name}:{seed}:{d}"), 4 + 2 * d
        for _ in range(_MAX_DRAWS):
            solution = _random_full_grid(rng)
            puzzle = list(solution)
            for cell in rng.sample(range(16), 16):
                kept, puzzle[cell] = puzzle[cell], 0
                if _count_solutions(list(puzzle)) != 1:
                    puzzle[cell] = kept
                if puzzle.count(0) == blanks:
                    break
            if puzzle.count(0) == blanks:
                break
        else:
            raise RuntimeError(f"{self.name}: no puzzle with {blanks} blanks in {_MAX_DRAWS} draws")
        rows = "\n".join(" ".join(str(v) for v in puzzle[r * 4 : r * 4 + 4]) for r in range(4))
        prompt = (
            "Fill the 4x4 grid (0 = empty) with 1-4 so every row, column and 2x2 box holds each digit once.\n"
            f"{rows}\nGive the 16 digits row by row, like \\boxed{{1234 3412 2143 4321}}."
        )
        answer = " ".join("".join(str(v) for v in solution[r * 4 : r * 4 + 4]) for r in range(4))
        return Problem(
            env=self.name,
            seed=seed,
            difficulty=d,
            messages=[{"role": "user", "content": prompt}],
            answer=answer,
            metadata={"givens": puzzle},
        )

    def verify(self, problem: Problem, response: str) -> Score:
        extracted, format_ok = extract_answer(response)
        digits = [int(ch) for ch in extracted or "" if ch.isdigit()]
        if extracted is None or len(digits) != 16:
            return Score(
                reward=0.0, accuracy=0.0, format_ok=False, extracted=extracted, reason="need 16 digits"
            )
        ok = is_valid_solution(digits, problem.metadata["givens"])
        return Score(
            reward=float(ok),
            accuracy=float(ok),
            format_ok=format_ok,
            extracted=extracted,
            reason="" if ok else "not a valid completion of the grid",
        )

    def wrong_response(self, problem: Problem) -> str:
        return "\\boxed{1111 1111 1111 1111}"


def _random_full_grid(rng: random.Random) -> list[int]:
    """A uniformly relabelled, row/column/band-shuffled valid 4×4 grid."""
    base = [[1, 2, 3, 4], [3, 4, 1, 2], [2, 1, 4, 3], [4, 3, 2, 1]]
    digits = rng.sample([1, 2, 3, 4], 4)
    bands = rng.sample([0, 1], 2)
    rows = [b * 2 + i for b in bands for i in rng.sample([0, 1], 2)]
    stacks = rng.sample([0, 1], 2)
    cols = [s * 2 + j for s in stacks for j in rng.sample([0, 1], 2)]
    grid = [[digits[base[r][c] - 1] for c in cols] for r in rows]
    if rng.random() < 0.5:
        grid = [list(col) for col in zip(*grid, strict=True)]
    return [v for row in grid for v in row]
