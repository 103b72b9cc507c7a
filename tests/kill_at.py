"""`python tests/kill_at.py [SIGNAL:]POINT[@RANK] N ARGS...`: run `distillrl ARGS...` and kill it with SIGKILL (a real
`kill -9`: no cleanup, no flush, no finally) the N-th time it reaches POINT.

SIGNAL sends that signal instead, once (`TERM:`, `INT:`) or twice in a row (`TERMx2:`), and the run goes on as the
signal lets it. `@RANK` arms the point in that rank of a data-parallel run only (by $RANK). Just before it kills or
signals, it writes the time (`time.time()`) to $KILL_AT_STAMP when that is set. The kill tests' points:

- rollout: while sampling a step's sequences
- update: right after an optimizer step changed the weights in memory
- saving: with a checkpoint written into its temporary directory, not yet renamed
- rotation: halfway through deleting an old checkpoint
- metrics-append: halfway through writing a line of metrics.jsonl
- metrics-rewrite: halfway through `--resume`'s rewrite of metrics.jsonl
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

import torch

import distillrl.report.metrics as metrics
import distillrl.run.trainer as trainer
from distillrl.cli import app

SIGNALS = {"": [signal.SIGKILL], "TERM": [signal.SIGTERM], "INT": [signal.SIGINT],
           "TERMx2": [signal.SIGTERM, signal.SIGTERM]}  # fmt: skip
SENT = SIGNALS[""]


def die() -> None:
    """Send the chosen signal(s) to this process (SIGKILL unless told otherwise); it dies here unless caught."""
    if os.environ.get("KILL_AT_STAMP"):
        Path(os.environ["KILL_AT_STAMP"]).write_text(repr(time.time()))
    for signum in SENT:
        os.kill(os.getpid(), signum)
        time.sleep(0.1)  # lets Python run the handler before the next one (two pending signals would be one)


def on_nth_call(owner, name: str, n: int, action) -> None:
    """Replace owner.name by a wrapper that calls `action(original, *args)` instead at its n-th call."""
    original, calls = getattr(owner, name), 0

    def wrapper(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == n:
            return action(original, *args, **kwargs)
        return original(*args, **kwargs)

    setattr(owner, name, wrapper)


def call_then_die(original, *args, **kwargs):
    result = original(*args, **kwargs)
    die()
    return result


def die_then_call(original, *args, **kwargs):
    die()
    return original(*args, **kwargs)


def delete_half_then_die(original, path, *args, **kwargs):
    files = sorted(p for p in Path(path).rglob("*") if p.is_file())
    for file in files[: len(files) // 2]:
        file.unlink()
    die()


def write_half_then_die(original, path, text):
    Path(path).with_name(f".tmp-{Path(path).name}-killed").write_text(text[: len(text) // 2])
    die()


def append_half_then_die(original, log, step, values):
    line = metrics.json.dumps({"step": step, **values}) + "\n"
    with log.path.open("a") as handle:
        handle.write(line[: len(line) // 2])
    die()


def install(point: str, n: int) -> None:
    if point == "rollout":
        on_nth_call(trainer, "sample_sequences", n, die_then_call)
    elif point == "update":
        on_nth_call(torch.optim.AdamW, "step", n, call_then_die)
    elif point == "saving":
        on_nth_call(torch, "save", n, call_then_die)
    elif point == "rotation":
        is_discard = lambda path: Path(path).name.startswith(".tmp-discard-")  # noqa: E731
        original_rmtree, discards = shutil.rmtree, 0

        def rmtree(path, *args, **kwargs):
            nonlocal discards
            discards += is_discard(path)
            if is_discard(path) and discards == n:
                delete_half_then_die(original_rmtree, path)
            return original_rmtree(path, *args, **kwargs)

        shutil.rmtree = rmtree
    elif point == "metrics-append":
        on_nth_call(metrics.MetricsLog, "log", n, append_half_then_die)
    elif point == "metrics-rewrite":
        on_nth_call(metrics, "write_text_atomic", n, write_half_then_die)
    else:
        raise SystemExit(f"unknown kill point {point!r}")


if __name__ == "__main__":
    sent, _, point = sys.argv[1].rpartition(":")
    point, _, rank = point.partition("@")
    SENT[:] = SIGNALS[sent]
    if not rank or os.environ.get("RANK", "0") == rank:
        install(point, int(sys.argv[2]))
    app(sys.argv[3:], prog_name="distillrl")
