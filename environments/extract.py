"""Answer extraction shared by the built-in environments and the reasoning-gym adapter.

Pure string functions, no dependencies. ``extract_answer`` tries, in this order:

1. the content of the LAST ``\\boxed{...}`` (braces balanced, so ``\\boxed{\\frac{1}{2}}`` gives
   ``\\frac{1}{2}``; RLVE's own regex would cut at the first ``}``);
2. the content of the LAST ``<answer>...</answer>`` pair;
3. the text after the LAST line that starts with ``Answer:`` (case-insensitive);
4. the whole stripped response (only when ``allow_bare`` is set: the tiny tasks, whose SFT targets are
   bare answers).

The first that matches wins; ``format_ok`` is True for 1-3 and for a non-empty bare response.

``final_number`` reads the final numeric answer of a free-form solution, for tasks whose answer is one
number and models that answer in their own words (SmolLM2-135M-Instruct writes "#### 8", "The answer is:
8" or "... = 8 apples."; tests/environments/test_real_outputs.py holds outputs it produced). See its
docstring for the order of the rules and why a number elsewhere in the reasoning never counts.
"""

from __future__ import annotations

import re

_BOXED = "\\boxed{"
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_ANSWER_LINE = re.compile(r"^\s*answer\s*:\s*(.*?)\s*$", re.IGNORECASE | re.MULTILINE)
_INTEGER = re.compile(r"[+-]?\d+(?:\.0*)?")
#: A number as models write it: sign, thousands commas, decimals ("-1,234.5", "8", "0.25"); a currency sign
#: before it is allowed ("$8", "€1.6"), a letter or digit is not.
_NUMBER = re.compile(r"(?<![\w.])[-−]?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,])|(?<![\w.])[-−]?\d+(?:\.\d+)?(?!\d)")
#: Not one number: a fraction, a ratio, or an expression left unevaluated ("3/4", "\\frac{1}{2}", "4:1", "18 - 5").
_NOT_ONE_NUMBER = re.compile(r"\\d?frac|\d\s*[/:]\s*\d|\d\s*(?:[+*×÷x]|\s-)\s*[-(]?\s*\d")
#: Where a stated value follows: the last of these in a fragment or line.
_RESULT_OF = re.compile(
    r"=|\bequals\b|\bis equal to\b|\bis\b|\bare\b|\bwas\b|\bresults? in\b|\bgives(?: us)?\b|\bgets?\b"
)
#: End of the sentence holding the answer (a period followed by a space or the end; "2.5" does not end it).
_SENTENCE_END = re.compile(r"\.(?:\s|$)|\n")
#: GSM8K's final-answer line, "#### 8".
_HASHES = re.compile(r"^[ \t]*####[ \t]*(.+?)[ \t]*$", re.MULTILINE)
#: "The answer is 8", "final answer: 8", "The answer to this problem is 8", "The result is 8": the fragment
#: after the verb, to the end of its line. The value must start right after the verb (a digit, sign, currency
#: or bracket), so "The reason for the answer is that 10 minutes is ..." is not an answer phrase.
_ANSWER_PHRASE = re.compile(
    r"\b(?:answer|result)\b[^\n=.:\d]{0,60}?(?:\bis\b|\bwas\b|\bequals\b|:|=)\s*:?\s*([-−+$€£(\\]{0,2}\s*\d.*)",
    re.IGNORECASE,
)
#: Inside a marked fragment, what introduces the value of a written-out equation.
_EQUALS = re.compile(r"=|\bequals\b|\bis equal to\b")


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


def _canonical(number: str) -> str:
    return normalize_integer(number.replace("−", "-"))


def number_in(fragment: str) -> str | None:
    """The answer number inside a marked fragment, canonical (``normalize_integer``), or None.

    The fragment is what a marker enclosed ("8 apples.", "$1,200", "5 + 3 = 8"), read up to the end of its
    first sentence. The value is the first number after the last ``=``/"equals" in it (the result of a
    written-out equation), else its first number. A fraction, ratio or unevaluated expression ("3/4",
    "\\frac{1}{2}", "4:1", "-(4 * -6)") is not one number: None, so a part of it is never read as the answer.
    """
    fragment = fragment.replace("\\$", "").replace("$", "").replace("**", "")
    fragment = _SENTENCE_END.split(fragment, maxsplit=1)[0]
    marks = list(_EQUALS.finditer(fragment))
    tail = fragment[marks[-1].end():] if marks else fragment
    if _NOT_ONE_NUMBER.search(tail):
        return None
    found = _NUMBER.search(tail)
    return _canonical(found.group(0)) if found else None


def final_statement_value(text: str) -> str | None:
    """The value a response's last line concludes with ("so he has 5 + 3 = 8 apples.", "4 + 7 equals 11.",
    "So, (1 - 1) is 0."): the number right after the line's last ``=``/"equals"/"is"/"results in" (a
    currency sign may sit between), unless it starts an expression; else None."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return None
    marks = list(_RESULT_OF.finditer(lines[-1]))
    if not marks:
        return None
    tail = lines[-1][marks[-1].end():].replace("\\$", "").replace("$", "").replace("**", "")
    tail = _SENTENCE_END.split(tail, maxsplit=1)[0]
    found = _NUMBER.match(tail.lstrip(" €£"))
    if found is None or _NOT_ONE_NUMBER.match(tail.lstrip(" €£(")):
        return None
    return _canonical(found.group(0))


def final_number(text: str) -> tuple[str | None, str]:
    """The final numeric answer of a free-form solution and the rule that found it (``""``: none).

    Rules, first match wins; each looks at the LAST occurrence of its marker:

    1. ``boxed``: ``\\boxed{...}``; 2. ``tag``: ``<answer>...</answer>``; 3. ``hashes``: a ``#### ...`` line;
    4. ``phrase``: "the answer is ...", "answer: ...", "the result of ... is ..." (to the end of its line);
    5. ``statement``: the value the last line concludes with (``final_statement_value``).

    Inside a marker the number is read by ``number_in``; the first marker present decides (a box holding a
    fraction gives None, not a number found by a later rule). A number that no rule marks (a bare last
    number, an intermediate result in an earlier line) is never taken: a response that stops mid-way, or
    lists quantities without concluding, must not score by accident.
    """
    for rule, finder in (("boxed", last_boxed), ("tag", last_answer_tag), ("hashes", _last_hashes),
                         ("phrase", _last_phrase)):
        fragment = finder(text)
        if fragment is not None:  # the first marker present decides, even when it holds no number
            number = number_in(fragment)
            return (number, rule) if number is not None else (None, "")
    number = final_statement_value(text)
    return (number, "statement") if number is not None else (None, "")


def _last_hashes(text: str) -> str | None:
    found = _HASHES.findall(text)
    return found[-1] if found else None


def _last_phrase(text: str) -> str | None:
    found = _ANSWER_PHRASE.findall(text)
    return found[-1] if found else None
