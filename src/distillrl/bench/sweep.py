"""The pre-registered learning-rate sweep of the hard bed (docs/results/TESTBED.md).

Each method gets 3 learning rates, fixed before any result (GRIDS); one run per lr with seed 0 on HARD_RUN for the
method's full step budget (methods.STEPS), evaluated on the validation split (a fixed set of prompts drawn from
the task's training split, never the held-out ones). The lr with the best final validation greedy accuracy is
chosen (ties: the smaller lr) and then fixed for every seed of every experiment. The result is
OUT/bench/lr_sweep.json: per method every lr's final and per-evaluation validation accuracy, and the chosen lr.

`sweep_runs` lists the runs, so a script can train them in separate processes (scripts/lr_sweep_parallel.py);
`write_sweep` turns their results into the same file.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from distillrl.bench.context import HARD_RUN, BenchContext
from distillrl.bench.curves import ACCURACY, eval_curve
from distillrl.bench.methods import EVAL_EVERY, STEPS, tuned
from distillrl.bench.report import Table
from distillrl.core.errors import UserError
from distillrl.core.files import write_text_atomic

GRIDS = {
    "opd": (1e-4, 3e-4, 1e-3),
    "exopd": (1e-4, 3e-4, 1e-3),
    "sft": (1e-4, 3e-4, 1e-3),
    "kdrl": (1e-4, 3e-4, 1e-3),
    "grpo": (3e-5, 1e-4, 3e-4),
    "rlad": (3e-5, 1e-4, 3e-4),
}
"""The learning rates each method is tried at (TESTBED.md, fixed before the rerun)."""
LABELS = {"opd": "OPD", "exopd": "ExOPD (lambda 1.25)", "sft": "SFT on teacher samples", "kdrl": "KDRL",
          "grpo": "GRPO", "rlad": "RLAD"}  # fmt: skip
SECONDS_PER_STEP = {"opd": 0.79, "exopd": 0.88, "sft": 0.62, "grpo": 1.30, "rlad": 1.68, "kdrl": 1.60}
"""Each method's seconds per step on one thread of this 2-core machine (scripts/bench_repro_estimate.py --threads 1):
the order the sweep's runs are handed out in."""
SEED = 0
FILE = "lr_sweep.json"
EXPERIMENT = "lr_sweep"  # raw/lr_sweep/ holds the runs' metrics
VALIDATION = {"eval": {"split": "validation"}}
CHOICE_RULE = ("The lr with the best final validation greedy accuracy of its seed-0 run is chosen; a tie goes to the "
               "smaller lr. The chosen lr is then fixed for every seed and every experiment.")  # fmt: skip


@dataclass(frozen=True)
class SweepRun:
    method: str
    lr: float
    name: str  # the run's name (its run directory is WORK/NAME-seed0)
    settings: dict  # over HARD_RUN, for BenchContext.train


def sweep_context(quick: bool, out_dir: Path = Path(), work_dir: Path = Path()) -> BenchContext:
    """The context of the sweep's runs: seed SEED only."""
    return BenchContext(seeds=[SEED], quick=quick, out_dir=out_dir, work_dir=work_dir)


def sweep_runs(quick: bool) -> list[SweepRun]:
    """Every run of the sweep, longest first (budget x SECONDS_PER_STEP, so parallel workers finish together)."""
    ctx = sweep_context(quick)
    runs = [SweepRun(method, lr, f"sweep-{method}-lr{lr:g}",
                     ctx.scaled(tuned(method, lr) | VALIDATION, STEPS[method], EVAL_EVERY))
            for method, grid in GRIDS.items() for lr in grid]  # fmt: skip
    return sorted(runs, key=lambda r: -STEPS[r.method] * SECONDS_PER_STEP[r.method])


def train_sweep_run(ctx: BenchContext, run: SweepRun) -> dict:
    """Train one sweep run; its validation curve and final accuracy."""
    trained = ctx.train(EXPERIMENT, run.name, SEED, run.settings, base=HARD_RUN)
    steps, seconds, accuracy = eval_curve(trained)
    return {"method": run.method, "lr": run.lr, "final": trained.after[ACCURACY], "steps": steps,
            "accuracy": accuracy, "train_seconds": trained.train_seconds}  # fmt: skip


