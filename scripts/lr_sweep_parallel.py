"""Run the benchmark's lr sweep (bench/sweep.py) in N worker processes, one torch thread each, and write the same
OUT/bench/lr_sweep.json as `distillrl bench repro --only sweep [--workers N]`; the rest of the benchmark then takes its lrs from it:

    PYTHONPATH=src python scripts/lr_sweep_parallel.py --workers 16 --out runs/bench-repro/full
    PYTHONPATH=src python -m distillrl bench repro --out runs/bench-repro/full --sweep-from runs/bench-repro/full/bench/lr_sweep.json

The runs are handed out longest budget first (GRPO, RLAD and KDRL before OPD, ExOPD and SFT); each worker
process evaluates the teacher and the starting student once per run (no cache across processes).
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=multiprocessing.cpu_count(), help="worker processes")
    parser.add_argument("--out", type=Path, required=True, help="the benchmark's output folder (OUT/bench/lr_sweep.json)")
    parser.add_argument("--work", type=Path, default=Path("runs/bench"), help="run directories")
    parser.add_argument("--quick", action="store_true", help="2-step runs (a smoke test)")
    args = parser.parse_args()

    from distillrl.bench.sweep import chosen_lrs, run_sweep_in_processes

    started = time.perf_counter()
    data = run_sweep_in_processes(args.out, args.work, args.quick, args.workers, lambda line: print(line, flush=True))
    print("chosen:", chosen_lrs(data))
    print(f"wrote {args.out / 'bench' / 'lr_sweep.json'} ({(time.perf_counter() - started) / 60:.1f} min)")


if __name__ == "__main__":
    main()
