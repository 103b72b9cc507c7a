"""Run the reproduction experiments and write docs/results/REPORT.md."""

from __future__ import annotations

import importlib
import time
from pathlib import Path

from rich.console import Console

from distillrl.bench.context import BenchContext
from distillrl.bench.report import render_report
from distillrl.errors import UserError

EXPERIMENTS = ("opd_vs_rl", "lambda_sweep", "strong_to_weak", "fusion", "rl_with_teacher", "continual",
               "one_prompt", "mode_seeking", "forking_tokens")  # fmt: skip
console = Console(stderr=True)


def run_repro(out_dir: Path, work_dir: Path, only: list[str] | None = None, seeds: int = 3, quick: bool = False) -> Path:
    """Run the experiments (all, or `only`), save each result under out_dir/bench and render REPORT.md."""
    unknown = [name for name in only or [] if name not in EXPERIMENTS]
    if unknown:
        raise UserError(f"--only: unknown experiment {unknown[0]!r} (have: {', '.join(EXPERIMENTS)})")
    names = [name for name in EXPERIMENTS if not only or name in only]
    ctx = BenchContext(seeds=list(range(1 if quick else seeds)), quick=quick, out_dir=out_dir, work_dir=work_dir)
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
    return render_report(out_dir, list(EXPERIMENTS))
