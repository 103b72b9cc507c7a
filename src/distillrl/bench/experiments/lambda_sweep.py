"""2. The ExOPD reward-scale sweep with a same-size teacher (the student is the teacher's pre-RL base).

Seed (G-OPD): lambda = 1.25 beats the teacher; 1.5 may be unstable; responses get longer with lambda > 1.
"""

from __future__ import annotations

import statistics

from distillrl.bench.context import HARD_RUN, BenchContext, merged
from distillrl.bench.methods import exopd
from distillrl.bench.report import Claim, ExperimentResult, Table, mean_std
from distillrl.report.plots import plt, save_figure

NAME = "lambda_sweep"
STEPS = 50
LAMBDAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
SAME_SIZE = {"student": {"path": "zoo:hard-base"}, "teacher": {"path": "zoo:hard-teacher-arith"},
             "rollout": {"prompts_per_step": 64, "group_size": 1}}  # one sample per prompt, as in the paper
MARGIN = 0.01  # rule 2
UNITS = {"accuracy": "held-out accuracy (greedy, fraction)", "response length": "response length (tokens)"}
METRICS = (("eval/accuracy_greedy", "accuracy"), ("eval/accuracy_sampled", "sampled accuracy"),
           ("eval/response_length", "response length"), ("eval/entropy", "entropy (nats/token)"))  # fmt: skip


def rule_two(mean: float, std: float, teacher: float) -> bool | None:
    """Rule 2: ExOPD's seed-mean above the teacher's by more than 0.01 and by more than the seeds' standard
    deviation reproduced; within 0.01 of it (or above by less than the spread) partly; lower not."""
    if mean - teacher > max(MARGIN, std):
        return True
    return None if mean >= teacher - MARGIN else False


def same_size_runs(ctx: BenchContext, lam: float) -> list:
    """G-OPD at reward scale `lam` from zoo:hard-base to its GRPO'd copy, at the lr the sweep chose for ExOPD."""
    settings = ctx.scaled(merged(SAME_SIZE, merged(exopd(lam), {"optim": {"lr": ctx.lr("exopd")}})), STEPS)
    return [ctx.train(NAME, f"gopd-same-size-lambda{lam}", seed, settings, base=HARD_RUN) for seed in ctx.seeds]


def run(ctx: BenchContext) -> ExperimentResult:
    runs = {lam: same_size_runs(ctx, lam) for lam in LAMBDAS}
    first = runs[LAMBDAS[0]][0]
    teacher, base = first.teacher, first.evals[0]
    table = Table(f"zoo:hard-base <- zoo:hard-teacher-arith (its GRPO'd copy) on hard arith, {ctx.steps(STEPS)} steps, "
                  f"lr {ctx.lr('exopd'):g}",
                  ["model"] + [label for _, label in METRICS], [])  # fmt: skip
    table.rows.append(["teacher"] + [f"{teacher[key]:.3f}" for key, _ in METRICS])
    table.rows.append(["student before (= pi_ref)"] + [f"{base[key]:.3f}" for key, _ in METRICS])
    for lam in LAMBDAS:
        table.rows.append([f"lambda {lam}"] + [mean_std([r.after[key] for r in runs[lam]]) for key, _ in METRICS])
    plot(ctx, runs, teacher, base)

    def mean(lam, key="eval/accuracy_greedy"):
        return statistics.fmean(r.after[key] for r in runs[lam])

    ex, opd, t = mean(1.25), mean(1.0), teacher["eval/accuracy_greedy"]
    longer = mean(1.25, "eval/response_length") > mean(1.0, "eval/response_length")
    spread = [statistics.pstdev(r.after["eval/accuracy_greedy"] for r in runs[lam]) for lam in (1.0, 1.25, 1.5)]
    ex_std = statistics.stdev(r.after["eval/accuracy_greedy"] for r in runs[1.25]) if len(ctx.seeds) > 1 else 0.0
    gap = t - base["eval/accuracy_greedy"]
    claims = [
        Claim("ExOPD (lambda 1.25) beats the same-size teacher it distils.", "48.0 vs teacher 46.0 (math avg)",
              f"{ex:.3f} ± {ex_std:.3f} vs teacher {t:.3f} (OPD, lambda 1: {opd:.3f})", rule_two(ex, ex_std, t),
              f"Rule 2: above the teacher by more than 0.01 and more than the seeds' std reproduced; within 0.01 "
              f"partly; lower not. The teacher's RL gain over its base (the student) is {gap:+.3f}."),
        Claim("Responses get longer under ExOPD.", "longer responses at lambda > 1",
              f"length {mean(1.25, 'eval/response_length'):.1f} at 1.25 vs {mean(1.0, 'eval/response_length'):.1f} at 1",
              longer, "Mean sampled response length, tokens."),
        Claim("lambda = 1.5 may be unstable.", "instability at 1.5",
              f"accuracy {mean(1.5):.3f} at 1.5 vs {ex:.3f} at 1.25; seed spread {spread[2]:.3f} vs {spread[1]:.3f}",
              mean(1.5) < ex - 0.02 or spread[2] > max(2 * spread[1], 0.01),
              "Unstable here means accuracy more than 0.02 below lambda 1.25's, or a seed spread above twice "
              "1.25's (and above 0.01); smaller differences are within the seeds' noise."),
    ]  # fmt: skip
    return ExperimentResult(
        NAME, "2. ExOPD lambda sweep (same size)",
        "Student zoo:hard-base (3x96), teacher zoo:hard-teacher-arith (the same model after GRPO on hard arith, "
        "+0.235 at build), reference pi_ref = the student's initial weights = the teacher's pre-RL base; G-OPD with "
        f"sampled-token advantage, 64 prompts x 1 sample per step (the paper's n = 1), {ctx.steps(STEPS)} steps (the "
        f"paper's 50) at the lr the sweep chose for ExOPD ({ctx.lr('exopd'):g}), constant after 10 warm-up steps. "
        "Round one's teacher was +0.01 over its base, which left nothing to extrapolate.",
        ctx.seeds, ctx.quick, tables=[table], claims=claims, plots=["plots/lambda_sweep.png"],
    )  # fmt: skip


def plot(ctx: BenchContext, runs: dict, teacher: dict, before: dict) -> None:
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for axis, (key, label) in zip(axes, (METRICS[0], METRICS[2], METRICS[3])):
        values = [[r.after[key] for r in runs[lam]] for lam in LAMBDAS]
        means = [statistics.fmean(v) for v in values]
        errors = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
        axis.errorbar(LAMBDAS, means, yerr=errors, marker="o", capsize=3, label="student after (mean ± std)")
        axis.axhline(teacher[key], color="black", linestyle="--", linewidth=1, label="teacher")
        axis.axhline(before[key], color="grey", linestyle=":", linewidth=1, label="student before (= pi_ref)")
        axis.axvline(1.0, color="grey", linewidth=0.5)
        axis.set_xlabel("reward scale lambda (1 = OPD)")
        axis.set_ylabel(UNITS.get(label, label))
        axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    figure.suptitle("G-OPD on hard arith: lambda < 1 interpolates towards pi_ref, 1 is OPD, > 1 extrapolates (ExOPD)"
                    f"\n(error bars: ± std over {len(ctx.seeds)} seed(s))", fontsize=10)
    figure.tight_layout()
    save_figure(figure, ctx.out_dir / "plots" / "lambda_sweep.png")
