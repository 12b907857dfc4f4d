"""Tests of the example environment, against hand-made problems (run: ``python -m pytest tests -q``)."""

from zaya_env_example import MaxDigit

from environments.base import Problem


def test_generate_is_deterministic_and_follows_the_difficulty():
    env = MaxDigit()
    p = env.generate(seed=3, difficulty=4)
    assert p == env.generate(seed=3, difficulty=4)
    digits = p.prompt_text.removeprefix("max ")
    assert len(digits) == 6 and p.answer == max(digits)


def test_verify_accepts_the_answer_in_any_supported_format():
    env = MaxDigit()
    p = Problem(env="max_digit", seed=0, difficulty=1, messages=[{"role": "user", "content": "max 472"}], answer="7")
    assert [env.verify(p, r).reward for r in ("7", "\\boxed{7}", "Answer: 7", "4", "")] == [1, 1, 1, 0, 0]
