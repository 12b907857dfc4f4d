"""Run untrusted Python in a sandboxed child process: ``from rewards.sandbox import run_python``.

Every code reward (stdin/stdout tests, HumanEval ``check()``) goes through ``run_python``. Each call:

- writes the program to a fresh temp dir, removed afterwards (the child's cwd; with the ``private_tmp``
  layer the child works in a size-capped tmpfs copy of it);
- starts ``python -I -S -B -X utf8 main.py`` (isolated mode, no site-packages: stdlib only) in a new
  session / process group, with an environment holding only PATH, HOME, LANG, LC_ALL and TMPDIR;
- applies the isolation layers of ``rewards.isolation`` between fork and exec (rlimits, an empty network
  namespace, private tmpfs over the world-writable dirs, a fresh unprivileged uid, parent-death signal,
  seccomp); which of them took effect is reported per run in ``SandboxResult.isolation``, and a
  missing layer is logged once per process as a warning;
- feeds ``stdin`` and reads stdout/stderr through one selector loop, each stream capped at
  ``max_output_bytes`` (the program is killed when it goes past the cap, so huge output never
  accumulates in memory);
- kills the whole process group and every process of the run's uid when the program exits, times out or
  overflows, then reaps it (``wait4``, for its CPU time).

``SandboxResult.status``:

- ``ok``: exit code 0.
- ``error``: non-zero exit or a signal (exception, syntax error, segfault, a denied syscall's error...).
- ``timeout``: wall clock past ``timeout_s`` (killed by us), or CPU past ``cpu_s`` (SIGXCPU/SIGKILL).
- ``memory``: ``MemoryError`` (RLIMIT_AS), or SIGKILL that was neither ours nor the CPU limit (the OOM
  killer).
- ``output_limit``: stdout or stderr passed ``max_output_bytes``.
- ``sandbox_error``: the sandbox itself failed (temp dir, spawn, a mandatory layer); a verifier failure,
  not the program's fault.

The verdict is about the program; callers map ``sandbox_error`` to ``Score.failed``. Run this only in
verifier worker processes (``environments.workers``), never in the trainer. Linux only. Cost: about
13 ms per run on top of the interpreter's own ~10 ms start (2-core dev VM, all layers active).
``python -m pytest tests/rewards/test_sandbox.py -q`` runs the adversarial programs.
"""

from __future__ import annotations

import logging
import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Literal

from rewards.isolation import (
    LAYERS,
    ChildSetup,
    Limits,
    build_seccomp_filter,
    fresh_uid,
    hidden_interpreter,
    kill_uid,
    layer_names,
)

log = logging.getLogger(__name__)

SandboxStatus = Literal["ok", "error", "timeout", "memory", "output_limit", "sandbox_error"]
_READ_CHUNK = 1 << 16
_warned_missing: set[tuple[str, ...]] = set()
_seccomp_cache: dict[tuple[int, int], object] = {}


@dataclass(frozen=True)
class SandboxResult:
    """Outcome of one sandboxed run.

    Attributes:
        status: see the module docstring.
        stdout: captured stdout (UTF-8, undecodable bytes replaced), at most ``max_output_bytes`` bytes.
        stderr: captured stderr, same cap.
        returncode: exit code, negative for a signal; None when the program never started.
        wall_s: wall-clock seconds from spawn to exit or kill.
        cpu_s: CPU seconds (user + system) of the main process.
        isolation: the isolation layers that took effect (``rewards.isolation.LAYERS``).
        reason: one line explaining a non-``ok`` status.
    """

    status: SandboxStatus
    stdout: str
    stderr: str
    returncode: int | None
    wall_s: float
    cpu_s: float = 0.0
    isolation: tuple[str, ...] = ()
    reason: str = ""


