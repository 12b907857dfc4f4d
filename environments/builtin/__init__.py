"""Built-in environments, each registered by an entry point in pyproject.toml.

``tiny`` (arithmetic, reverse, sort_digits, count_char: the CPU demo's short tasks), ``puzzles``
(knights_knaves, mini_sudoku), ``math``, ``code`` (+ HumanEval) and ``ifeval``.
"""
