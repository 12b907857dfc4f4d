"""Math answers: extraction from a response, and equivalence with the gold answer through math-verify.

Extraction (``extract_answer``), first rule that yields a non-empty answer wins:

1. ``boxed``: the last ``\\boxed{...}`` or ``\\fbox{...}`` (balanced braces, so ``\\boxed{\\frac{1}{2}}``
   is whole; empty boxes are skipped).
2. ``answer_line``: the last "final answer: X" / "answer: X" / "the answer is X" phrase; X runs to the end
   of its line, with ``$``, ``**`` and a trailing period removed.
3. ``last_number``: the last number in the text (``-3``, ``1,000``, ``2.5``, ``3/4``).

Equivalence (``answers_equivalent``): both sides are wrapped as ``\\boxed{...}`` and parsed by math-verify
with ``LatexExtractionConfig`` then ``ExprExtractionConfig`` (so LaTeX and plain ``sqrt(2)/2`` both
parse), then ``verify(gold, pred)``, gold first: the check is asymmetric (research/environments.md §3.1).
It accepts 1/2 = 0.5 = \\frac{1}{2}, 3 = 3.0, \\sqrt{2}/2 = \\frac{\\sqrt2}{2}, 50\\% = 0.5 = 50, x=2 = 2,
set order, interval endpoints (``(1,2]`` != ``(1,2)``), and rounds floats to 6 digits (\\pi != 3.14).

Timeouts: math-verify times out with ``signal.alarm``, which works only in a main thread. ``verify_math``
uses it directly when called from the main thread (the verifier pool's worker processes); from any
other thread it hands the request to a helper process (``python -m rewards.math``, started once per
process, requests serialised by a lock) whose main thread runs the same code with alarms, and the caller
waits with its own deadline, killing and restarting the helper when it passes.

``verify_math`` never raises: no answer or a wrong one gives ``correct=False`` with a reason; a timeout
or an internal error gives ``status`` ``timeout``/``error`` (the environment maps those to
``Score.failed``). ``python -m pytest tests/rewards/test_math.py -q``.
"""

from __future__ import annotations

import json
import re
import select
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass
from typing import Literal

#: Longest extracted answer we parse; longer ones are rejected (PipelineRL caps at 1,000 characters):
#: LaTeX parsing time grows fast with length and a real final answer is short.
MAX_ANSWER_CHARS = 1000
_BOX_OPENERS = ("\\boxed{", "\\fbox{")
_ANSWER_LINE = re.compile(r"(?:final\s+answer|answer)\s*(?:is|:|=)\s*:?\s*(.+)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:\s*/\s*\d+)?", re.ASCII)
#: Extra seconds the caller waits for the helper beyond its three parse/verify timeouts (IPC, start).
_HELPER_SLACK_S = 2.0
_HELPER_START_S = 60.0

MathStatus = Literal["ok", "timeout", "error"]


@dataclass(frozen=True)
class MathVerdict:
    """Verdict on one response.

    Attributes:
        correct: the extracted answer is equivalent to the gold one.
        extracted: the extracted answer, or None.
        method: the extraction rule that found it (``boxed``, ``answer_line``, ``last_number``) or "".
        status: ``ok``, or ``timeout``/``error`` when the verifier itself failed.
        reason: why it is not correct, or why the verifier failed.
    """

    correct: bool
    extracted: str | None = None
    method: str = ""
    status: MathStatus = "ok"
    reason: str = ""


def last_boxed(text: str) -> str | None:
    """Content of the last non-empty ``\\boxed{}``/``\\fbox{}`` with balanced braces, or None.

    One pass pairs every brace (so a response full of unclosed boxes costs O(n), not O(n²)).
    """
    stack, closing = [], {}
    for i, ch in enumerate(text):
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            closing[stack.pop()] = i
    starts = sorted((i + len(opener) - 1 for opener in _BOX_OPENERS for i in _find_all(text, opener)), reverse=True)
    for brace in starts:
        if brace in closing:
            content = text[brace + 1 : closing[brace]].strip()
            if content:
                return content
    return None


def extract_answer(text: str) -> tuple[str, str] | None:
    """(answer, rule) by the rules of the module docstring, or None when there is no answer."""
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed, "boxed"
    lines = [m.group(1) for m in _ANSWER_LINE.finditer(text)]
    if lines:
        answer = lines[-1].replace("**", "").replace("\\(", "").replace("\\)", "")
        answer = answer.strip().strip("$").strip().rstrip(".").strip()
        if answer:
            return answer, "answer_line"
    numbers = _NUMBER.findall(text)
    if numbers:
        return numbers[-1].replace(" ", ""), "last_number"
    return None


