"""Run the reproduction experiments and write OUT/REPORT.md (a new runs/bench-repro/TIMESTAMP by default; the
committed report is docs/results, written only when asked for by name and never by `--quick`)."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from distillrl.bench import sweep
from distillrl.bench.context import BenchContext
from distillrl.bench.experiments import EXPERIMENTS, worker_groups
from distillrl.bench.report import PARALLEL_FILE, ExperimentResult, render_report
from distillrl.core.errors import UserError
from distillrl.core.files import write_text_atomic

SWEEP = "sweep"  # `--only sweep`: the lr sweep alone

COMMITTED_RESULTS = ("docs", "results")
console = Console(stderr=True)


def default_out_dir() -> Path:
    """A new folder per call: runs/bench-repro/YYYYMMDD-HHMMSS."""
    return Path("runs") / "bench-repro" / time.strftime("%Y%m%d-%H%M%S")


def check_out_dir(out_dir: Path, quick: bool) -> None:
    """`--quick` (2-step smoke runs) never writes over full results: not into docs/results, nor into any folder
    that holds a full run's experiment results."""
    if not quick:
        return
    bench = out_dir / "bench"
    full = sorted(p.stem for p in bench.glob("*.json") if p.name != sweep.FILE and not ExperimentResult.load(p).quick)
    if (bench / sweep.FILE).exists() and not json.loads((bench / sweep.FILE).read_text()).get("quick"):
        full.insert(0, "the lr sweep")
    if tuple(out_dir.resolve().parts[-2:]) == COMMITTED_RESULTS or full:
        held = f" (it holds the full results of {', '.join(full)})" if full else ""
        raise UserError(f"--quick: refusing to write smoke-test results into {out_dir}{held}; leave --out out "
                         "(a new runs/bench-repro/TIMESTAMP) or name an empty folder")  # fmt: skip


def run_repro(out_dir: Path, work_dir: Path, only: list[str] | None = None, seeds: int = 3, quick: bool = False,
               sweep_from: Path | None = None, workers: int = 1) -> Path:  # fmt: skip
    """Run the lr sweep (or take its result from `sweep_from`), then the experiments (all, or `only`; `only`
    may name `sweep` for the sweep alone), save each result under out_dir/bench and render REPORT.md. With
    `workers` > 1 the experiments run in that many processes of one torch thread each (run_in_workers)."""
    unknown = [name for name in only or [] if name not in EXPERIMENTS and name != SWEEP]
    if unknown:
        raise UserError(f"--only: unknown experiment {unknown[0]!r} (have: {SWEEP}, {', '.join(EXPERIMENTS)})")
    names = [name for name in EXPERIMENTS if not only or name in only]
    if workers > 1:
        return run_in_workers(out_dir, work_dir, names, seeds, quick, sweep_from, workers)
    if not only:  # a whole run in this process: no earlier --workers split describes it
        (out_dir / "bench" / PARALLEL_FILE).unlink(missing_ok=True)
    if quick:  # the smoke test's tiny batches run faster on one thread, above all on a busy machine
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return run_experiments(out_dir, work_dir, names, seeds, quick, sweep_from)
        finally:
            torch.set_num_threads(threads)
    return run_experiments(out_dir, work_dir, names, seeds, quick, sweep_from)


def render(out_dir: Path, sweep_data: dict) -> Path:
    """REPORT.md from every experiment result under out_dir/bench and the lr sweep `sweep_data`."""
    return render_report(out_dir, list(EXPERIMENTS), sweep.sweep_table(sweep_data), sweep_data.get("wall_seconds", 0.0),
                         sweep_data.get("machine", "this machine"))


