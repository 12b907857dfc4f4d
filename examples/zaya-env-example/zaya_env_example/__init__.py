"""An example zaya_rl environment package: ``max_digit`` (docs/environments.md walks through it)."""

from zaya_env_example.max_digit import MaxDigit

__all__ = ["MaxDigit"]
