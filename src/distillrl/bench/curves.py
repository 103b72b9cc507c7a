"""Reading a run's evaluations: accuracy against steps and training seconds, steps to a level, plots."""

from __future__ import annotations

import statistics
from pathlib import Path

from distillrl.bench.context import Run
from distillrl.report.plots import plt, save_figure

ACCURACY = "eval/accuracy_greedy"


def eval_curve(run: Run, key: str = ACCURACY) -> tuple[list[int], list[float], list[float]]:
    """(steps, cumulative training seconds at those steps, values) of the run's evaluations."""
    seconds_at, total = {0: 0.0}, 0.0
    for record in run.records:
        total += record.get("perf/step_seconds", 0.0)
        seconds_at[record["step"]] = total
    evals = run.evals
    return [r["step"] for r in evals], [seconds_at[r["step"]] for r in evals], [r[key] for r in evals]


def first_reaching(run: Run, level: float, key: str = ACCURACY) -> tuple[int, float] | None:
    """(step, training seconds) of the first evaluation at or above `level`; None if never."""
    for step, seconds, value in zip(*eval_curve(run, key)):
        if value >= level - 1e-9:
            return step, seconds
    return None


def plot_mean_curves(path: Path, runs_by_label: dict[str, list[Run]], x: str, title: str,
                     teacher_level: float | None = None, key: str = ACCURACY) -> None:  # fmt: skip
    """Mean over seeds of `key` against steps (x='steps') or training seconds (x='seconds'), a band of +- std."""
    figure, axis = plt.subplots(figsize=(6, 4))
    for label, runs in runs_by_label.items():
        curves = [eval_curve(run, key) for run in runs]
        length = min(len(c[0]) for c in curves)
        xs = [statistics.fmean(c[0 if x == "steps" else 1][i] for c in curves) for i in range(length)]
        values = [[c[2][i] for c in curves] for i in range(length)]
        means = [statistics.fmean(v) for v in values]
        stds = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
        axis.plot(xs, means, marker="o", markersize=3, label=label)
        axis.fill_between(xs, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)], alpha=0.2)
    if teacher_level is not None:
        axis.axhline(teacher_level, color="black", linestyle="--", linewidth=1, label="teacher")
    axis.set_xlabel("optimizer steps" if x == "steps" else "training wall-clock seconds (CPU, eval excluded)")
    axis.set_ylabel("held-out accuracy (greedy)")
    axis.set_title(title)
    axis.legend()
    save_figure(figure, path)
