"""The code sandbox, including adversarial programs: python -m pytest tests/rewards/test_sandbox.py -q

Each adversarial program carries a unique marker in its argv; after the run no live process with that
marker may exist (checked in /proc), and nothing it tried to do outside its work dir may be visible.
Checks that depend on an isolation layer skip, naming the layer, where the host does not provide it.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from rewards.sandbox import SandboxResult, isolation_layers, run_python

LAYERS = isolation_layers()
REPO = Path(__file__).resolve().parents[2]


def needs(*layers: str):
    missing = [name for name in layers if name not in LAYERS]
    return pytest.mark.skipif(bool(missing), reason=f"isolation layer(s) {missing} unavailable on this host")


def live_processes_with(marker: str) -> list[int]:
    """Pids of non-zombie processes whose command line contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != "Z":
            found.append(int(entry))
    return found


def run_marked(code: str, **kwargs) -> SandboxResult:
    marker = f"zaya-test-{uuid.uuid4().hex}"
    result = run_python(code, args=(marker,), **kwargs)
    assert live_processes_with(marker) == [], "a sandboxed process survived the run"
    return result


def test_ok_with_stdin_and_argv():
    r = run_python("import sys\nprint(input()[::-1], sys.argv[1:])", "hello\n", args=("a",))
    assert (r.status, r.stdout, r.returncode) == ("ok", "olleh ['a']\n", 0)
    assert r.wall_s > 0 and "rlimits" in r.isolation


def test_exception_is_error_with_reason():
    r = run_python("raise ValueError('boom')")
    assert r.status == "error" and r.returncode == 1 and r.reason == "ValueError: boom"


def test_syntax_error_and_exit_code():
    assert run_python("def (").status == "error"
    r = run_python("import sys; sys.exit(3)")
    assert (r.status, r.returncode) == ("error", 3)


def test_large_stdin_and_stdout_within_cap():
    data = "x" * (3 << 20)
    r = run_python("import sys; s = sys.stdin.read(); print(len(s)); print(s[:10])", data, max_output_bytes=1 << 20)
    assert r.status == "ok" and r.stdout.split() == [str(len(data)), "x" * 10]


def test_program_that_ignores_stdin():
    r = run_python("print('done')", "y" * (4 << 20))
    assert (r.status, r.stdout) == ("ok", "done\n")


def test_stdlib_only_and_clean_cwd():
    r = run_python("import os, sys; print(os.listdir('.'), any('site-packages' in p for p in sys.path))")
    assert r.stdout.strip() == "['main.py'] False"


def test_infinite_loop_times_out():
    r = run_marked("while True: pass", timeout_s=1)
    assert r.status == "timeout" and 0.9 < r.wall_s < 5


def test_cpu_limit_when_wall_clock_is_generous():
    r = run_marked("while True: pass", timeout_s=30, cpu_s=1)
    assert r.status == "timeout" and "CPU" in r.reason and r.wall_s < 20


def test_sleeping_program_times_out():
    r = run_marked("import time; time.sleep(60)", timeout_s=1)
    assert r.status == "timeout" and r.wall_s < 5


def test_memory_bomb():
    r = run_marked("x = []\nwhile True: x.append(bytearray(10**7))", memory_mb=128, timeout_s=20)
    assert r.status == "memory" and "MemoryError" in r.stderr


def test_huge_output_is_capped_and_killed():
    r = run_marked("import sys\nwhile True: sys.stdout.write('x' * 100000)", max_output_bytes=1 << 16, timeout_s=20)
    assert r.status == "output_limit" and len(r.stdout) <= 1 << 16 and r.wall_s < 10


def test_file_size_limit():
    r = run_marked("open('big', 'wb').write(b'x' * (8 << 20))", max_file_mb=1)
    assert r.status == "error" and ("File too large" in r.reason or "No space left" in r.reason)


