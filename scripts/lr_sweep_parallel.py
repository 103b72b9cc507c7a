"""Run the benchmark's lr sweep (bench/sweep.py) in N worker processes, one torch thread each, and write the same
OUT/bench/lr_sweep.json as `distillrl bench repro --only sweep`; the rest of the benchmark then takes its lrs from it:

    PYTHONPATH=src python scripts/lr_sweep_parallel.py --workers 16 --out runs/bench-repro/full
    PYTHONPATH=src python -m distillrl bench repro --out runs/bench-repro/full --sweep-from runs/bench-repro/full/bench/lr_sweep.json

The runs are handed out longest budget first (GRPO, RLAD and KDRL before OPD, ExOPD and SFT); each worker
process evaluates the teacher and the starting student once per run (no cache across processes).
"""

from __future__ import annotations

import argparse
import os
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path


def one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def train_one(run, out_dir: Path, work_dir: Path, quick: bool) -> dict:
    from distillrl.bench.context import BenchContext
    from distillrl.bench.sweep import SEED, train_sweep_run

    ctx = BenchContext(seeds=[SEED], quick=quick, out_dir=out_dir, work_dir=work_dir)
    return train_sweep_run(ctx, run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=multiprocessing.cpu_count(), help="worker processes")
    parser.add_argument("--out", type=Path, required=True, help="the benchmark's output folder (OUT/bench/lr_sweep.json)")
    parser.add_argument("--work", type=Path, default=Path("runs/bench"), help="run directories")
    parser.add_argument("--quick", action="store_true", help="2-step runs (a smoke test)")
    args = parser.parse_args()

    from distillrl.bench.sweep import sweep_runs, write_sweep

    runs = sweep_runs(args.quick)
    started = time.perf_counter()
    results = []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.workers, mp_context=context, initializer=one_thread) as pool:
        futures = {pool.submit(train_one, run, args.out, args.work, args.quick): run for run in runs}
        for future in as_completed(futures):
            result = future.result()
            results.append(result)
            print(f"{len(results)}/{len(runs)} {futures[future].name}: final validation accuracy "
                  f"{result['final']:.3f} ({result['train_seconds']:.0f} training s, "
                  f"{time.perf_counter() - started:.0f} s since start)", flush=True)  # fmt: skip
    import torch

    machine = f"{os.cpu_count()} CPU cores, torch {torch.__version__}: {args.workers} worker processes of one thread"
    data = write_sweep(args.out, results, args.quick, time.perf_counter() - started, machine)
    print("chosen:", {method: entry["chosen"] for method, entry in data["methods"].items()})
    print(f"wrote {args.out / 'bench' / 'lr_sweep.json'} ({(time.perf_counter() - started) / 60:.1f} min)")


if __name__ == "__main__":
    main()
