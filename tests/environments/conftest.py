"""Fixtures for the environment tests: a throw-away third-party plugin installed through entry points.

``plugin`` writes a module and a ``*.dist-info`` folder (with ``entry_points.txt``) into a temp dir and
puts it on ``sys.path``: ``importlib.metadata`` then finds its ``zaya_rl.environments`` entry points exactly
as it would for a pip-installed package, and the pool's workers (which inherit ``sys.path``) find them
too. The plugin's environments misbehave on purpose (hang, raise, crash, leak threads, print, ...).
"""

from __future__ import annotations

import textwrap

import pytest

from environments.registry import clear_registry_cache

PLUGIN_MODULE = '''
import os, signal, subprocess, sys, threading, time
from environments.base import Environment, Problem, Score


class _Base(Environment):
    category = "testing"
    max_difficulty = 3

    def generate(self, seed, difficulty):
        return Problem(env=self.name, seed=seed, difficulty=difficulty,
                       messages=[{"role": "user", "content": f"echo {seed}"}], answer=str(seed))

    def verify(self, problem, response):
        ok = response.strip() == problem.answer
        return Score(reward=float(ok), accuracy=float(ok), extracted=response.strip())

    def reference_response(self, problem):
        return problem.answer


class Echo(_Base):
    name = "zt/echo"


class Hang(_Base):
    name = "zt/hang"

    def verify(self, problem, response):
        while True:
            pass


class HangChild(_Base):
    """Starts a grandchild that would outlive a plain kill of the worker, then hangs."""

    name = "zt/hang_child"

    def verify(self, problem, response):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        with open(response, "w") as f:
            f.write(str(child.pid))
        time.sleep(600)


class Slow(_Base):
    """Generation at difficulty 2 and above takes longer than any bound (reasoning-gym's jugs at d = 3)."""

    name = "zt/slow"

    def generate(self, seed, difficulty):
        if difficulty >= 2:
            time.sleep(600)
        return super().generate(seed, difficulty)


class Raise(_Base):
    name = "zt/raise"

    def generate(self, seed, difficulty):
        raise RuntimeError(f"cannot generate seed {seed}")

    def verify(self, problem, response):
        raise ValueError("boom")


class Crash(_Base):
    name = "zt/crash"

    def verify(self, problem, response):
        if response == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        os._exit(3)


class Exit(_Base):
    name = "zt/exit"

    def verify(self, problem, response):
        sys.exit(0)


class Threads(_Base):
    name = "zt/threads"

    def verify(self, problem, response):
        threading.Thread(target=time.sleep, args=(5,)).start()
        return super().verify(problem, response)


class Noisy(_Base):
    name = "zt/noisy"

    def verify(self, problem, response):
        print("garbage on stdout " * 100)
        os.write(1, b"raw bytes on fd 1\\n")
        return super().verify(problem, response)


class Alarm(_Base):
    """Uses signal.alarm, which only works in a process's main thread (as math-verify does)."""

    name = "zt/alarm"

    def verify(self, problem, response):
        signal.signal(signal.SIGALRM, lambda *a: None)
        signal.alarm(5)
        signal.alarm(0)
        return super().verify(problem, response)


class Memory(_Base):
    name = "zt/memory"

    def verify(self, problem, response):
        block = bytearray(8 << 30)
        return Score(reward=0.0, accuracy=0.0, reason=str(len(block)))


class BadReward(_Base):
    name = "zt/bad_reward"

    def verify(self, problem, response):
        return Score(reward=2.0, accuracy=1.0)


class Pid(_Base):
    """Reports the worker's pid."""

    name = "zt/pid"

    def verify(self, problem, response):
        return Score(reward=0.0, accuracy=0.0, reason=str(os.getpid()))


class Kwargs(_Base):
    name = "zt/kwargs"

    def __init__(self, offset=0):
        self.offset = offset

    def generate(self, seed, difficulty):
        p = super().generate(seed, difficulty)
        return Problem(env=p.env, seed=seed, difficulty=difficulty, messages=p.messages, answer=str(seed + self.offset))


class ThirdParty(_Base):
    name = "third_party_env"
    category = "plugin"


def provide():
    return [Echo, Hang, HangChild, Slow, Raise, Crash, Exit, Threads, Noisy, Alarm, Memory, BadReward, Pid, Kwargs]
'''

ENTRY_POINTS = """
[zaya_rl.environments]
zt = zaya_test_plugin:provide
third_party_env = zaya_test_plugin:ThirdParty
zt_broken = zaya_test_plugin_missing:provide
zt_misnamed = zaya_test_plugin:Echo
"""


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory):
    """Install the test plugin for one test module; yields its folder."""
    root = tmp_path_factory.mktemp("plugin")
    (root / "zaya_test_plugin.py").write_text(PLUGIN_MODULE)
    dist = root / "zaya_test_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: zaya-test-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent(ENTRY_POINTS))
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(root))
        clear_registry_cache()
        yield root
    clear_registry_cache()
