"""VerifierPool: timeouts kill the worker's process group, errors and crashes become Score.failed, no zombies.

python -m pytest tests/environments/test_envs_workers.py -q
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from environments.base import Problem, Score
from environments.workers import VerifierPool, WorkerCallError

TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def pool(plugin):
    with VerifierPool(num_processes=2, timeout_s=TIMEOUT_S, memory_limit_mb=1024) as p:
        yield p


def _problem(env: str, seed: int = 7) -> Problem:
    return Problem(
        env=env, seed=seed, difficulty=0, messages=[{"role": "user", "content": "x"}], answer=str(seed)
    )


def _children_states() -> dict[int, str]:
    """pid -> state letter of this process's live children (Z = zombie)."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():
            out[int(stat.parent.name)] = fields[0]
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


def test_generate_and_verify_roundtrip(pool):
    problem = pool.generate("zt/echo", {}, seed=5, difficulty=1)
    assert problem == _problem("zt/echo", 5).__class__(
        env="zt/echo", seed=5, difficulty=1, messages=[{"role": "user", "content": "echo 5"}], answer="5"
    )
    assert pool.verify(problem, "5") == Score(reward=1.0, accuracy=1.0, extracted="5")
    assert pool.verify(problem, "6").accuracy == 0.0


def test_batch_keeps_input_order(pool):
    items = [(_problem("zt/echo", s), str(s if s % 3 else s + 1)) for s in range(20)]
    scores = pool.verify_batch(items)
    assert [s.accuracy for s in scores] == [0.0 if s % 3 == 0 else 1.0 for s in range(20)]


def test_env_kwargs_travel_with_the_problem(pool):
    problem = pool.generate("zt/kwargs", {"offset": 100}, seed=1, difficulty=0)
    assert problem.answer == "101" and problem.metadata["env_kwargs"] == {"offset": 100}
    assert pool.verify(problem, "101").accuracy == 1.0


def test_timeout_kills_worker_and_its_children(pool, tmp_path):
    before = set(pool.pids())
    pid_file = tmp_path / "grandchild.pid"
    start = time.monotonic()
    score = pool.verify(_problem("zt/hang_child"), str(pid_file))
    elapsed = time.monotonic() - start
    assert score.status == "timeout" and "killed" in score.reason
    assert TIMEOUT_S <= elapsed < TIMEOUT_S + 5.0
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 2.0
    while _alive(grandchild) and time.monotonic() < deadline:  # init reaps the orphan asynchronously
        time.sleep(0.02)
    assert not _alive(grandchild), "the verifier's subprocess survived the process-group kill"
    after = set(pool.pids())
    assert len(after) == 2 and after != before
    for pid in before - after:
        assert not _alive(pid)
    assert pool.verify(_problem("zt/echo"), "7").accuracy == 1.0  # the pool still works


def test_pure_python_busy_loop_times_out(pool):
    score = pool.verify(_problem("zt/hang"), "x")
    assert score.status == "timeout"


def test_exception_becomes_error_score(pool):
    score = pool.verify(_problem("zt/raise"), "x")
    assert score == Score.failed("error", "ValueError: boom")


def test_out_of_range_reward_becomes_error(pool):
    score = pool.verify(_problem("zt/bad_reward"), "x")
    assert score.status == "error" and score.reason.startswith("ValueError: Score.reward must lie in [0, 1]")


def test_sys_exit_does_not_end_the_worker(pool):
    before = pool.pids()
    assert pool.verify(_problem("zt/exit"), "x") == Score.failed("error", "SystemExit: 0")
    assert pool.pids() == before


@pytest.mark.parametrize("response, how", [("exit", "exit code 3"), ("segv", "signal SIGSEGV")])
def test_crash_is_detected_and_worker_respawned(pool, response, how):
    before = set(pool.pids())
    score = pool.verify(_problem("zt/crash"), response)
    assert score.status == "error" and "worker died" in score.reason and how in score.reason
    assert len(pool.pids()) == 2 and set(pool.pids()) != before
    assert pool.verify(_problem("zt/echo"), "7").accuracy == 1.0


def test_memory_limit_turns_allocation_into_error(pool):
    score = pool.verify(_problem("zt/memory"), "x")
    assert score.status == "error" and score.reason.startswith("MemoryError")


def test_stdout_noise_does_not_corrupt_protocol(pool):
    assert pool.verify(_problem("zt/noisy"), "7").accuracy == 1.0


def test_signal_alarm_works_because_verify_runs_in_main_thread(pool):
    assert pool.verify(_problem("zt/alarm"), "7").accuracy == 1.0


