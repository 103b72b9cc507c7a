"""7. One prompt: OPD on a single training prompt, many samples per step.

Seed (Thinking Machines): 20 steps x 256 rollouts on one prompt roughly matches the teacher.
"""

from __future__ import annotations

import json
import random
import statistics

from distillrl.bench.context import BASE_RUN, BenchContext
from distillrl.bench.methods import OPD
from distillrl.bench.report import Claim, ExperimentResult, Table, mean_std
from distillrl.config import TaskConfig
from distillrl.tasks import build_task

NAME = "one_prompt"
STEPS, SAMPLES = 20, 256


def write_prompts(ctx: BenchContext, seed: int) -> dict:
    """The run's task: one arith training prompt (drawn by the seed) and the usual held-out arith prompts."""
    task = build_task(TaskConfig(name="arith"))
    folder = ctx.work_dir / "one_prompt"
    folder.mkdir(parents=True, exist_ok=True)
    train, test = folder / f"train-seed{seed}.jsonl", folder / "test.jsonl"

    def row(problem) -> str:
        return json.dumps({"prompt": problem.prompt, "answer": problem.answer, "completion": problem.solution}) + "\n"

    train.write_text(row(task.sample_train(random.Random(seed))))
    test.write_text("".join(row(p) for p in task.test_problems(BASE_RUN["eval"]["num_prompts"])))
    return {"name": "prompts", "train_path": str(train), "test_path": str(test)}


def run(ctx: BenchContext) -> ExperimentResult:
    runs = []
    for seed in ctx.seeds:
        settings = OPD | {"task": write_prompts(ctx, seed), "rollout": {"prompts_per_step": 1, "group_size": SAMPLES}}
        runs.append(ctx.train(NAME, "one-prompt-opd", seed, ctx.scaled(settings | {"optim": {"warmup_steps": 2}}, STEPS)))
    teacher, before = runs[0].teacher["eval/accuracy_greedy"], runs[0].evals[0]["eval/accuracy_greedy"]
    after = [r.after["eval/accuracy_greedy"] for r in runs]
    share = statistics.fmean(after) / teacher
    table = Table(f"OPD on one arith prompt, {ctx.steps(STEPS)} steps x {SAMPLES} samples (held-out arith accuracy)",
                  ["model", "accuracy", "sampled"],
                  [["teacher", f"{teacher:.3f}", f"{runs[0].teacher['eval/accuracy_sampled']:.3f}"],
                   ["student before", f"{before:.3f}", f"{runs[0].evals[0]['eval/accuracy_sampled']:.3f}"],
                   ["student after", mean_std(after), mean_std([r.after["eval/accuracy_sampled"] for r in runs])]])  # fmt: skip
    claims = [Claim("OPD on a single prompt roughly matches the teacher on held-out prompts.",
                    "roughly matches (20 steps x 256 rollouts)", f"{statistics.fmean(after):.3f} vs teacher {teacher:.3f} "
                    f"({share:.0%}); before {before:.3f}", share >= 0.9,
                    "Roughly matches is taken as >= 90% of the teacher's accuracy. Each seed draws its own prompt.")]  # fmt: skip
    return ExperimentResult(
        NAME, "7. One prompt",
        f"zoo:student-base <- zoo:teacher; the training set is one arith prompt (a different one per seed); "
        f"{SAMPLES} student samples per step, sampled-token reverse KL, lr 1e-3, {ctx.steps(STEPS)} steps; "
        "evaluated on the 200 held-out arith prompts.",
        ctx.seeds, ctx.quick, tables=[table], claims=claims,
    )  # fmt: skip