def run_python(
    code: str,
    stdin: str = "",
    *,
    timeout_s: float = 5.0,
    memory_mb: int = 512,
    cpu_s: int | None = None,
    max_output_bytes: int = 1 << 20,
    max_file_mb: int = 16,
    max_open_files: int = 64,
    max_processes: int = 8,
    args: tuple[str, ...] = (),
    python: str | None = None,
) -> SandboxResult:
    """Run ``code`` as a Python program with ``stdin`` under the sandbox (module docstring).

    Args:
        code: program source.
        stdin: text fed to the program's standard input.
        timeout_s: wall-clock limit in seconds.
        memory_mb: address-space limit per process, MiB.
        cpu_s: CPU-seconds limit; defaults to ``ceil(timeout_s)``.
        max_output_bytes: cap on each of stdout and stderr.
        max_file_mb: largest file the program may write, MiB.
        max_open_files: open file descriptors.
        max_processes: processes and threads the run may have at once (fork bombs stop here).
        args: extra command-line arguments (``sys.argv[1:]``).
        python: interpreter to run (its stdlib only: ``-S`` skips site-packages). Default: the real
            interpreter behind ``sys.executable`` (a virtualenv's ``bin/python`` is a link, and the
            virtualenv may live under /tmp, which the ``private_tmp`` layer hides from the program).
    """
    python = python or os.path.realpath(sys.executable)
    if timeout_s <= 0 or memory_mb <= 0 or max_output_bytes <= 0:
        raise ValueError(f"run_python: timeout_s, memory_mb and max_output_bytes must be > 0, got "
                         f"{timeout_s}, {memory_mb}, {max_output_bytes}")
    limits = Limits(cpu_s=cpu_s or math.ceil(timeout_s), memory_mb=memory_mb, file_mb=max_file_mb,
                    open_files=max_open_files, processes=max_processes)
    try:
        workdir = tempfile.mkdtemp(prefix="zaya_sbx_")
    except OSError as exc:
        return _failed(f"cannot create the work dir: {exc}")
    try:
        return _run_in(workdir, code, stdin.encode("utf-8", "replace"), limits, timeout_s, max_output_bytes, args,
                       python)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run_in(workdir: str, code: str, data: bytes, limits: Limits, timeout_s: float, cap: int,
            args: tuple[str, ...], python: str) -> SandboxResult:
    uid = fresh_uid()
    main = os.path.join(workdir, "main.py")
    try:
        with open(main, "w", encoding="utf-8") as f:
            f.write(code)
        if uid is not None:
            os.chown(workdir, uid, uid)
            os.chmod(workdir, 0o700)
    except (OSError, ValueError) as exc:  # ValueError: a NUL or lone surrogate in the code
        return _failed(f"cannot write the program: {exc}")
    report_r, report_w = os.pipe()
    setup = ChildSetup(limits, workdir, uid, report_w, _seccomp_filter(), hidden_interpreter(python))
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "LANG": "C.UTF-8",
           "LC_ALL": "C.UTF-8", "TMPDIR": "/tmp"}
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            [python, "-I", "-S", "-B", "-X", "utf8", main, *args], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=workdir, env=env, close_fds=True,
            start_new_session=True, preexec_fn=setup,  # noqa: PLW1509 - the sandbox needs it
        )
    except (OSError, subprocess.SubprocessError) as exc:
        os.close(report_r)
        return _failed(f"cannot start the program: {exc}")
    finally:
        os.close(report_w)
    failure = None
    try:
        out, err, kill_reason = _exchange(proc, data, start + timeout_s, cap, uid)
    except OSError as exc:  # e.g. no pidfd support: the sandbox, not the program, failed
        failure, out, err, kill_reason = f"I/O with the program failed: {exc}", b"", b"", None
    finally:
        failure = _terminate(proc.pid, uid) or failure
        rc, cpu = _reap(proc)
        wall = time.monotonic() - start
        with os.fdopen(report_r, "rb") as report:
            mask = report.read(1)
        isolation = layer_names(mask[0]) if mask else ()
    if failure is not None:
        return _failed(failure)
    _warn_missing(isolation)
    stdout, stderr = out[:cap].decode("utf-8", "replace"), err[:cap].decode("utf-8", "replace")
    status, reason = _classify(kill_reason, rc, stderr, cpu, limits, timeout_s, cap)
    return SandboxResult(status, stdout, stderr, rc, wall, cpu, isolation, reason)