def answers_equivalent(gold: str, pred: str, *, timeout_s: int = 5) -> bool:
    """Whether ``pred`` equals ``gold`` by math-verify (main thread only: it uses signal.alarm).

    Raises:
        ValueError: the gold answer does not parse (an environment bug, not the model's).
        TimeoutError: parsing or comparison took longer than ``timeout_s``.
    """
    from math_verify import verify
    from math_verify.errors import TimeoutException

    try:
        gold_parsed = _parse(gold, timeout_s)
        if not gold_parsed:
            raise ValueError(f"gold answer {gold!r} does not parse")
        pred_parsed = _parse(pred, timeout_s)
        if not pred_parsed:
            return False
        try:
            return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout_s, raise_on_error=True))
        except Exception:  # noqa: BLE001 - a sympy error in one pairing: let math-verify skip it
            return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout_s, raise_on_error=False))
    except TimeoutException as exc:  # a BaseException in math-verify
        raise TimeoutError(str(exc)) from None


def verify_math(gold: str, response: str, *, timeout_s: int = 5) -> MathVerdict:
    """Extract the answer from ``response`` and compare it with ``gold``; never raises (module docstring)."""
    if threading.current_thread() is not threading.main_thread():
        return _HELPER.verify(gold, response, timeout_s)
    return _verify_here(gold, response, timeout_s)


def _verify_here(gold: str, response: str, timeout_s: int) -> MathVerdict:
    if not isinstance(response, str) or not isinstance(gold, str):
        return MathVerdict(False, reason=f"expected str inputs, got {type(gold).__name__}/{type(response).__name__}")
    found = extract_answer(response)
    if found is None:
        return MathVerdict(False, reason="no answer found (no \\boxed{}, answer line or number)")
    answer, method = found
    if len(answer) > MAX_ANSWER_CHARS:
        return MathVerdict(False, answer[:80] + "...", method, reason=f"answer longer than {MAX_ANSWER_CHARS} chars")
    try:
        correct = answers_equivalent(gold, answer, timeout_s=timeout_s)
    except TimeoutError:
        return MathVerdict(False, answer, method, "timeout", f"math-verify exceeded {timeout_s} s")
    except Exception as exc:  # noqa: BLE001 - the verifier's failure, reported, never raised
        return MathVerdict(False, answer, method, "error", f"{type(exc).__name__}: {exc}")
    return MathVerdict(correct, answer, method, reason="" if correct else f"{answer!r} is not equivalent to {gold!r}")


def _parse(expr: str, timeout_s: int) -> list:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    configs = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    return parse(f"\\boxed{{{expr}}}", extraction_config=configs, parsing_timeout=timeout_s, raise_on_error=True)


def _find_all(text: str, needle: str):
    i = text.find(needle)
    while i >= 0:
        yield i
        i = text.find(needle, i + 1)


class _Helper:
    """A ``python -m rewards.math`` child that verifies in its main thread; JSON lines over pipes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None

    def verify(self, gold: str, response: str, timeout_s: int) -> MathVerdict:
        with self._lock:
            try:
                if self._proc is None or self._proc.poll() is not None:
                    self._start()
                self._proc.stdin.write(json.dumps([gold, response, timeout_s]) + "\n")
                self._proc.stdin.flush()
                line = self._readline(3 * timeout_s + _HELPER_SLACK_S)
            except (OSError, TypeError, ValueError, TimeoutError) as exc:
                self._stop()
                status: MathStatus = "timeout" if isinstance(exc, TimeoutError) else "error"
                return MathVerdict(False, status=status, reason=f"math helper process: {exc}")
            return MathVerdict(**json.loads(line))

    def _start(self) -> None:
        self._proc = subprocess.Popen([sys.executable, "-m", "rewards.math"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, bufsize=1)
        if self._readline(_HELPER_START_S) != "ready":
            raise OSError("the math helper did not start")

    def _readline(self, wait_s: float) -> str:
        ready, _, _ = select.select([self._proc.stdout], [], [], wait_s)
        if not ready:
            raise TimeoutError(f"no answer within {wait_s:g} s")
        line = self._proc.stdout.readline()
        if not line:
            raise OSError("the math helper exited")
        return line.strip()

    def _stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None


_HELPER = _Helper()


def _serve() -> None:
    """Helper-process loop: one JSON request per stdin line, one JSON verdict per stdout line."""
    import math_verify  # noqa: F401 - import before "ready" so the first request is not slowed

    print("ready", flush=True)
    for line in sys.stdin:
        gold, response, timeout_s = json.loads(line)
        print(json.dumps(asdict(_verify_here(gold, response, timeout_s))), flush=True)


if __name__ == "__main__":
    _serve()
