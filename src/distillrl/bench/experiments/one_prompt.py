"""7. One prompt: OPD on a single training prompt, many samples per step.

Seed (Thinking Machines): 20 steps x 256 rollouts on one prompt roughly matches the teacher.
"""

from __future__ import annotations

import json
import random
import statistics

from distillrl.bench.context import HARD_LEVEL, HARD_RUN, BenchContext, merged
from distillrl.bench.curves import ACCURACY
from distillrl.bench.methods import tuned
from distillrl.bench.report import Claim, ExperimentResult, Table, mean_std
from distillrl.config import TaskConfig
from distillrl.tasks import build_task
from distillrl.tasks.levels import level_task

NAME = "one_prompt"
STEPS, SAMPLES = 20, 256


def write_prompts(ctx: BenchContext, seed: int) -> dict:
    """The run's task: one hard arith training prompt (drawn by the seed) and the usual held-out hard arith prompts."""
    task = build_task(TaskConfig.model_validate(level_task("arith", HARD_LEVEL)))
    folder = ctx.work_dir / "one_prompt"
    folder.mkdir(parents=True, exist_ok=True)
    train, test = folder / f"train-seed{seed}.jsonl", folder / "test.jsonl"

    def row(problem) -> str:
        return json.dumps({"prompt": problem.prompt, "answer": problem.answer, "completion": problem.solution}) + "\n"

    train.write_text(row(task.sample_train(random.Random(seed))))
    test.write_text("".join(row(p) for p in task.test_problems(HARD_RUN["eval"]["num_prompts"])))
    return {"name": "prompts", "train_path": str(train), "test_path": str(test)}


def rule_six(after: float, before: float, teacher: float) -> bool | None:
    """Rule 6: >= 90% of the teacher reproduced; >= 50% of it and above the starting student partly; else not."""
    if after >= 0.9 * teacher:
        return True
    return None if after >= 0.5 * teacher and after > before else False


def run(ctx: BenchContext) -> ExperimentResult:
    runs = []
    for seed in ctx.seeds:
        settings = merged(tuned("opd", ctx.lr("opd")), {"task": write_prompts(ctx, seed), "optim": {"warmup_steps": 2},
                                                        "rollout": {"prompts_per_step": 1, "group_size": SAMPLES}})  # fmt: skip
        runs.append(ctx.train(NAME, "one-prompt-opd", seed, ctx.scaled(settings, STEPS), base=HARD_RUN))
    teacher, before = runs[0].teacher[ACCURACY], runs[0].evals[0][ACCURACY]
    after = [r.after[ACCURACY] for r in runs]
    share = statistics.fmean(after) / teacher
    table = Table(f"OPD on one hard arith prompt, {ctx.steps(STEPS)} steps x {SAMPLES} samples (held-out hard arith accuracy)",
                  ["model", "accuracy", "sampled"],
                  [["teacher", f"{teacher:.3f}", f"{runs[0].teacher['eval/accuracy_sampled']:.3f}"],
                   ["student before", f"{before:.3f}", f"{runs[0].evals[0]['eval/accuracy_sampled']:.3f}"],
                   ["student after", mean_std(after), mean_std([r.after["eval/accuracy_sampled"] for r in runs])]])  # fmt: skip
    claims = [Claim("OPD on a single prompt roughly matches the teacher on held-out prompts.",
                    "roughly matches (20 steps x 256 rollouts)", f"{statistics.fmean(after):.3f} vs teacher {teacher:.3f} "
                    f"({share:.0%}); before {before:.3f}", rule_six(statistics.fmean(after), before, teacher),
                    "Rule 6: >= 90% of the teacher reproduced; >= 50% and above the starting student partly; else "
                    "not. Each seed draws its own prompt.")]  # fmt: skip
    return ExperimentResult(
        NAME, "7. One prompt",
        f"zoo:hard-student-mid <- zoo:hard-teacher-arith; the training set is one hard arith prompt (a different one "
        f"per seed); {SAMPLES} student samples per step, sampled-token reverse KL at the lr the sweep chose for OPD "
        f"({ctx.lr('opd'):g}), {ctx.steps(STEPS)} steps; evaluated on the 200 held-out hard arith prompts.",
        ctx.seeds, ctx.quick, tables=[table], claims=claims,
    )  # fmt: skip