@needs("private_tmp")
def test_many_files_cannot_fill_the_disk():
    r = run_marked("for i in range(64):\n    open(f'f{i}', 'wb').write(b'x' * (1 << 20))", max_file_mb=4)
    assert r.status == "error" and "No space left on device" in r.reason


@needs("uid")
def test_fork_bomb_is_contained():
    r = run_marked("import os\nwhile True:\n    try: os.fork()\n    except OSError: pass", timeout_s=2)
    assert r.status == "timeout"


@needs("uid")
def test_setsid_escapees_are_killed():
    code = ("import os, time\nfor _ in range(3):\n    if os.fork() == 0:\n        os.setsid()\n"
            "        time.sleep(60)\n        os._exit(0)\nprint('parent done')")
    r = run_marked(code, timeout_s=5)
    assert r.status == "ok" and r.stdout == "parent done\n"


@needs("private_tmp")
def test_writing_to_tmp_stays_private():
    marker = Path(f"/tmp/escape_marker_{uuid.uuid4().hex}")
    r = run_marked(f"open({str(marker)!r}, 'w').write('x'); print('wrote')")
    assert r.status == "ok" and r.stdout == "wrote\n"  # it could write, but only into its private /tmp
    assert not marker.exists()


@needs("uid")
def test_writing_into_the_repo_is_denied():
    target = REPO / f"escape_marker_{uuid.uuid4().hex}"
    r = run_marked(f"open({str(target)!r}, 'w').write('x')")
    # denied by the dropped uid, or (a checkout under /tmp) not even visible behind the private /tmp
    assert r.status == "error" and ("Permission denied" in r.reason or "No such file" in r.reason), r.reason
    assert not target.exists()


def test_parent_environment_is_invisible(monkeypatch):
    monkeypatch.setenv("ZAYA_TEST_SECRET", "hunter2")
    r = run_marked("import os\nprint(sorted(os.environ))\n"
                   "try:\n    print(open(f'/proc/{os.getppid()}/environ', 'rb').read())\n"
                   "except OSError as e:\n    print('denied', e.errno)")
    assert r.status == "ok" and "hunter2" not in r.stdout and "ZAYA_TEST_SECRET" not in r.stdout
    assert "PATH" in r.stdout and ("uid" not in LAYERS or "denied" in r.stdout)


@needs("netns")
def test_cannot_connect_to_a_local_server():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.5)
    port = server.getsockname()[1]
    try:
        r = run_marked(f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('connected')")
        assert r.status == "error" and "connected" not in r.stdout
        with pytest.raises(TimeoutError):
            server.accept()
    finally:
        server.close()


@needs("uid")
def test_killing_the_parent_fails():
    # The program's parent is this test process (subprocess forks us): with a separate uid and the seccomp
    # rule, kill() gets EPERM, and reaching this line proves we were not killed.
    r = run_marked("import os\nos.kill(os.getppid(), 9)")
    assert r.status == "error" and "PermissionError" in r.reason


@needs("uid")
def test_kill_everything_fails():
    r = run_marked("import os\nos.kill(-1, 9)")
    assert r.status == "error" and "PermissionError" in r.reason


@pytest.mark.parametrize("python", ["/nonexistent/python3", "/nonexistent/bin/python3"])
def test_reports_sandbox_error_for_a_bad_interpreter(python):
    r = run_python("print(1)", python=python)
    assert r.status == "sandbox_error" and r.returncode is None and r.reason.startswith("sandbox:")


def test_closing_stdout_does_not_end_the_run():
    r = run_marked("import os, time\nos.close(1)\nos.close(2)\ntime.sleep(60)", timeout_s=1)
    assert r.status == "timeout"
    r = run_marked("import os, time\nos.close(1)\ntime.sleep(0.3)\nraise SystemExit(4)", timeout_s=5)
    assert (r.status, r.returncode) == ("error", 4)


def test_rejects_bad_limits():
    with pytest.raises(ValueError, match="timeout_s"):
        run_python("pass", timeout_s=0)
