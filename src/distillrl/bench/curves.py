"""Reading a run's evaluations: accuracy against steps and training seconds, seed-mean curves, the first step at
a level, values between evaluations, plots."""

from __future__ import annotations

import bisect
import statistics
from dataclasses import dataclass
from pathlib import Path

from distillrl.bench.context import Run
from distillrl.report.plots import plt, save_figure

ACCURACY = "eval/accuracy_greedy"
BAND = "band: mean ± std over seeds"


def eval_curve(run: Run, key: str = ACCURACY) -> tuple[list[int], list[float], list[float]]:
    """(steps, cumulative training seconds at those steps, values) of the run's evaluations."""
    seconds_at, total = {0: 0.0}, 0.0
    for record in run.records:
        total += record.get("perf/step_seconds", 0.0)
        seconds_at[record["step"]] = total
    evals = run.evals
    return [r["step"] for r in evals], [seconds_at[r["step"]] for r in evals], [r[key] for r in evals]


@dataclass
class MeanCurve:
    """The seed-mean of runs evaluated at the same steps: mean training seconds and mean (std) of the value."""

    steps: list[int]
    seconds: list[float]
    means: list[float]
    stds: list[float]  # sample standard deviation over seeds (0 for one seed)


def mean_curve(runs: list[Run], key: str = ACCURACY) -> MeanCurve:
    """Seed-mean curve over the evaluations every run has (the shortest run's)."""
    curves = [eval_curve(run, key) for run in runs]
    length = min(len(c[0]) for c in curves)
    values = [[c[2][i] for c in curves] for i in range(length)]
    return MeanCurve(
        steps=curves[0][0][:length],
        seconds=[statistics.fmean(c[1][i] for c in curves) for i in range(length)],
        means=[statistics.fmean(v) for v in values],
        stds=[statistics.stdev(v) if len(v) > 1 else 0.0 for v in values],
    )


def first_reaching(curve: MeanCurve, level: float) -> tuple[int, float] | None:
    """(step, training seconds) of the first evaluation whose seed-mean is at or above `level`; None if never.
    (0, 0.0) when the start is already there."""
    for step, seconds, value in zip(curve.steps, curve.seconds, curve.means):
        if value >= level - 1e-9:
            return step, seconds
    return None


def interpolate(xs: list[float], ys: list[float], x: float) -> float:
    """y at x, linear between the two nearest points of the increasing xs (clamped to the ends)."""
    if x <= xs[0]:
        return ys[0]
    if x >= xs[-1]:
        return ys[-1]
    i = bisect.bisect_right(xs, x)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def plot_mean_curves(path: Path, runs_by_label: dict[str, list[Run]], x: str, title: str,
                     teacher_level: float | None = None, key: str = ACCURACY,
                     ylabel: str = "held-out accuracy (greedy, fraction correct)") -> None:  # fmt: skip
    """Seed-mean of `key` against steps (x='steps') or training seconds (x='seconds'), a band of mean ± std."""
    figure, axis = plt.subplots(figsize=(9, 4.5))
    seeds = 0
    for label, runs in runs_by_label.items():
        curve = mean_curve(runs, key)
        seeds = max(seeds, len(runs))
        xs = curve.steps if x == "steps" else curve.seconds
        axis.plot(xs, curve.means, marker="o", markersize=3, label=label)
        axis.fill_between(xs, [m - s for m, s in zip(curve.means, curve.stds)],
                          [m + s for m, s in zip(curve.means, curve.stds)], alpha=0.2)  # fmt: skip
    if teacher_level is not None:
        axis.axhline(teacher_level, color="black", linestyle="--", linewidth=1, label="teacher")
    axis.set_xlabel("optimizer steps" if x == "steps" else "training time (seconds of one torch thread; evaluation excluded)")
    axis.set_ylabel(ylabel)
    axis.set_title(f"{title}\n(lines: mean of {seeds} seed(s); {BAND})", fontsize=10)
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: the curves stay visible
    axis.grid(alpha=0.3)
    figure.tight_layout()
    save_figure(figure, path)
