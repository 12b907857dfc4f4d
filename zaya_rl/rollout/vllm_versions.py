"""Which policy version produced each token vLLM streams: exact per-token versions for ``VLLMEngine``.

An in-flight update pauses generation (``pause_generation(mode="keep")``), loads, and resumes. A token
carries version v iff the forward pass that sampled it ran with the weights of v. The engine core runs
in another process (``AsyncLLM``), so "when our adapter received the token" is not that: outputs computed
before the pause may reach the adapter long after it (the frontend processes them one batch at a time,
and with 256 streams on a small model it lags the core by hundreds of milliseconds). Tagging by arrival
put old-weight tokens under the new version on an H100 (issue 13). Two exact bookkeepings replace it:

- ``weight_versions`` (vLLM >= 0.32, and ``SteppedLLM`` on any vLLM): the engine core labels every output
  with the version set by ``update_weight_version``; labels change only while generation is paused, and
  the final ``CompletionOutput.weight_versions`` holds spans ``(version, start, end)`` over output-token
  indexes (research/vllm_ray.md §1c).
- ``core_timestamps`` (vLLM 0.24, no labels): every ``EngineCoreOutputs`` batch carries the engine core's
  ``time.monotonic()`` at creation (one clock for every process of the host). vLLM 0.24's keep-pause
  returns only once the core is idle (``EngineCoreProc.pause_scheduler``: the future completes when
  ``has_work()`` is false), so every batch computed before the pause is stamped before the pause call
  returned, and every batch computed after the resume is stamped after ``resume_generation`` was called.
  A boundary ``(t, v)`` recorded between the load and the resume therefore splits the stream exactly,
  whenever the frontend gets round to processing each batch. A wrapper around
  ``AsyncLLM.output_processor.process_outputs`` (it receives the batch's timestamp) records spans per
  request.

``book_for`` picks the one a frontend supports; ``zaya_rl.rollout.vllm_frontend`` chooses the frontend.
Test: ``python -m pytest tests/rollout/test_vllm_versions.py tests/rollout/test_vllm_real_cpu.py -q``.
"""

from __future__ import annotations

import bisect
import inspect
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar


def spans_to_versions(spans: Sequence[Any], num_tokens: int, request_id: str) -> list[int]:
    """Per-token versions from spans ``(version, start, end)`` (objects with those fields, or tuples).

    Spans must cover tokens ``0 .. num_tokens - 1`` (they may cover more: a canary stop drops the tail of
    a streamed delta); a missing token or a label that is not an integer version raises ``RuntimeError``
    naming the request, because a guessed version would silently corrupt the off-policy correction.
    """
    out: list[int | None] = [None] * num_tokens
    for span in spans:
        version, start, end = (
            span if isinstance(span, (tuple, list)) else (span.version, span.start, span.end)
        )
        try:
            v = int(version)
        except (TypeError, ValueError):
            raise RuntimeError(
                f"request {request_id!r}: tokens {start}..{end} carry the weight label {version!r}, not a "
                "policy version (was the version set before the first request?)"
            ) from None
        for i in range(max(int(start), 0), min(int(end), num_tokens)):
            out[i] = v
    missing = [i for i, v in enumerate(out) if v is None]
    if missing:
        raise RuntimeError(
            f"request {request_id!r}: no weight version recorded for output tokens {missing[:5]} "
            f"(of {num_tokens}); spans: {list(spans)[:4]}"
        )
    return out  # type: ignore[return-value]


class VersionBook(ABC):
    """Per-token policy versions of one engine (see the module docstring)."""

    name: ClassVar[str]

    @abstractmethod
    async def start(self, llm: Any, version: int) -> None:
        """Once, before the first request: the version of the initial weights."""

    @abstractmethod
    async def set_version(self, llm: Any, version: int) -> None:
        """While generation is paused, after a successful load: tokens computed from now on are ``version``."""

    @abstractmethod
    def versions(self, request_id: str, final: Any, num_tokens: int) -> list[int]:
        """Versions of the first ``num_tokens`` output tokens of a finished request (``final``: its last
        ``CompletionOutput``, or None if the stream ended without one)."""

    def release(self, request_id: str) -> None:  # noqa: B027 - books without per-request state skip it
        """Forget a finished request."""