def test_leftover_threads_recycle_the_worker(pool):
    before = set(pool.pids())
    assert pool.verify(_problem("zt/threads"), "7").accuracy == 1.0
    assert set(pool.pids()) != before and len(pool.pids()) == 2


def test_generation_failure_raises_worker_call_error(pool):
    with pytest.raises(WorkerCallError) as info:
        pool.generate("zt/raise", {}, 3, 0)
    assert info.value.status == "error" and info.value.reason == "RuntimeError: cannot generate seed 3"
    results = pool.generate_batch([("zt/echo", {}, 1, 0), ("zt/raise", {}, 2, 0)])
    assert isinstance(results[0], Problem) and isinstance(results[1], WorkerCallError)


def test_mixed_batch_with_hang_and_crash_finishes_and_counts(pool):
    stats0 = pool.stats()
    items = [(_problem("zt/echo", s), str(s)) for s in range(6)]
    items += [(_problem("zt/hang"), "x"), (_problem("zt/crash"), "exit"), (_problem("zt/raise"), "x")]
    scores = pool.verify_batch(items)
    assert [s.status for s in scores] == ["ok"] * 6 + ["timeout", "error", "error"]
    stats = pool.stats()
    assert stats["pool/timeouts"] - stats0["pool/timeouts"] == 1
    assert stats["pool/crashes"] - stats0["pool/crashes"] == 1
    assert stats["pool/calls"] - stats0["pool/calls"] == 9


def test_concurrent_callers_from_threads(pool):
    results: dict[int, list[Score]] = {}

    def call(k: int) -> None:
        results[k] = pool.verify_batch([(_problem("zt/echo", s), str(s)) for s in range(k, k + 5)])

    threads = [threading.Thread(target=call, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(s.accuracy == 1.0 for k in range(4) for s in results[k])


def test_workers_are_separate_low_priority_processes(pool):
    pids = pool.pids()
    assert os.getpid() not in pids
    for pid in pids:
        assert os.getpgid(pid) == pid  # own process group, so killpg reaches its children
        assert int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16]) >= 10  # nice


def test_close_leaves_no_zombies(plugin):
    pool = VerifierPool(num_processes=2, timeout_s=TIMEOUT_S)
    pids = pool.pids()
    pool.verify(_problem("zt/hang"), "x")  # one kill + respawn
    pool.verify(_problem("zt/crash"), "exit")  # one crash + respawn
    pids += pool.pids()
    pool.close()
    states = _children_states()
    assert not [pid for pid in pids if pid in states], f"children left after close: {states}"
    assert all(not _alive(pid) for pid in pids)
    with pytest.raises(RuntimeError, match="closed"):
        pool.verify(_problem("zt/echo"), "7")


def test_preload_failure_is_a_clear_startup_error(plugin):
    with pytest.raises(
        RuntimeError, match="preload failed: TypeError: environment 'zt/echo': bad constructor"
    ):
        VerifierPool(1, TIMEOUT_S, preload=[("zt/echo", {"no_such_kwarg": 1})])


def test_workers_die_with_their_parent(plugin, tmp_path):
    """A parent killed with SIGKILL (no cleanup) takes its workers down: the idle one sees its pipe close,
    the busy one (in a hanging verifier) is killed by its watchdog thread."""
    import signal
    import subprocess
    import sys

    script = (
        "import sys, time\n"
        "from environments.workers import VerifierPool\n"
        "from environments.base import Problem\n"
        "import threading\n"
        "pool = VerifierPool(2, 600.0)\n"
        "print(' '.join(map(str, pool.pids())), flush=True)\n"
        "p = Problem(env='zt/hang', seed=0, difficulty=0, messages=[])\n"
        "threading.Thread(target=pool.verify, args=(p, 'x'), daemon=True).start()\n"
        "time.sleep(600)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    pids = [int(p) for p in parent.stdout.readline().split()]
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    time.sleep(0.5)  # let the hanging call start
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 5.0
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)


def test_a_generation_failure_survives_pickling_with_its_status():
    # Scorer.make_problem raises it through Ray: unpicklable, it arrived as UnserializableException and
    # the orchestrator could not tell a slow level (timeout) from a broken one (error)
    import pickle

    e = pickle.loads(pickle.dumps(WorkerCallError("timeout", "generate exceeded 10s; worker process group killed")))
    assert (e.status, e.reason, str(e)) == ("timeout", "generate exceeded 10s; worker process group killed",
                                            "timeout: generate exceeded 10s; worker process group killed")
