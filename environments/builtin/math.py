"""Procedural math problems with exact answers, verified by ``rewards.math`` (math-verify).

Ten families, each unlocked at a minimum difficulty and growing with it (operand count, magnitude,
degree, denominators). Answers are computed exactly at generation time with ``fractions.Fraction`` and
integer arithmetic, and stored as LaTeX (``\\frac{p}{q}`` or an integer), so the gold side always parses.

=============  =====  ==========================================================================
family         min d  problem
=============  =====  ==========================================================================
arithmetic     0      integer expression with + − ×, 2 + d//2 operands up to 10^(1 + d//3)
fractions      0      sum/difference of 2 + d//3 fractions, denominators up to 4 + 2d
linear         1      a·x + b = c·x + e, integer x below d = 4, rational above
number_theory  1      gcd, lcm, modular power, divisor count/sum, sizes growing with d
quadratic      2      sum of squares of the (integer) roots of a·(x − r)(x − s) = 0
combinatorics  2      binomial coefficients, lattice paths, arrangements of a word's letters
series         3      sum of the first n terms of an arithmetic or geometric sequence
probability    3      dice sums, drawing balls without replacement
system         4      2×2 linear system with an integer solution; asks for x + y
calculus       5      f'(a) or ∫_0^a f for an integer polynomial of degree 2 + d//3
=============  =====  ==========================================================================

The prompt asks for the answer in ``\\boxed{}``; ``verify`` also accepts an "Answer:" line or a final number
(``rewards.math``). A verifier timeout or internal error becomes ``Score.failed``.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable
from fractions import Fraction

from environments.base import Environment, Problem, Score
from environments.holdout import check_fraction, generate_on_side
from rewards.math import verify_math

Exact = int | Fraction
Family = Callable[[random.Random, int], tuple[str, Exact]]
PROMPT = "Solve the following problem. Put your final answer in \\boxed{{}}.\n\n{question}"


def latex_number(x: Exact) -> str:
    """An exact rational in LaTeX: ``-\\frac{3}{4}``, or the integer."""
    x = Fraction(x)
    if x.denominator == 1:
        return str(x.numerator)
    return f"{'-' if x < 0 else ''}\\frac{{{abs(x.numerator)}}}{{{x.denominator}}}"


def _polynomial(coeffs: list[int]) -> str:
    """``coeffs[i]`` is the coefficient of x^i; rendered highest degree first, e.g. ``3x^2 - x + 5``."""
    terms = []
    for power in range(len(coeffs) - 1, -1, -1):
        c = coeffs[power]
        if c == 0:
            continue
        mag = "" if abs(c) == 1 and power > 0 else str(abs(c))
        var = "" if power == 0 else "x" if power == 1 else f"x^{power}"
        terms.append(("- " if c < 0 else "+ ") + mag + var)
    text = " ".join(terms) or "0"
    return text[2:] if text.startswith("+ ") else "-" + text[2:]


def _arithmetic(rng: random.Random, d: int) -> tuple[str, Exact]:
    hi = 10 ** (1 + d // 3)
    items = [(str(v), v) for v in (rng.randint(1, hi) for _ in range(2 + d // 2))]
    ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
    while len(items) > 1:
        i = rng.randrange(len(items) - 1)
        op = rng.choice("+-*")
        (ta, va), (tb, vb) = items[i], items[i + 1]
        items[i : i + 2] = [(f"({ta} {op} {tb})", ops[op](va, vb))]
    text, value = items[0]
    return f"Compute {text[1:-1]}.", value


def _fractions(rng: random.Random, d: int) -> tuple[str, Exact]:
    fracs = [Fraction(rng.randint(1, 9 + d), rng.randint(2, 4 + 2 * d)) for _ in range(2 + d // 3)]
    signs = [rng.choice([1, -1]) for _ in fracs[1:]]
    total = fracs[0] + sum(s * f for s, f in zip(signs, fracs[1:], strict=True))
    text = str(fracs[0]) + "".join(f" {'+' if s > 0 else '-'} {f}" for s, f in zip(signs, fracs[1:], strict=True))
    return f"Compute {text}. Give the result as a fraction in lowest terms.", total


def _linear(rng: random.Random, d: int) -> tuple[str, Exact]:
    q = 1 if d < 4 else rng.randint(2, 5)
    x = Fraction(rng.randint(-5 * d, 5 * d), q)
    k = q * rng.choice([-3, -2, -1, 1, 2, 3])  # a − c, a multiple of q so that e is an integer
    c, b = rng.randint(-9, 9), rng.randint(-20, 20)
    a, e = c + k, k * x + b
    return f"Solve for x: {_polynomial([b, a])} = {_polynomial([int(e), c])}.", x


def _number_theory(rng: random.Random, d: int) -> tuple[str, Exact]:
    hi = 20 * (d + 1) ** 2
    kind = rng.randrange(5)
    if kind == 0:
        g = rng.randint(2, 4 * d + 4)
        a, b = g * rng.randint(2, hi), g * rng.randint(2, hi)
        return f"What is the greatest common divisor of {a} and {b}?", math.gcd(a, b)
    if kind == 1:
        nums = [rng.randint(2, 6 + 3 * d) for _ in range(3)]
        return f"What is the least common multiple of {nums[0]}, {nums[1]} and {nums[2]}?", math.lcm(*nums)
    if kind == 2:
        a, b, m = rng.randint(2, 50), rng.randint(10, 10 * hi), rng.randint(7, 100 + hi)
        return f"What is the remainder when {a}^{{{b}}} is divided by {m}?", pow(a, b, m)
    n = rng.randint(12, 5 * hi)
    divisors = [k for k in range(1, n + 1) if n % k == 0]
    if kind == 3:
        return f"How many positive divisors does {n} have?", len(divisors)
    return f"What is the sum of all positive divisors of {n}?", sum(divisors)


def _quadratic(rng: random.Random, d: int) -> tuple[str, Exact]:
    r, s = rng.randint(-3 * d, 3 * d), rng.randint(-3 * d, 3 * d)
    a = 1 if d < 5 else rng.randint(2, 4)
    coeffs = [a * r * s, -a * (r + s), a]
    question = f"Let x_1 and x_2 be the solutions of {_polynomial(coeffs)} = 0 (counted with multiplicity)."
    return f"{question} Compute x_1^2 + x_2^2.", r * r + s * s


def _combinatorics(rng: random.Random, d: int) -> tuple[str, Exact]:
    kind = rng.randrange(3)
    if kind == 0:
        n = rng.randint(5, 6 + 2 * d)
        k = rng.randint(2, n - 2)
        return f"In how many ways can a committee of {k} be chosen from {n} people?", math.comb(n, k)
    if kind == 1:
        a, b = rng.randint(2, 2 + d), rng.randint(2, 2 + d)
        return (f"How many shortest paths along grid lines go from (0, 0) to ({a}, {b}), moving one unit "
                f"right or up at each step?", math.comb(a + b, a))
    word = "".join(rng.choice("AABBCDE") for _ in range(4 + d // 2))
    count = math.factorial(len(word))
    for reps in Counter(word).values():
        count //= math.factorial(reps)
    return f"How many distinct arrangements of the letters of the word {word} are there?", count


def _series(rng: random.Random, d: int) -> tuple[str, Exact]:
    n = rng.randint(5, 5 + 3 * d)
    if rng.random() < 0.5:
        a, step = rng.randint(-20, 20), rng.randint(-9, 9) or 1
        return (f"An arithmetic sequence starts {a}, {a + step}, {a + 2 * step}, ... "
                f"What is the sum of its first {n} terms?", n * (2 * a + (n - 1) * step) // 2)
    a, ratio = rng.randint(1, 9), Fraction(rng.choice([1, -1]) * rng.randint(1, 3), rng.randint(2, 4))
    terms = ", ".join(latex_number(a * ratio**i) for i in range(3))
    return (f"A geometric sequence starts ${terms}$, ... What is the sum of its first {min(n, 8)} terms?",
            sum(a * ratio**i for i in range(min(n, 8))))


def _probability(rng: random.Random, d: int) -> tuple[str, Exact]:
    if rng.random() < 0.5:
        dice = 2 if d < 6 else 3
        target = rng.randint(dice, 6 * dice)
        hits = sum(1 for roll in range(6**dice) if sum(roll // 6**i % 6 + 1 for i in range(dice)) == target)
        return f"{dice} fair six-sided dice are rolled. What is the probability that the sum is {target}?", \
            Fraction(hits, 6**dice)
    red, blue = rng.randint(2, 3 + d), rng.randint(1, 3 + d)
    return (f"A bag holds {red} red and {blue} blue balls. Two are drawn without replacement. "
            f"What is the probability that both are red?", Fraction(math.comb(red, 2), math.comb(red + blue, 2)))


def _system(rng: random.Random, d: int) -> tuple[str, Exact]:
    x, y = rng.randint(-3 * d, 3 * d), rng.randint(-3 * d, 3 * d)
    while True:
        a, b, c, e = (rng.randint(-6, 6) for _ in range(4))
        if a * e - b * c != 0:
            break
    eq1 = f"{a}x + {b}y = {a * x + b * y}".replace("+ -", "- ")
    eq2 = f"{c}x + {e}y = {c * x + e * y}".replace("+ -", "- ")
    return f"Solve the system {eq1} and {eq2}. What is x + y?", x + y


def _calculus(rng: random.Random, d: int) -> tuple[str, Exact]:
    coeffs = [rng.randint(-5, 5) for _ in range(3 + d // 3)]
    coeffs[-1] = coeffs[-1] or 1
    a = rng.randint(-3, 3) if rng.random() < 0.5 else rng.randint(1, 3)
    f = _polynomial(coeffs)
    if rng.random() < 0.5:
        value = sum(i * c * Fraction(a) ** (i - 1) for i, c in enumerate(coeffs) if i > 0)
        return f"Let f(x) = {f}. Compute f'({a}).", value
    upper = abs(a) or 1
    return f"Compute the integral of f(x) = {f} from x = 0 to x = {upper}.", \
        sum(Fraction(c, i + 1) * upper ** (i + 1) for i, c in enumerate(coeffs))


#: name -> (minimum difficulty, generator)
FAMILIES: dict[str, tuple[int, Family]] = {
    "arithmetic": (0, _arithmetic), "fractions": (0, _fractions), "linear": (1, _linear),
    "number_theory": (1, _number_theory), "quadratic": (2, _quadratic), "combinatorics": (2, _combinatorics),
    "series": (3, _series), "probability": (3, _probability), "system": (4, _system), "calculus": (5, _calculus),
}


class MathEnv(Environment):
    """Procedural math with boxed exact answers (module docstring).

    Args:
        timeout_s: math-verify timeout (seconds, for each of parsing and comparison).
        families: restrict to these family names (default: all of ``FAMILIES``).
        holdout: fraction of the problem space reserved for held-out seeds (``environments.holdout``;
            level 0 has a few hundred distinct problems per family).
    """

    name = "math"
    category = "math"
    min_difficulty = 0
    max_difficulty = 9

    def __init__(self, timeout_s: int = 5, families: list[str] | None = None, holdout: float = 0.0) -> None:
        unknown = set(families or []) - set(FAMILIES)
        if unknown:
            raise ValueError(f"math: unknown families {sorted(unknown)}; known: {sorted(FAMILIES)}")
        self.timeout_s, self.families = timeout_s, list(families or FAMILIES)
        self.holdout = check_fraction(self.name, holdout)

    def generate(self, seed: int, difficulty: int) -> Problem:
        d = self.clamp_difficulty(difficulty)
        return generate_on_side(lambda s: self._generate(s, d), seed, self.holdout)

    def _generate(self, seed: int, d: int) -> Problem:
        rng = random.Random(f"math/{seed}/{d}")
        open_families = [f for f in self.families if FAMILIES[f][0] <= d] or [min(self.families, key=lambda f: FAMILIES[f][0])]
        family = rng.choice(open_families)
        question, answer = FAMILIES[family][1](rng, d)
        return Problem(env=self.name, seed=seed, difficulty=d,
                       messages=[{"role": "user", "content": PROMPT.format(question=question)}],
                       answer=latex_number(answer), metadata={"family": family})

    def verify(self, problem: Problem, response: str) -> Score:
        verdict = verify_math(problem.answer or "", response, timeout_s=self.timeout_s)
        if verdict.status != "ok":
            return Score.failed(verdict.status, verdict.reason)
        correct = float(verdict.correct)
        return Score(reward=correct, accuracy=correct, format_ok=verdict.extracted is not None,
                     extracted=verdict.extracted, reason=verdict.reason)

    def reference_response(self, problem: Problem) -> str:
        return f"Working it out exactly, the result is \\boxed{{{problem.answer}}}."
