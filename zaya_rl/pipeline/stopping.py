"""How a run stops before its last step: ``RunStopped`` (one line for the user, an exit code) and
``Interrupts`` (Ctrl-C / SIGINT while the run's event loop runs).

The first SIGINT during RL asks the orchestrator to stop after the optimizer step in flight; the run then
writes a checkpoint and ``summary.json`` and raises ``RunStopped`` (exit code 130), which ``zaya-rl``
prints as one line. A SIGINT outside the RL loop (start-up evaluation, SFT warm start), or a second one,
cancels the run at once: ``summary.json`` is still written, without a new checkpoint.

Light: standard library only, so ``zaya_rl.cli`` can catch ``RunStopped`` without importing the pipeline.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

#: Exit code of a run stopped by SIGINT (128 + SIGINT, the shell's convention).
EXIT_INTERRUPTED = 128 + signal.SIGINT
#: Exit code of a run stopped by a failure it diagnosed (error budget, collapse is only a warning).
EXIT_FAILED = 1


class RunStopped(RuntimeError):
    """The run ended before its last step; ``str(e)`` is the one line ``zaya-rl`` prints.

    ``resume_dir``: the folder ``zaya-rl resume`` continues from (a checkpoint was written); a curriculum
    runner replaces a stage's folder with the curriculum's.
    """

    def __init__(self, message: str, exit_code: int = EXIT_FAILED, resume_dir: str | None = None) -> None:
        super().__init__(message)
        self.message, self.exit_code, self.resume_dir = message, exit_code, resume_dir

    def __str__(self) -> str:
        return self.message + (f"; continue with `zaya-rl resume {self.resume_dir}`" if self.resume_dir else "")


class Interrupts:
    """SIGINT handler of one run's event loop (module docstring).

    ``graceful`` is called on the first SIGINT while ``graceful_ok()`` is true (the RL loop runs);
    otherwise, and on any later SIGINT, ``task`` (the run's main task) is cancelled.
    """

    def __init__(self, task: asyncio.Task, graceful: Callable[[], None], graceful_ok: Callable[[], bool]) -> None:
        self.task, self.graceful, self.graceful_ok = task, graceful, graceful_ok
        self.count = 0
        self.installed = False

    def __enter__(self) -> Interrupts:
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self._on_sigint)
            self.installed = True
        except (ValueError, RuntimeError):  # not the main thread: signals stay with whoever handles them
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        if self.installed:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)  # back to KeyboardInterrupt

    def _on_sigint(self) -> None:
        self.count += 1
        if self.count == 1 and self.graceful_ok():
            print("\n[zaya-rl] interrupted: finishing the optimizer step in flight, then a checkpoint "
                  "(Ctrl-C again to stop at once)", flush=True)
            self.graceful()
        else:
            self.task.cancel()
