"""Answer extraction shared by the built-in environments and the reasoning-gym adapter.

Pure string functions, no dependencies. ``extract_answer`` tries, in this order:

1. the content of the LAST ``\\boxed{...}`` (braces balanced, so ``\\boxed{\\frac{1}{2}}`` gives
   ``\\frac{1}{2}``; RLVE's own regex would cut at the first ``}``);
2. the content of the LAST ``<answer>...</answer>`` pair;
3. the text after the LAST line that starts with ``Answer:`` (case-insensitive);
4. the whole stripped response (only when ``allow_bare`` is set: the tiny tasks, whose SFT targets are
   bare answers).

The first that matches wins; ``format_ok`` is True for 1-3 and for a non-empty bare response.
"""

from __future__ import annotations

import re

_BOXED = "\\boxed{"
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_ANSWER_LINE = re.compile(r"^\s*answer\s*:\s*(.*?)\s*$", re.IGNORECASE | re.MULTILINE)
_INTEGER = re.compile(r"[+-]?\d+(?:\.0*)?")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` with balanced braces, or None (also when it is unclosed)."""
    start = text.rfind(_BOXED)
    while start != -1:
        depth, i = 1, start + len(_BOXED)
        while i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                return text[start + len(_BOXED) : i].strip()
            i += 1
        start = text.rfind(_BOXED, 0, start)  # unclosed: fall back to an earlier, closed box
    return None


def last_answer_tag(text: str) -> str | None:
    """Stripped content of the last ``<answer>...</answer>`` pair, or None."""
    matches = _ANSWER_TAG.findall(text)
    return matches[-1].strip() if matches else None


def last_answer_line(text: str) -> str | None:
    """Text after the last ``Answer:`` line prefix, or None."""
    matches = _ANSWER_LINE.findall(text)
    return matches[-1] if matches else None


def extract_answer(text: str, *, allow_bare: bool = False) -> tuple[str | None, bool]:
    """Extract the final answer from a response (order in the module docstring).

    Args:
        text: the model's completion.
        allow_bare: fall back to the whole stripped response when no marker is present.

    Returns:
        ``(answer, format_ok)``; ``answer`` is None when nothing could be extracted.
    """
    for finder in (last_boxed, last_answer_tag, last_answer_line):
        found = finder(text)
        if found is not None:
            return found, True
    bare = text.strip()
    if allow_bare and bare:
        return bare, True
    return None, False


def normalize_integer(answer: str) -> str:
    """Canonical form of an integer answer (``+07`` and ``7.0`` → ``7``); other text is only stripped."""
    s = answer.strip().replace(",", "")
    if _INTEGER.fullmatch(s):
        return str(int(s.split(".")[0]))
    return answer.strip()