def write_sweep(out_dir: Path, results: list[dict], quick: bool, wall_seconds: float = 0.0,
                machine: str = "this machine, one process") -> dict:  # fmt: skip
    """Group the runs' results by method, choose each method's lr, save OUT/bench/lr_sweep.json."""
    methods = {}
    for method, grid in GRIDS.items():
        rows = sorted((r for r in results if r["method"] == method), key=lambda r: r["lr"])
        if [r["lr"] for r in rows] != sorted(grid):
            raise ValueError(f"lr sweep: {method} has results for lrs {[r['lr'] for r in rows]}, not {list(grid)}")
        best = max(rows, key=lambda r: (round(r["final"], 9), -r["lr"]))
        methods[method] = {"chosen": best["lr"], "runs": [{k: v for k, v in r.items() if k != "method"} for r in rows]}
    data = {"split": "validation", "seed": SEED, "quick": quick, "wall_seconds": wall_seconds, "machine": machine,
            "rule": CHOICE_RULE, "methods": methods}  # fmt: skip
    path = out_dir / "bench" / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(data, indent=1))  # experiment workers read it (--sweep-from)
    return data


def run_sweep(ctx: BenchContext, workers: int = 1) -> dict:
    """Train every sweep run (in this process, or in `workers` processes of one torch thread each) and save
    lr_sweep.json."""
    if workers > 1:
        return run_sweep_in_processes(ctx.out_dir, ctx.work_dir, ctx.quick, workers)
    started = time.perf_counter()
    results = [train_sweep_run(ctx, run) for run in sweep_runs(ctx.quick)]
    return write_sweep(ctx.out_dir, results, ctx.quick, time.perf_counter() - started)


def one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def train_in_worker(run: SweepRun, out_dir: Path, work_dir: Path, quick: bool) -> dict:
    return train_sweep_run(sweep_context(quick, out_dir, work_dir), run)


def run_sweep_in_processes(out_dir: Path, work_dir: Path, quick: bool, workers: int,
                           report: Callable[[str], None] = print) -> dict:  # fmt: skip
    """The sweep's runs handed to `workers` spawned processes of one torch thread each, longest first
    (each process evaluates the teacher and the starting student once per run: no cache across processes)."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    import torch

    runs, results, started = sweep_runs(quick), [], time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=one_thread) as pool:
        futures = {pool.submit(train_in_worker, run, out_dir, work_dir, quick): run for run in runs}
        for future in as_completed(futures):
            results.append(future.result())
            report(f"{len(results)}/{len(runs)} {futures[future].name}: final validation accuracy "
                   f"{results[-1]['final']:.3f} ({results[-1]['train_seconds']:.0f} training s, "
                   f"{time.perf_counter() - started:.0f} s since start)")  # fmt: skip
    machine = f"{os.cpu_count()} CPU cores, torch {torch.__version__}: {workers} worker processes of one thread"
    return write_sweep(out_dir, results, quick, time.perf_counter() - started, machine)


def chosen_lrs(data: dict) -> dict[str, float]:
    return {method: entry["chosen"] for method, entry in data["methods"].items()}


def load_sweep(path: Path, quick: bool) -> dict:
    """A saved lr_sweep.json, checked: readable, every method of GRIDS present, and a full run never takes the lrs of
    a --quick sweep."""
    try:
        data = json.loads(Path(path).read_text())
        methods = data["methods"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"--sweep-from {path}: not an lr sweep result ({error})") from None
    missing = [method for method in GRIDS if not isinstance(methods.get(method), dict) or "chosen" not in methods[method]]
    if missing:
        raise UserError(f"--sweep-from {path}: no chosen lr for method {missing[0]!r} (have: "
                        f"{', '.join(methods) or 'none'}); rerun the sweep (`distillrl bench repro --only sweep`)")  # fmt: skip
    if data.get("quick") and not quick:
        raise UserError(f"--sweep-from {path}: it holds a --quick sweep (2-step runs); a full run needs a full sweep")
    return data


def sweep_table(data: dict) -> Table:
    """The sweep as a report table: every method and lr, its validation curve and final accuracy, the choice."""
    rows = []
    for method, entry in data["methods"].items():
        for run in entry["runs"]:
            curve = " / ".join(f"{value:.3f}" for value in run["accuracy"])
            rows.append([LABELS.get(method, method), f"{run['lr']:g}", str(run["steps"][-1]), f"{run['final']:.3f}",
                         curve, "**chosen**" if run["lr"] == entry["chosen"] else ""])  # fmt: skip
    steps = next(iter(data["methods"].values()))["runs"][0]["steps"]
    at = ", ".join(map(str, steps[:3])) + (", ..." if len(steps) > 3 else "")
    return Table(f"lr sweep: one run per lr (seed {data['seed']}) on the validation split (prompts from the training "
                 f"split), greedy accuracy; {'quick (smoke test)' if data['quick'] else 'full'} sweep, wall time "
                 f"{data.get('wall_seconds', 0.0) / 60:.1f} min on {data.get('machine', 'this machine')}", ["method", "lr", "steps", "final validation accuracy",
                 f"at each evaluation (steps {at})", "chosen"], rows)  # fmt: skip
