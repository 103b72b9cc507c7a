"""Wall time of `distillrl --help` (a fresh process each time): the median of N runs, in seconds.

    python scripts/bench_cli_help.py [--runs 5] [--budget 1.0]

Exits non-zero when the median exceeds the budget. Heavy libraries (torch, transformers, datasets) must load
only inside the commands that need them; this measures that they do.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time


def help_seconds(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--budget", type=float, default=1.0, help="seconds the median may take")
    args = parser.parse_args()
    executable = shutil.which("distillrl")
    command = [executable, "--help"] if executable else [sys.executable, "-m", "distillrl.cli", "--help"]
    times = [help_seconds(command) for _ in range(args.runs)]
    median = statistics.median(times)
    print(f"{' '.join(command)}: median {median:.3f} s over {args.runs} runs "
          f"(min {min(times):.3f}, max {max(times):.3f}; budget {args.budget:.1f} s)")
    return 0 if median <= args.budget else 1


if __name__ == "__main__":
    sys.exit(main())
