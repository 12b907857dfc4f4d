"""Built-in environments: math, code (+ HumanEval), instruction following, and the rest registered in pyproject."""
