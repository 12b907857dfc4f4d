"""Test doubles for RSA: a stub engine with scripted outputs and a regex verifier."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

from environments.base import Problem, Score
from zaya_rl.rollout.base import GenerationRequest, GenerationResult, RolloutEngine

ANSWER = re.compile(r"ANSWER=(\S+)")


class StubEngine(RolloutEngine):
    """Completions are ``script(request, call_number)``; cut at the budget or after a stop token.

    Records every request and the largest number of ``generate`` calls in flight at once.
    """

    def __init__(self, script: Callable[[GenerationRequest, int], list[int]]) -> None:
        self.script = script
        self.requests: list[GenerationRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0

    @property
    def version(self) -> int:
        return 0

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        k = len(self.requests)
        self.requests.append(request)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await asyncio.sleep(0)  # siblings started in the same gather get to run before this one finishes
        tokens, reason = [], "length"
        for token in self.script(request, k)[: request.params.max_new_tokens]:
            tokens.append(int(token))
            if token in request.params.stop_token_ids:
                reason = "stop"
                break
        self.in_flight -= 1
        return GenerationResult(request_id=request.request_id, prompt_ids=list(request.prompt_ids),
                                token_ids=tokens, logprobs=[0.0] * len(tokens), versions=[0] * len(tokens),
                                finish_reason=reason)

    async def update_weights(self, weights, version: int) -> None:
        raise NotImplementedError

    async def abort(self, request_id: str) -> None:
        raise NotImplementedError


def regex_verify(problem: Problem, response: str) -> Score:
    """``ANSWER=x`` (last one) is the extracted answer; correct iff it equals the reference."""
    found = ANSWER.findall(response)
    if not found:
        return Score(reward=0.0, accuracy=0.0, format_ok=False, extracted=None, reason="no answer")
    ok = float(found[-1] == problem.answer)
    return Score(reward=ok, accuracy=ok, extracted=found[-1])
