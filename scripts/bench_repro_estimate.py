"""Estimate the CPU time of a full `distillrl bench repro` on the hard bed from measured per-step seconds.

Trains each kind of run the benchmark makes for a few steps (evaluation off), reads the median training seconds
per step (the first step left out), times one 200-prompt evaluation, and multiplies by the module constants of
the step budgets (bench/methods.py STEPS, EVAL_EVERY; each experiment's STEPS). Prints the table by stage.

    PYTHONPATH=src python scripts/bench_repro_estimate.py [--steps 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from distillrl.bench.context import BASE_RUN, HARD_RUN, BenchContext, merged
from distillrl.bench.experiments import exopd_gain, fusion, lambda_sweep, one_prompt
from distillrl.bench.methods import EVAL_EVERY, OPD, STEPS, exopd, tuned
from distillrl.bench.sweep import GRIDS

SEEDS = 3
ROUND_ONE_MINUTES = {"continual": 3.0, "mode_seeking": 0.1}  # unchanged experiments: docs/results/REPORT.md (round one)


def step_seconds(ctx: BenchContext, name: str, settings: dict, base: dict, steps: int) -> float:
    run = ctx.train("estimate", name, 0, merged(settings, {"optim": {"steps": steps}, "eval": {"every": 0, "num_prompts": 8}}),
                    base=base)  # fmt: skip
    seconds = [r["perf/step_seconds"] for r in run.records if "perf/step_seconds" in r]
    return statistics.median(seconds[1:] or seconds)


def eval_seconds() -> float:
    from distillrl.config import TaskConfig
    from distillrl.models.loading import load_causal_lm, load_tokenizer
    from distillrl.run.evaluate import evaluate
    from distillrl.tasks import build_task

    task = build_task(TaskConfig.model_validate(HARD_RUN["task"]))
    student, teacher = load_causal_lm(HARD_RUN["student"]["path"]), load_causal_lm(HARD_RUN["teacher"]["path"])
    started = time.perf_counter()
    evaluate(student, load_tokenizer(HARD_RUN["student"]["path"]), task, task.test_problems(200), teacher, 1.0, 64)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="steps per measured run (the first is left out)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        ctx = BenchContext(seeds=[0], quick=False, out_dir=Path(folder), work_dir=Path(folder) / "work")
        per_step = {m: step_seconds(ctx, m, tuned(m, GRIDS[m][1]), HARD_RUN, args.steps) for m in STEPS}
        per_step["same-size exopd"] = step_seconds(ctx, "same-size", merged(lambda_sweep.SAME_SIZE, exopd(1.25)),
                                                   HARD_RUN, args.steps)  # fmt: skip
        per_step["fusion opd"] = step_seconds(ctx, "fusion", merged(fusion.TEACHERS, OPD), HARD_RUN, args.steps)
        per_step["one-prompt opd"] = step_seconds(ctx, "one-prompt", merged(OPD, {"rollout": {
            "prompts_per_step": 1, "group_size": one_prompt.SAMPLES}}), HARD_RUN, args.steps)  # fmt: skip
        per_step["standard opd"] = step_seconds(ctx, "standard", OPD, BASE_RUN, args.steps)
        evaluation = eval_seconds()
    print(f"measured on {args.threads} thread(s): training seconds per step (median of steps 2..{args.steps}); one "
          f"evaluation of 200 prompts (greedy, sampled, KL to the teacher) {evaluation:.1f} s")
    for name, seconds in per_step.items():
        print(f"  {name:16s} {seconds:6.2f} s/step")

    def runs(method_steps: int, seconds: float, every: int, count: int) -> float:
        """`count` runs of `method_steps` steps: training plus evaluations (every N steps and at HARD_RUN's eval.at)."""
        at = {s for s in range(every, method_steps, every)} if every else set()
        at |= {s for s in HARD_RUN["eval"].get("at", []) if s < method_steps} if every else set()
        return count * (method_steps * seconds + (len(at) + 2) * evaluation)

    stages = {
        "lr sweep (18 runs, 1 seed)": sum(runs(STEPS[m], per_step[m], EVAL_EVERY, len(GRIDS[m])) for m in GRIDS),
        "1 opd_vs_rl (5 methods; + doubling of OPD/GRPO if needed)": sum(
            runs(STEPS[m], per_step[m], EVAL_EVERY, SEEDS) for m in ("opd", "sft", "grpo", "rlad", "kdrl")),
        "   + extra if OPD and GRPO both double": runs(2 * STEPS["opd"], per_step["opd"], EVAL_EVERY, SEEDS)
        + runs(2 * STEPS["grpo"], per_step["grpo"], EVAL_EVERY, SEEDS),
        "2 lambda_sweep (7 lambdas)": runs(lambda_sweep.STEPS, per_step["same-size exopd"], 0, SEEDS * len(lambda_sweep.LAMBDAS)),
        "2b exopd_gain (4 more pairs)": runs(lambda_sweep.STEPS, per_step["same-size exopd"], 0, SEEDS * (len(exopd_gain.PAIRS) - 1)),
        "3 strong_to_weak (ExOPD, + reward correction)": runs(STEPS["exopd"], per_step["exopd"], EVAL_EVERY, 2 * SEEDS),
        "4 fusion (3 methods)": runs(fusion.STEPS, per_step["fusion opd"], 0, 3 * SEEDS),
        "5 rl_with_teacher (experiment 1's runs)": 0.0,
        "7 one_prompt": runs(one_prompt.STEPS, per_step["one-prompt opd"], 0, SEEDS),
        "9 forking_tokens (its own standard OPD run)": runs(100, per_step["standard opd"], 0, SEEDS),
    } | {f"{name} (round one's time)": minutes * 60 for name, minutes in ROUND_ONE_MINUTES.items()}  # fmt: skip
    total = sum(v for k, v in stages.items() if not k.startswith("   "))
    print(f"estimated full run ({SEEDS} seeds), CPU minutes on {args.threads} thread(s):")
    for name, seconds in stages.items():
        print(f"  {name:55s} {seconds / 60:7.1f}")
    print(f"  {'total (no doubling)':55s} {total / 60:7.1f}")


if __name__ == "__main__":
    main()
