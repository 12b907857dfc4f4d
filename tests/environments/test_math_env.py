"""The procedural math environment: python -m pytest tests/environments/test_math_env.py -q

Answers are re-derived independently from the question text (Python/Fraction evaluation, sympy solving,
brute-force enumeration), not read back from the generator.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from fractions import Fraction
from importlib.metadata import entry_points

import pytest
import sympy

from environments.base import Problem, Score
from environments.builtin import math as math_env
from environments.builtin.math import FAMILIES, MathEnv, latex_number
from rewards.math import MathVerdict

ENV = MathEnv()


def question(p: Problem) -> str:
    return p.prompt_text.split("\n\n", 1)[1]


def problems_of(family: str, n: int = 6):
    env = MathEnv(families=[family])
    lo = FAMILIES[family][0]
    return [env.generate(seed, d) for seed in range(n) for d in (lo, 9)]


def gold(p: Problem) -> sympy.Expr:
    return sympy.sympify(p.answer.replace("\\frac{", "Rational(").replace("}{", ",").replace("}", ")"))


def test_registered_by_entry_point():
    eps = {ep.name: ep for ep in entry_points(group="zaya_rl.environments")}  # load only ours
    assert eps["math"].load() is MathEnv


def test_latex_number():
    assert latex_number(Fraction(-3, 4)) == "-\\frac{3}{4}"
    assert latex_number(Fraction(8, 4)) == "2" and latex_number(-7) == "-7"


def test_deterministic_and_serialisable():
    a, b = ENV.generate(11, 4), ENV.generate(11, 4)
    assert a == b and ENV.generate(12, 4) != a
    back = Problem.from_dict(json.loads(json.dumps(a.to_dict())))
    assert back == a and ENV.verify(back, ENV.reference_response(back)).accuracy == 1.0


def test_difficulty_clamped_and_families_unlock():
    assert ENV.generate(0, 99).difficulty == 9 and ENV.generate(0, -3).difficulty == 0
    seen = {ENV.generate(s, 0).metadata["family"] for s in range(60)}
    assert seen == {"arithmetic", "fractions"}
    assert {ENV.generate(s, 9).metadata["family"] for s in range(300)} == set(FAMILIES)


def test_arithmetic_and_fractions_answers():
    for p in problems_of("arithmetic"):
        expr = re.fullmatch(r"Compute (.*)\.", question(p)).group(1)
        assert gold(p) == eval(expr)  # our own generated integer expression
    for p in problems_of("fractions"):
        expr = re.match(r"Compute (.*)\. Give", question(p)).group(1)
        assert gold(p) == eval(re.sub(r"(\d+)/(\d+)", r"Fraction(\1, \2)", expr))


def test_equation_answers_by_sympy():
    x, y = sympy.symbols("x y")
    parse = lambda s: sympy.sympify(re.sub(r"(\d)x", r"\1*x", s).replace("^", "**"))  # noqa: E731
    for p in problems_of("linear"):
        lhs, rhs = re.search(r"Solve for x: (.*) = (.*)\.", question(p)).groups()
        assert sympy.solve(sympy.Eq(parse(lhs), parse(rhs)), x) == [gold(p)]
    for p in problems_of("quadratic"):
        poly = parse(re.search(r"solutions of (.*) = 0", question(p)).group(1))
        roots = sympy.roots(sympy.Poly(poly, x))  # {root: multiplicity}
        assert sum(r**2 * m for r, m in roots.items()) == gold(p)
    for p in problems_of("system"):
        eq1, eq2 = re.search(r"system (.*) and (.*)\. What", question(p)).groups()
        sides = [e.replace("y", "*y").replace("x", "*x").split(" = ") for e in (eq1, eq2)]
        sol = sympy.solve([sympy.sympify(left) - sympy.sympify(right) for left, right in sides], [x, y])
        assert sol[x] + sol[y] == gold(p)


def test_calculus_answers_by_sympy():
    x = sympy.symbols("x")
    for p in problems_of("calculus"):
        q = question(p)
        f = sympy.sympify(re.sub(r"(\d)x", r"\1*x", re.search(r"f\(x\) = (.*?)(\.| from)", q).group(1)).replace("^", "**"))
        if "f'(" in q:
            a = int(re.search(r"f'\((-?\d+)\)", q).group(1))
            assert sympy.diff(f, x).subs(x, a) == gold(p)
        else:
            upper = int(re.search(r"to x = (\d+)", q).group(1))
            assert sympy.integrate(f, (x, 0, upper)) == gold(p)


def test_counting_answers_by_enumeration():
    for p in problems_of("probability"):
        q = question(p)
        if "dice" in q:
            n, target = map(int, re.search(r"(\d) fair.*sum is (\d+)", q).groups())
            rolls = list(itertools.product(range(1, 7), repeat=n))
            assert gold(p) == sympy.Rational(sum(sum(r) == target for r in rolls), len(rolls))
        else:
            red, blue = map(int, re.search(r"(\d+) red and (\d+) blue", q).groups())
            pairs = list(itertools.combinations(["r"] * red + ["b"] * blue, 2))
            assert gold(p) == sympy.Rational(sum(a == b == "r" for a, b in pairs), len(pairs))
    for p in problems_of("combinatorics"):
        q = question(p)
        if "word" in q:
            word = re.search(r"the word (\w+)", q).group(1)
            if len(word) <= 8:
                assert gold(p) == len(set(itertools.permutations(word)))
        elif "committee" in q:
            k, n = map(int, re.search(r"of (\d+) be chosen from (\d+)", q).groups())
            assert gold(p) == math.comb(n, k)


def test_number_theory_answers():
    for p in problems_of("number_theory", 12):
        q, nums = question(p), [int(v) for v in re.findall(r"\d+", question(p))]
        if "greatest common divisor" in q:
            assert gold(p) == sympy.gcd(*nums)
        elif "least common multiple" in q:
            assert gold(p) == sympy.ilcm(*nums)
        elif "remainder" in q:
            assert gold(p) == pow(nums[0], nums[1], nums[2])
        elif "How many" in q:
            assert gold(p) == sympy.divisor_count(nums[0])
        else:
            assert gold(p) == sympy.divisor_sigma(nums[0])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_reference_right_wrong_wrong(family):
    for p in problems_of(family, 3):
        assert ENV.verify(p, ENV.reference_response(p)).accuracy == 1.0
        assert ENV.verify(p, ENV.wrong_response(p)).accuracy == 0.0


def test_other_answer_formats_and_no_answer():
    p = MathEnv(families=["fractions"]).generate(2, 3)
    value = gold(p)
    assert ENV.verify(p, f"Answer: {value.p}/{value.q}").reward == 1.0
    assert ENV.verify(p, f"so it equals {float(value):.10f}").reward == 1.0
    none = ENV.verify(p, "I give up")
    assert (none.reward, none.format_ok, none.status) == (0.0, False, "ok")


def test_verifier_failures_become_failed_scores(monkeypatch):
    monkeypatch.setattr(math_env, "verify_math",
                        lambda *a, **k: MathVerdict(False, "9", "boxed", "timeout", "math-verify exceeded 5 s"))
    score = ENV.verify(ENV.generate(0, 0), "\\boxed{9}")
    assert score == Score.failed("timeout", "math-verify exceeded 5 s")


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="unknown families"):
        MathEnv(families=["topology"])