class WeightVersionSpans(VersionBook):
    """vLLM's own labels: ``update_weight_version`` and the final output's ``weight_versions`` spans."""

    name = "weight_versions"

    async def start(self, llm: Any, version: int) -> None:
        await llm.update_weight_version(str(version))

    async def set_version(self, llm: Any, version: int) -> None:
        await llm.update_weight_version(str(version))

    def versions(self, request_id: str, final: Any, num_tokens: int) -> list[int]:
        spans = getattr(final, "weight_versions", None)
        if spans is None:
            if num_tokens == 0:
                return []
            raise RuntimeError(f"request {request_id!r}: vLLM returned no weight_versions for {num_tokens} tokens")
        return spans_to_versions(spans, num_tokens, request_id)


class CoreTimestamps(VersionBook):
    """Versions from engine-core output timestamps against the update boundaries (vLLM 0.24 ``AsyncLLM``).

    Args:
        clock: the clock the engine core stamps its outputs with (``time.monotonic``).
    """

    name = "core_timestamps"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._times: list[float] = []  # boundary times, increasing
        self._versions: list[int] = []  # version from _times[i] on
        self._spans: dict[str, list[list[int]]] = {}  # request -> [[version, start, end], ...]

    async def start(self, llm: Any, version: int) -> None:
        processor = getattr(llm, "output_processor", None)
        if processor is None or "engine_core_timestamp" not in inspect.signature(processor.process_outputs).parameters:
            raise RuntimeError(
                "core_timestamps version bookkeeping needs AsyncLLM.output_processor.process_outputs("
                "..., engine_core_timestamp, ...) (vLLM 0.24 has it); use rollout.vllm.frontend: stepped"
            )
        self._times, self._versions = [float("-inf")], [version]
        inner = processor.process_outputs

        def process_outputs(engine_core_outputs, engine_core_timestamp=None, *args, **kwargs):
            self.record(processor, engine_core_outputs, engine_core_timestamp)
            return inner(engine_core_outputs, engine_core_timestamp, *args, **kwargs)

        processor.process_outputs = process_outputs  # the output handler looks it up on every batch

    async def set_version(self, llm: Any, version: int) -> None:
        self._times.append(self._clock())
        self._versions.append(version)

    def version_at(self, timestamp: float) -> int:
        """The version whose weights computed a batch stamped ``timestamp``."""
        return self._versions[bisect.bisect_right(self._times, timestamp) - 1]

    def record(self, processor: Any, engine_core_outputs: Sequence[Any], timestamp: float | None) -> None:
        """Book the new tokens of one engine-core batch (called before vLLM processes it)."""
        if timestamp is None:
            raise RuntimeError("vLLM passed no engine_core_timestamp to process_outputs")
        version = self.version_at(timestamp)
        for out in engine_core_outputs:
            n = len(out.new_token_ids or ())
            state = processor.request_states.get(out.request_id)
            if not n or state is None:  # no tokens, or a request already aborted
                continue
            spans = self._spans.setdefault(getattr(state, "external_req_id", None) or out.request_id, [])
            end = spans[-1][2] if spans else 0
            if spans and spans[-1][0] == version:
                spans[-1][2] = end + n
            else:
                spans.append([version, end, end + n])

    def versions(self, request_id: str, final: Any, num_tokens: int) -> list[int]:
        return spans_to_versions(self._spans.get(request_id, []), num_tokens, request_id)

    def release(self, request_id: str) -> None:
        self._spans.pop(request_id, None)


#: Book name -> class (``FrontendChoice.versions``).
BOOKS: dict[str, type[VersionBook]] = {"weight_versions": WeightVersionSpans, "core_timestamps": CoreTimestamps}
