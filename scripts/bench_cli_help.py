"""Wall time of two answers that must come at once (a fresh process each time): `distillrl --help`, and
`distillrl train bad.yaml` refusing a config with an unknown key. The median of N runs of each, in seconds.

    python scripts/bench_cli_help.py [--runs 5] [--budget 1.0] [--bad-config-budget 1.5]

Exits non-zero when a median exceeds its budget. Heavy libraries (torch, transformers, datasets) must load only
inside the commands that need them, and only once their config is valid; this measures that they do.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def seconds(command: list[str], expected_code: int) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != expected_code:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}, not {expected_code}: {done.stderr}")
    return time.perf_counter() - started


def report(command: list[str], expected_code: int, runs: int, budget: float) -> bool:
    times = [seconds(command, expected_code) for _ in range(runs)]
    median = statistics.median(times)
    print(f"{' '.join(command)}: median {median:.3f} s over {runs} runs "
          f"(min {min(times):.3f}, max {max(times):.3f}; budget {budget:.1f} s)")
    return median <= budget


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--budget", type=float, default=1.0, help="seconds the median of --help may take")
    parser.add_argument("--bad-config-budget", type=float, default=1.5,
                        help="seconds the median of refusing a config with an unknown key may take")
    args = parser.parse_args()
    executable = shutil.which("distillrl")
    base = [executable] if executable else [sys.executable, "-m", "distillrl.cli"]
    with tempfile.TemporaryDirectory() as folder:
        bad = Path(folder) / "bad.yaml"
        bad.write_text("optim:\n  stepz: 10\n")
        fast = report([*base, "--help"], 0, args.runs, args.budget)
        fast &= report([*base, "train", str(bad)], 2, args.runs, args.bad_config_budget)
    return 0 if fast else 1


if __name__ == "__main__":
    sys.exit(main())