def _exchange(proc: subprocess.Popen, data: bytes, deadline: float, cap: int,
              uid: int | None) -> tuple[bytes, bytes, str | None]:
    """Feed stdin and read both outputs until EOF, the deadline, or the cap; returns why we stopped early."""
    bufs = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    sel = selectors.DefaultSelector()
    for fd in bufs:
        sel.register(fd, selectors.EVENT_READ)
    pidfd = os.pidfd_open(proc.pid)
    sel.register(pidfd, selectors.EVENT_READ)
    stdin_fd, sent = proc.stdin.fileno(), 0
    if data:
        os.set_blocking(stdin_fd, False)
        sel.register(stdin_fd, selectors.EVENT_WRITE)
    else:
        proc.stdin.close()
    reason = None
    try:
        while reason is None and sel.get_map():  # until both pipes hit EOF and the program has exited
            remaining = deadline - time.monotonic()
            events = sel.select(remaining) if remaining > 0 else []
            if not events and time.monotonic() >= deadline:
                reason = "timeout"
            for key, _ in events:
                if key.fd == pidfd:  # main process exited: leftovers die now, pipes then reach EOF
                    sel.unregister(pidfd)
                    _terminate(proc.pid, uid)
                elif key.fd == stdin_fd:
                    sent = _feed(sel, proc, data, sent)
                else:
                    chunk = os.read(key.fd, _READ_CHUNK)
                    bufs[key.fd] += chunk
                    if not chunk:
                        sel.unregister(key.fd)
                    elif len(bufs[key.fd]) > cap:
                        reason = "output_limit"
    finally:
        sel.close()
        os.close(pidfd)
        if not proc.stdin.closed:
            proc.stdin.close()
    return bytes(bufs[proc.stdout.fileno()]), bytes(bufs[proc.stderr.fileno()]), reason


def _feed(sel: selectors.BaseSelector, proc: subprocess.Popen, data: bytes, sent: int) -> int:
    """Write the next chunk of stdin; close it when done or when the program stopped reading."""
    try:
        sent += os.write(proc.stdin.fileno(), data[sent:sent + _READ_CHUNK])
    except (BrokenPipeError, BlockingIOError) as exc:
        if isinstance(exc, BlockingIOError):
            return sent
        sent = len(data)
    if sent >= len(data):
        sel.unregister(proc.stdin.fileno())
        proc.stdin.close()
    return sent


def _terminate(pid: int, uid: int | None) -> str | None:
    """SIGKILL the run's process group, then (with a private uid) every process of that uid.

    Returns None, or why the sweep failed (processes may then have survived: a sandbox failure).
    """
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if uid is None:
        return None
    try:
        kill_uid(uid)
    except (OSError, RuntimeError) as exc:
        log.error("sandbox: sweeping uid %d failed: %s", uid, exc)
        return f"could not kill the leftover processes of uid {uid}: {exc}"
    return None


def _reap(proc: subprocess.Popen) -> tuple[int, float]:
    """Wait for the (killed or exited) main process; returns its exit code and CPU seconds."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    proc.stderr.close()
    return proc.returncode, usage.ru_utime + usage.ru_stime


def _classify(kill_reason: str | None, rc: int, stderr: str, cpu: float, limits: Limits,
              timeout_s: float, cap: int) -> tuple[SandboxStatus, str]:
    """Map how the run ended onto a status (see the module docstring) and a one-line reason."""
    last_line = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    if kill_reason == "timeout":
        return "timeout", f"wall clock exceeded {timeout_s:g} s"
    if kill_reason == "output_limit":
        return "output_limit", f"output exceeded {cap} bytes"
    if rc == -signal.SIGXCPU or (rc == -signal.SIGKILL and cpu >= limits.cpu_s):
        return "timeout", f"CPU time exceeded {limits.cpu_s} s"
    if rc != 0 and last_line.startswith("MemoryError"):
        return "memory", f"MemoryError under a {limits.memory_mb} MiB address-space limit"
    if rc == -signal.SIGKILL:
        return "memory", "killed by SIGKILL that was not ours (out of memory)"
    if rc != 0:
        return "error", last_line or f"exit code {rc}"
    return "ok", ""


def _failed(reason: str) -> SandboxResult:
    return SandboxResult("sandbox_error", "", "", None, 0.0, reason=f"sandbox: {reason}")


def _seccomp_filter():
    """The seccomp filter for children of this process (its pid/pgid are baked in), built once."""
    key = (os.getpid(), os.getpgid(0))
    if key not in _seccomp_cache:
        _seccomp_cache[key] = build_seccomp_filter(*key)
    return _seccomp_cache[key]


def _warn_missing(active: tuple[str, ...]) -> None:
    missing = tuple(name for name in LAYERS if name not in active)
    if missing and active and missing not in _warned_missing:
        _warned_missing.add(missing)
        log.warning("sandbox: isolation layers unavailable on this host: %s (rewards/isolation.py says what "
                    "each one protects against; run as root with libseccomp2 and pyseccomp for all)",
                    ", ".join(missing))


def isolation_layers() -> tuple[str, ...]:
    """The isolation layers active on this host, measured by running an empty program."""
    return run_python("pass", timeout_s=10).isolation
