"""1. OPD vs SFT vs GRPO from the same student: steps and training time to reach the teacher.

Seed (Thinking Machines, on-policy distillation): OPD reaches the teacher's level in 7-10x fewer gradient steps
than RL and with 9-30x less compute.
"""

from __future__ import annotations

import statistics

from distillrl.bench.context import BenchContext
from distillrl.bench.curves import first_reaching, plot_mean_curves
from distillrl.bench.methods import GRPO, OPD, SFT
from distillrl.bench.report import Claim, ExperimentResult, Table, mean_std

NAME = "opd_vs_rl"
STEPS, EVAL_EVERY = 100, 20
METHODS = {"sft": ("SFT on teacher samples", SFT), "opd": ("OPD (reverse KL)", OPD), "grpo": ("GRPO", GRPO)}


def reach(runs, level) -> tuple[str, str, list]:
    """'steps' and 'seconds' cells (median over seeds; '> N' when a seed never gets there) and the raw hits."""
    hits = [first_reaching(run, level) for run in runs]
    if any(hit is None for hit in hits):
        reached = sum(hit is not None for hit in hits)
        return f"not within {runs[0].evals[-1]['step']} ({reached}/{len(hits)} seeds)", "-", hits
    steps = statistics.median(hit[0] for hit in hits)
    seconds = statistics.median(hit[1] for hit in hits)
    return f"{steps:.0f}", f"{seconds:.0f}", hits


def run(ctx: BenchContext) -> ExperimentResult:
    runs = {key: [ctx.train(NAME, key, seed, ctx.scaled(method, STEPS, EVAL_EVERY)) for seed in ctx.seeds]
            for key, (_, method) in METHODS.items()}  # fmt: skip
    teacher = runs["opd"][0].teacher["eval/accuracy_greedy"]
    target = 0.95 * teacher
    grpo_best = max(statistics.fmean(values) for values in zip(*[[r["eval/accuracy_greedy"] for r in run.evals]
                                                                   for run in runs["grpo"]]))  # fmt: skip
    table = Table(
        f"student-base <- teacher on arith ({ctx.steps(STEPS)} steps; teacher greedy {teacher:.3f})",
        ["method", "final accuracy", "sampled", "train s/step", f"steps to 95% teacher ({target:.3f})",
         "seconds to 95%", f"steps to GRPO's best ({grpo_best:.3f})", "seconds to GRPO's best"],
        [],
    )  # fmt: skip
    cells = {}
    for key, (label, _) in METHODS.items():
        final = [run.after["eval/accuracy_greedy"] for run in runs[key]]
        sampled = [run.after["eval/accuracy_sampled"] for run in runs[key]]
        per_step = [run.train_seconds / max(run.evals[-1]["step"], 1) for run in runs[key]]
        cells[key] = (reach(runs[key], target), reach(runs[key], grpo_best))
        (s95, t95, _), (sg, tg, _) = cells[key]
        table.rows.append([label, mean_std(final), mean_std(sampled), mean_std(per_step, 2), s95, t95, sg, tg])
    plots = ctx.out_dir / "plots"
    labels = {label: runs[key] for key, (label, _) in METHODS.items()}
    plot_mean_curves(plots / "opd_vs_rl_steps.png", labels, "steps", "accuracy against optimizer steps", teacher)
    plot_mean_curves(plots / "opd_vs_rl_seconds.png", labels, "seconds", "accuracy against training time", teacher)

    budget = runs["grpo"][0].evals[-1]["step"]
    claims = [claim_against_grpo(cells["opd"][0], cells["grpo"][0], budget, "95% of the teacher", target),
              claim_against_grpo(cells["opd"][1], cells["grpo"][1], budget, "GRPO's best accuracy", grpo_best)]  # fmt: skip
    return ExperimentResult(
        NAME, "1. OPD vs SFT vs GRPO",
        f"From zoo:student-base (3x64, non-thinking) with zoo:teacher (4x128); 32 prompts per step; OPD 4 samples "
        f"per prompt, sampled-token reverse KL, lr 1e-3; SFT on 4 teacher samples per prompt, lr 1e-3; GRPO 8 samples "
        f"per prompt, lr 1e-4, 2 minibatches (configs/opd.yaml, sft on teacher samples, configs/grpo.yaml). "
        f"Compute is training wall-clock on this CPU (sampling, teacher scoring and update; evaluation excluded). "
        f"Evaluated every {EVAL_EVERY} steps.",
        ctx.seeds, ctx.quick, tables=[table], claims=claims,
        plots=["plots/opd_vs_rl_steps.png", "plots/opd_vs_rl_seconds.png"],
    )  # fmt: skip


def claim_against_grpo(opd: tuple, grpo: tuple, budget: int, what: str, level: float) -> Claim:
    """The verdict on "OPD gets to `level` 7-10x faster than RL" from the two methods' reach() cells."""
    (opd_steps, opd_seconds, opd_hits), (grpo_steps, grpo_seconds, grpo_hits) = opd, grpo
    if any(h is None for h in opd_hits):
        return Claim(f"OPD reaches {what} in 7-10x fewer steps than RL.", "7-10x fewer steps, 9-30x less compute",
                     f"OPD: {opd_steps}; GRPO: {grpo_steps}", False,
                     f"OPD did not reach {what} ({level:.3f}) within the budget on every seed.")  # fmt: skip
    if any(h is None for h in grpo_hits):
        bound = budget / float(opd_steps)
        return Claim(f"OPD reaches {what} in 7-10x fewer steps than RL.", "7-10x fewer steps, 9-30x less compute",
                     f"OPD {opd_steps} steps ({opd_seconds} s); GRPO {grpo_steps}: > {bound:.1f}x fewer steps",
                     True if bound >= 7 else None,
                     f"GRPO never reached {level:.3f} in {budget} steps, so the ratio is only bounded below.")  # fmt: skip
    step_ratio = float(grpo_steps) / max(float(opd_steps), 1)
    time_ratio = float(grpo_seconds) / max(float(opd_seconds), 1e-9)
    return Claim(f"OPD reaches {what} in 7-10x fewer steps than RL.", "7-10x fewer steps, 9-30x less compute",
                 f"OPD {opd_steps} steps / {opd_seconds} s; GRPO {grpo_steps} / {grpo_seconds} s: {step_ratio:.1f}x "
                 f"fewer steps, {time_ratio:.1f}x less time", step_ratio >= 7,
                 "Medians over seeds of the first evaluation at or above the level.")  # fmt: skip
