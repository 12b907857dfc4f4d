"""The worker process behind ``environments.workers.VerifierPool`` (run as ``python -m environments.worker_main``).

One worker serves one request at a time, in its MAIN thread (so verifiers that use ``signal.alarm``, such
as math-verify, work). Messages are length-prefixed JSON over the process's original stdin/stdout;
after start-up fd 1 is pointed at stderr, so a stray ``print`` in an environment cannot corrupt the
protocol. JSON, not pickle: a worker that was made to run code (``sympy.sympify`` of model output) must
not be able to send the parent an object that executes code when loaded.

Start-up: lower own priority (``nice``), cap address space (``RLIMIT_AS``) and core dumps, start a
watchdog thread that kills the worker's process group when the parent disappears, instantiate the
``preload`` environments (so heavy imports such as RLVE's ~5 s happen before any deadline runs), then
send ``{"ready": pid}``.

Requests: ``{"op": "generate", "env", "env_kwargs", "seed", "difficulty"}``,
``{"op": "verify", "problem", "response", "env_kwargs"}``, ``{"op": "responses", "problem", "env_kwargs"}``,
``{"op": "ping"}``. Replies: ``{"ok": payload}`` or ``{"error": "<ExceptionType>: message"}``, plus
``"recycle": reason`` when the call left the worker unfit for reuse (threads still running, e.g. RLVE's
thread-based timeouts; a MemoryError); the parent then replaces it.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import struct
import sys
import threading
import time
from typing import Any, BinaryIO

HEADER = struct.Struct(">I")
#: Parent-liveness poll period of the watchdog thread (a dead parent is noticed within this time).
_WATCHDOG_PERIOD_S = 1.0
#: Time a call's helper threads get to finish after it returns (RLVE's Integral scores in a thread pool
#: that exits just after the result is read) before the worker counts as having threads left running.
_THREAD_GRACE_S = 0.1


def frame(message: dict[str, Any]) -> bytes:
    """Length-prefixed JSON bytes of one message."""
    data = json.dumps(message, separators=(",", ":")).encode()
    return HEADER.pack(len(data)) + data


def _read_exact(stream: BinaryIO, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def read_message(stream: BinaryIO) -> dict[str, Any] | None:
    """Next message from a blocking stream, or None at end of stream."""
    head = _read_exact(stream, HEADER.size)
    if head is None:
        return None
    body = _read_exact(stream, HEADER.unpack(head)[0])
    return None if body is None else json.loads(body)


_ENVS: dict[tuple[str, str], Any] = {}


def _env(name: str, kwargs: dict[str, Any]) -> Any:
    key = (name, json.dumps(kwargs, sort_keys=True))
    if key not in _ENVS:
        from environments.registry import get_environment

        _ENVS[key] = get_environment(name, **kwargs)
    return _ENVS[key]


def _problem(message: dict[str, Any]) -> tuple[Any, Any]:
    from environments.base import Problem

    problem = Problem.from_dict(message["problem"])
    kwargs = message.get("env_kwargs")
    return problem, _env(problem.env, problem.metadata.get("env_kwargs", {}) if kwargs is None else kwargs)


def _op_generate(message: dict[str, Any]) -> dict[str, Any]:
    kwargs = message.get("env_kwargs") or {}
    problem = _env(message["env"], kwargs).generate(message["seed"], message["difficulty"])
    out = problem.to_dict()
    if out["env"] != message["env"]:
        raise ValueError(f"environment {message['env']!r} returned a problem named {out['env']!r}")
    if kwargs:  # the verifier must be rebuilt with the same constructor arguments
        out["metadata"] = {**out["metadata"], "env_kwargs": kwargs}
    return out


def _op_verify(message: dict[str, Any]) -> dict[str, Any]:
    from environments.base import Score

    problem, env = _problem(message)
    score = env.verify(problem, message["response"])
    if not isinstance(score, Score):
        raise TypeError(f"{problem.env}.verify returned {type(score).__name__}, not Score")
    return score.to_dict()


def _op_responses(message: dict[str, Any]) -> dict[str, Any]:
    problem, env = _problem(message)
    out: dict[str, Any] = {"wrong": env.wrong_response(problem), "reference": None, "reference_error": None}
    try:
        out["reference"] = env.reference_response(problem)
    except NotImplementedError as e:
        out["reference_error"] = str(e)
    return out


_OPS = {
    "generate": _op_generate,
    "verify": _op_verify,
    "responses": _op_responses,
    "ping": lambda message: "pong",
}


def handle(message: dict[str, Any]) -> dict[str, Any]:
    """Run one request; every failure becomes an ``error`` reply (SystemExit included)."""
    try:
        return {"ok": _OPS[message["op"]](message)}
    except MemoryError as e:
        return {"error": f"MemoryError: {e}", "recycle": "MemoryError"}
    except BaseException as e:  # noqa: BLE001 - a verifier calling sys.exit() must not end the worker
        return {"error": f"{type(e).__name__}: {e}"}


def _limit_self(nice: int, memory_limit_mb: int | None) -> None:
    os.nice(nice)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a segfaulting verifier must not write core files
    if memory_limit_mb:
        limit = memory_limit_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _watch_parent(parent: int) -> None:
    def watch() -> None:
        while True:
            time.sleep(_WATCHDOG_PERIOD_S)
            if os.getppid() != parent:
                os.killpg(os.getpgrp(), signal.SIGKILL)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _lingering_threads(baseline: set[threading.Thread]) -> int:
    """Threads started by the last call that are still alive after a short grace period."""
    deadline = time.monotonic() + _THREAD_GRACE_S
    extra = [t for t in threading.enumerate() if t not in baseline]
    for t in extra:
        t.join(max(0.0, deadline - time.monotonic()))
    return sum(t.is_alive() for t in extra)


def serve(settings: dict[str, Any]) -> None:
    """The worker's main loop (see the module docstring)."""
    proto_in = os.fdopen(os.dup(0), "rb")
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)
    _limit_self(settings["nice"], settings["memory_limit_mb"])
    _watch_parent(settings["parent_pid"])
    try:
        for name, kwargs in settings["preload"]:
            _env(name, kwargs)
    except Exception as e:
        proto_out.write(frame({"startup_error": f"preload failed: {type(e).__name__}: {e}"}))
        proto_out.flush()
        return
    proto_out.write(frame({"ready": os.getpid()}))
    proto_out.flush()
    baseline = set(threading.enumerate())
    while (message := read_message(proto_in)) is not None:
        reply = handle(message)
        left = _lingering_threads(baseline)
        if left:
            reply["recycle"] = f"{left} thread(s) left running"
        try:
            data = frame(reply)
        except (TypeError, ValueError) as e:
            data = frame({"error": f"reply is not JSON-serialisable: {type(e).__name__}: {e}"})
        proto_out.write(data)
        proto_out.flush()


if __name__ == "__main__":
    serve(json.loads(sys.argv[1]))
