"""CPU seconds reasoning-gym needs to generate one problem, per task and level: which levels stay within
the generation bound (``environments.adapters.reasoning_gym.SLOW_FROM`` is this script's output).

For each ``rg/<task>``, levels 0, 1, ... are generated for seeds 0..SEEDS-1 in one child process; a
watchdog thread ends the child as soon as one generation has used more than ``--bound`` CPU seconds (CPU,
not wall time, so a loaded machine does not make a level look slow). The first such level and every
level above it are reported slow (levels are not tested past the first slow one).

    python benchmarks/rg_generation_time.py --bound 10 --jobs 2 > rg_times.json   # ~10-30 min on 2 cores

Prints JSON: ``{"bound_s": ..., "slow_from": {task: level}, "cpu_s": {task: [max CPU s per level]}}``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue as queue_mod
import sys
import threading
import time

SEEDS = 3


def _task_worker(task: str, top: int, bound: float, out: mp.Queue) -> None:
    from environments.registry import get_environment

    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # tasks that print must not corrupt the JSON on stdout

    env = get_environment(f"rg/{task}")
    state = {"start": None, "level": None}

    def watchdog() -> None:
        while True:
            time.sleep(0.05)
            start = state["start"]
            if start is not None and time.process_time() - start > bound:
                out.put(("slow", task, state["level"]))
                out.close()
                out.join_thread()  # the message must leave before the process does
                os._exit(0)

    threading.Thread(target=watchdog, daemon=True).start()
    for level in range(top + 1):
        worst = 0.0
        for seed in range(SEEDS):
            state["level"], state["start"] = level, time.process_time()
            try:
                env.generate(seed, level)
            except Exception:  # noqa: BLE001 - a failing level is the adapter's business, not slowness
                pass
            worst = max(worst, time.process_time() - state["start"])
            state["start"] = None
        out.put(("level", task, (level, round(worst, 3))))
    out.put(("done", task, None))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bound", type=float, default=10.0, help="CPU seconds per generation (default 10)")
    p.add_argument("--jobs", type=int, default=2, help="tasks measured at once (default 2)")
    p.add_argument("--tasks", nargs="*", help="only these tasks (default: every registered rg task)")
    args = p.parse_args()
    from environments.registry import list_environments

    tops = {s.name.split("/", 1)[1]: s.max_difficulty for s in list_environments("rg")}
    todo = [t for t in sorted(tops) if not args.tasks or t in args.tasks]
    queue: mp.Queue = mp.Queue()
    running: dict[str, mp.Process] = {}
    cpu: dict[str, list[float]] = {t: [] for t in todo}
    slow: dict[str, int] = {}
    while todo or running:
        while todo and len(running) < args.jobs:
            task = todo.pop(0)
            running[task] = mp.Process(target=_task_worker, args=(task, tops[task], args.bound, queue), daemon=True)
            running[task].start()
        try:
            kind, task, value = queue.get(timeout=5.0)
        except queue_mod.Empty:
            for task in [t for t, proc in running.items() if not proc.is_alive()]:  # died without a word
                slow[task] = len(cpu[task])
                print(f"rg/{task}: child died at level {slow[task]}", file=sys.stderr, flush=True)
                running.pop(task).join()
            continue
        if kind == "level":
            cpu[task].append(value[1])
        else:
            if kind == "slow":
                slow[task] = value
                print(f"rg/{task}: level {value} > {args.bound:g} CPU s", file=sys.stderr, flush=True)
            running.pop(task).join()
    print(json.dumps({"bound_s": args.bound, "seeds": SEEDS, "slow_from": slow, "cpu_s": cpu}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