def run_in_workers(out_dir: Path, work_dir: Path, names: list[str], seeds: int, quick: bool, sweep_from: Path | None,
                   workers: int) -> Path:  # fmt: skip
    """The sweep in `workers` processes (or its saved result), then the experiments split over `workers` child processes
    (`distillrl bench repro --only ...`, one torch thread each: on a small machine two one-thread processes train
    faster together than one two-thread process), each logging to WORK/worker-I.log; then REPORT.md of all."""
    saved = out_dir / "bench" / sweep.FILE
    data = obtain_sweep(bench_context(out_dir, work_dir, seeds, quick), sweep_from, workers)
    groups = worker_groups([name for name in names if name != SWEEP], workers)
    if not groups:  # --only sweep
        return render(out_dir, data)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    started, children = time.perf_counter(), []
    work_dir.mkdir(parents=True, exist_ok=True)
    for index, group in enumerate(groups):
        command = [sys.executable, "-m", "distillrl", "bench", "repro", "--seeds", str(seeds), "--sweep-from",
                   str(saved), "--out", str(out_dir), "--work", str(work_dir / f"worker-{index}"), "--threads", "1"]
        command += [arg for name in group for arg in ("--only", name)] + (["--quick"] if quick else [])
        log = work_dir / f"worker-{index}.log"
        console.print(f"[bold]bench worker {index}[/]: {', '.join(group)} (log: {log})", highlight=False)
        children.append((index, log, subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)))
    failed = [(index, log) for index, log, child in children if child.wait() != 0]
    if failed:
        index, log = failed[0]
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise UserError(f"bench worker {index} failed (its log: {log}):\n{tail}")
    write_text_atomic(out_dir / "bench" / PARALLEL_FILE,
                      json.dumps({"groups": groups, "wall_seconds": time.perf_counter() - started}, indent=1))
    return render(out_dir, data)


def bench_context(out_dir: Path, work_dir: Path, seeds: int, quick: bool) -> BenchContext:
    return BenchContext(seeds=list(range(1 if quick else seeds)), quick=quick, out_dir=out_dir, work_dir=work_dir)


def obtain_sweep(ctx: BenchContext, sweep_from: Path | None, workers: int = 1) -> dict:
    """The lr sweep's result: `sweep_from` checked and copied into OUT/bench, or the sweep run now (in `workers`
    processes); its chosen lrs become ctx.lrs."""
    saved = ctx.out_dir / "bench" / sweep.FILE
    if sweep_from is not None:
        data = sweep.load_sweep(sweep_from, ctx.quick)
        saved.parent.mkdir(parents=True, exist_ok=True)
        if Path(sweep_from).resolve() != saved.resolve():
            shutil.copyfile(sweep_from, saved)
    else:
        console.print(f"[bold]bench: lr sweep[/] ({len(sweep.sweep_runs(ctx.quick))} runs, seed {sweep.SEED}, "
                      "validation split)")  # fmt: skip
        started = time.perf_counter()
        data = sweep.run_sweep(ctx, workers)
        console.print(f"  chosen: {sweep.chosen_lrs(data)} ({time.perf_counter() - started:.0f} s)", highlight=False)
    ctx.lrs = sweep.chosen_lrs(data)
    return data


def run_experiments(out_dir: Path, work_dir: Path, names: list[str], seeds: int, quick: bool,
                    sweep_from: Path | None) -> Path:  # fmt: skip
    """The sweep (or its saved result), then the experiments `names`, then REPORT.md."""
    ctx = bench_context(out_dir, work_dir, seeds, quick)
    data = obtain_sweep(ctx, sweep_from)
    for index, name in enumerate(names, start=1):
        console.print(f"[bold]bench {index}/{len(names)}: {name}[/] ({'quick' if quick else f'{seeds} seeds'})")
        module = importlib.import_module(f"distillrl.bench.experiments.{name}")
        started = time.perf_counter()
        result = module.run(ctx)
        result.wall_seconds = time.perf_counter() - started
        result.save(out_dir)
        for claim in result.claims:
            mark = {True: "[green]reproduced[/]", False: "[red]not reproduced[/]", None: "[yellow]partly[/]"}
            console.print(f"  {mark[claim.reproduced]}: {claim.claim} ours: {claim.ours}", highlight=False)
        console.print(f"  {result.wall_seconds:.0f} s")
    return render(out_dir, data)
