"""The aggregation prompt of Markovian RSA, built as chat messages so the policy's chat template applies.

Structure (research/algorithms.md §8.1, the RSA harness's layout; the wording is our own): an instruction
that says several excerpts of earlier attempts follow, each only the *end* of an attempt (Markovian RSA
keeps the last τ tokens, §8.2), possibly wrong and possibly cut at the start, and that the model should
combine what holds up into one improved solution ending with the answer in the task's format; then
"Problem:" and the problem text; each tail under a numbered separator; a closing instruction.

Token bound: everything except the problem and the tails is fixed text, so a prompt is at most
``|problem| + C·τ + overhead`` tokens whatever the candidates' lengths (``zaya_rl.rsa.tails`` guarantees
each tail re-encodes to at most τ tokens). The RL pipeline reuses ``build_aggregation_messages`` to make
aggregation prompts from the policy's own recent tails (DESIGN.md §4, "RSA as an RL task mode").

Run ``python -m pytest tests/rsa/test_prompts.py -q``.
"""

from __future__ import annotations

from collections.abc import Sequence

Messages = list[dict[str, str]]

#: Phrase used when the caller names no answer format: the problem text, repeated in the prompt, says it.
DEFAULT_ANSWER_FORMAT = "in the format the problem asks for"

_INTRO = (
    "Below is a problem together with {count} from earlier attempts to solve it. Each excerpt is only the "
    "closing part of an attempt: it may start in the middle of a sentence, the attempt may have been cut "
    "off before it finished, and any excerpt may contain mistakes.\n"
    "Read them critically. Keep the steps that hold up, settle disagreements by checking the work "
    "yourself, and take a fresh approach if none of them is convincing. Then write one complete, improved "
    "solution that ends with the final answer {answer_format}."
)
_PROBLEM = "Problem:\n{problem}"
_HEADER = "Excerpts from earlier attempts (possibly wrong, possibly cut at the start):"
_SEPARATOR = "----- Excerpt {index} of {total} -----"
_FOOTER = "----- End of excerpts -----"
_CLOSING = (
    "Now write your own improved solution to the problem, reasoning step by step, and end with the final "
    "answer {answer_format}."
)


def _excerpt_count(n: int) -> str:
    return "one excerpt" if n == 1 else f"{n} excerpts"


def aggregation_text(problem: str, tails: Sequence[str], *, answer_format: str | None = None) -> str:
    """The user-turn text of an aggregation prompt (module docstring): instruction, problem, tails, closing.

    Args:
        problem: the problem statement, as the model saw it in the initial round.
        tails: tail texts, in the order they are shown (at least one).
        answer_format: how the final answer must be given, e.g. ``in \\boxed{}``; None uses
            ``DEFAULT_ANSWER_FORMAT``.
    """
    if not tails:
        raise ValueError("build_aggregation_messages: tails is empty; an aggregation prompt needs at least one")
    fmt = answer_format or DEFAULT_ANSWER_FORMAT
    parts = [
        _INTRO.format(count=_excerpt_count(len(tails)), answer_format=fmt),
        _PROBLEM.format(problem=problem),
        _HEADER,
    ]
    for i, tail in enumerate(tails, start=1):
        parts.append(_SEPARATOR.format(index=i, total=len(tails)) + "\n" + tail)
    parts += [_FOOTER, _CLOSING.format(answer_format=fmt)]
    return "\n\n".join(parts)


def build_aggregation_messages(
    problem: str | Messages, tails: Sequence[str], *, answer_format: str | None = None
) -> Messages:
    """Chat messages of one aggregation prompt.

    Args:
        problem: the problem's chat messages (``Problem.messages``) or its text. With messages, the last
            user turn is the problem text and every system message is kept in front, so a system prompt
            applies to aggregation prompts as it did to the initial round; other turns are dropped
            (an aggregation prompt is a fresh single-turn request).
        tails: tail texts of the sampled candidates (``zaya_rl.rsa.tails.decode_tail``).
        answer_format: see ``aggregation_text``.

    Returns:
        ``[*system_messages, {"role": "user", "content": aggregation_text(...)}]``.
    """
    if isinstance(problem, str):
        system, text = [], problem
    else:
        users = [m["content"] for m in problem if m.get("role") == "user"]
        if not users:
            raise ValueError("build_aggregation_messages: the problem's messages contain no user turn")
        system, text = [dict(m) for m in problem if m.get("role") == "system"], users[-1]
    return [*system, {"role": "user", "content": aggregation_text(text, tails, answer_format=answer_format)}]
