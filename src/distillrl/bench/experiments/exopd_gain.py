"""2b. Ablation: does ExOPD's gain over its teacher grow with the teacher's RL gain?

ExOPD extrapolates the teacher's log-ratio to its pre-RL base (lambda 1.25), so it can only beat a teacher that
RL moved. Each point is one same-size pair (student = the teacher's pre-RL base): round one's teachers, which GRPO
moved by about +0.01, and the hard bed's, moved by +0.18 to +0.24. The teacher's gain comes from evaluations only; the
ExOPD point is a G-OPD run as in experiment 2 (the hard arith pair is experiment 2's lambda 1.25 run). No verdict.
"""

from __future__ import annotations

import statistics

from distillrl.bench.context import BEDS, HARD_LEVEL, BenchContext, merged
from distillrl.bench.curves import ACCURACY
from distillrl.bench.experiments.lambda_sweep import SAME_SIZE, STEPS, same_size_runs
from distillrl.bench.methods import exopd
from distillrl.bench.report import ExperimentResult, Table, mean_std
from distillrl.report.plots import plt, save_figure
from distillrl.tasks.levels import level_task

NAME = "exopd_gain"
LAMBDA = 1.25
PAIRS = (  # (pre-RL base = the student, its GRPO'd teacher, task, level)
    ("zoo:domain-base", "zoo:teacher-arith", "arith", "standard"),
    ("zoo:domain-base", "zoo:teacher-lists", "lists", "standard"),
    ("zoo:teacher-base", "zoo:teacher", "arith", "standard"),
    ("zoo:hard-base", "zoo:hard-teacher-arith", "arith", HARD_LEVEL),
    ("zoo:hard-base", "zoo:hard-teacher-lists", "lists", HARD_LEVEL),
)


def pair_runs(ctx: BenchContext, base: str, teacher: str, task: str, level: str) -> list:
    """ExOPD (lambda 1.25) from `base` to `teacher` on `task` at `level`, experiment 2's settings."""
    if (base, teacher, task, level) == ("zoo:hard-base", "zoo:hard-teacher-arith", "arith", HARD_LEVEL):
        return same_size_runs(ctx, LAMBDA)  # experiment 2's run
    settings = merged(SAME_SIZE, merged(exopd(LAMBDA), {
        "student": {"path": base}, "teacher": {"path": teacher}, "task": level_task(task, level),
        "optim": {"lr": ctx.lr("exopd")}}))  # fmt: skip
    name = f"exopd-gain-{teacher.removeprefix('zoo:')}-{task}"
    return [ctx.train(NAME, name, seed, ctx.scaled(settings, STEPS), base=BEDS[level]) for seed in ctx.seeds]


def run(ctx: BenchContext) -> ExperimentResult:
    table = Table(f"same-size ExOPD (lambda {LAMBDA}, {ctx.steps(STEPS)} steps, lr {ctx.lr('exopd'):g}) against the "
                  "teacher's RL gain (greedy accuracy on 200 held-out prompts)",
                  ["teacher <- pre-RL base (= student)", "task", "base", "teacher", "teacher's RL gain", "ExOPD",
                   "ExOPD - teacher"], [])  # fmt: skip
    points = []
    for base, teacher, task, level in PAIRS:
        runs = pair_runs(ctx, base, teacher, task, level)
        before, expert = runs[0].evals[0][ACCURACY], runs[0].teacher[ACCURACY]
        gains = [r.after[ACCURACY] - expert for r in runs]
        label = f"{teacher.removeprefix('zoo:')} ({task}, {level})"
        points.append((label, expert - before, statistics.fmean(gains),
                       statistics.stdev(gains) if len(gains) > 1 else 0.0))  # fmt: skip
        table.rows.append([f"{teacher} <- {base}", f"{task} ({level})", f"{before:.3f}", f"{expert:.3f}",
                           f"{expert - before:+.3f}", mean_std([r.after[ACCURACY] for r in runs]), mean_std(gains)])  # fmt: skip
    plot(ctx, points)
    return ExperimentResult(
        NAME, "2b. Ablation: ExOPD's gain against the teacher's RL gain",
        "For each same-size pair, the student is the teacher's pre-RL base and pi_ref; ExOPD (lambda 1.25) with "
        "experiment 2's settings (64 prompts x 1 sample per step). The teacher's RL gain is its greedy accuracy "
        "minus its base's, both evaluated (no training). Round one's teachers gained about +0.01 from GRPO, the "
        "hard bed's far more: if ExOPD's edge over the teacher comes from extrapolating the RL direction, it "
        "should grow along the x axis.",
        ctx.seeds, ctx.quick, tables=[table], plots=["plots/exopd_gain.png"],
    )  # fmt: skip


def plot(ctx: BenchContext, points: list[tuple[str, float, float, float]]) -> None:
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for label, gain, mean, std in points:
        axis.errorbar([gain], [mean], yerr=[std], marker="o", capsize=3, label=label)
    axis.axhline(0.0, color="black", linestyle="--", linewidth=1, label="ExOPD = teacher")
    axis.set_xlabel("teacher's RL gain over its pre-RL base (greedy accuracy, held-out)")
    axis.set_ylabel("ExOPD accuracy - teacher accuracy")
    axis.set_title(f"ExOPD (lambda {LAMBDA}) against the teacher's RL gain\n(points: mean of {len(ctx.seeds)} "
                   "seed(s); error bars: ± std over seeds)", fontsize=10)  # fmt: skip
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    save_figure(figure, ctx.out_dir / "plots" / "exopd_gain.png")
