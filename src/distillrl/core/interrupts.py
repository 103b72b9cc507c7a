"""SIGTERM and SIGINT (Slurm, Kubernetes preemption, Ctrl-C) end a run at a step boundary with nothing lost.

While `StopRequests` is entered, the first SIGTERM or SIGINT only records the signal (and says so on stderr);
the loop finishes its current step, writes a checkpoint and raises `RunStopped`, which the command line turns
into one line (`stopped at step N by SIGTERM; --resume continues`) and exit code 128 + the signal's number (143
for SIGTERM, 130 for SIGINT), as a process killed by that signal would have. `--resume` then continues from that
step, bit-identical to a run never stopped. A second signal ends the process at once (the signal's default
action). Under data parallel the ranks agree each step (`World.gather`) so that every rank stops at the same
step, whichever of them got the signal.

Handlers can be installed from the main thread only; entered from another thread (a notebook's worker, say) it
installs nothing and signals keep their usual effect.
"""

from __future__ import annotations

import os
import signal
import threading

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class RunStopped(Exception):
    """A run that a signal stopped after step `step`, its checkpoint written."""

    def __init__(self, step: int, signum: int):
        self.step, self.signum = step, signum
        super().__init__(f"stopped at step {step} by {signal.Signals(signum).name}; --resume continues")

    @property
    def exit_code(self) -> int:
        """128 + the signal number: what a shell reports for a process that the signal ended."""
        return 128 + self.signum


class StopRequests:
    """Records the first SIGTERM/SIGINT instead of dying of it; a second one kills the process at once."""

    def __init__(self):
        self.signum: int | None = None
        self.previous: dict[int, object] = {}

    def handle(self, signum: int, frame) -> None:
        if self.signum is not None:  # the second signal: its default action, now
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signum = signum
        name = signal.Signals(signum).name
        os.write(2, f"{name}: finishing this step, then a checkpoint; send it again to stop at once\n".encode())

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self.previous[signum] = signal.signal(signum, self.handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous.clear()
