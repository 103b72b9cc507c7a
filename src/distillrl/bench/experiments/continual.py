"""6. Continual learning: fine-tune on a new domain until the old one is forgotten, then recover it by OPD
from the model's own earlier checkpoint.

Seed (Thinking Machines, personalisation): IF-eval 85 -> 79 after domain fine-tuning -> 83 after OPD, while the
new knowledge is kept (internal QA 18 -> 36 -> 41).
"""

from __future__ import annotations

import statistics

from distillrl.bench.context import BenchContext
from distillrl.bench.methods import OPD_FULL
from distillrl.bench.report import Claim, ExperimentResult, Table, mean_std

NAME = "continual"
FINE_TUNE_STEPS, RECOVER_STEPS = 60, 60
EARLIER = "zoo:domain-base"
FINE_TUNE = {"student": {"path": EARLIER}, "teacher": None, "task": {"name": "lists"},
             "rollout": {"source": "dataset"}, "objective": {"name": "sft", "fidelity": None}}  # fmt: skip


def recover(checkpoint) -> dict:
    """OPD on arith prompts from the fine-tuned model, with its own earlier checkpoint as the teacher."""
    return OPD_FULL | {"student": {"path": str(checkpoint)}, "teacher": {"path": EARLIER}, "task": {"name": "arith"}}


def run(ctx: BenchContext) -> ExperimentResult:
    stages = {"earlier checkpoint (domain-base)": [], "after lists fine-tuning": [], "after OPD on arith": []}
    for seed in ctx.seeds:
        tuned = ctx.train(NAME, "lists-fine-tune", seed, ctx.scaled(FINE_TUNE, FINE_TUNE_STEPS))
        recovered = ctx.train(NAME, "recover-opd", seed, ctx.scaled(recover(tuned.checkpoint), RECOVER_STEPS))
        for stage, path in zip(stages, (EARLIER, tuned.checkpoint, recovered.checkpoint)):
            stages[stage].append({task: ctx.evaluate(path, task)["eval/accuracy_greedy"] for task in ("arith", "lists")})
    table = Table("accuracy on each domain at the three stages", ["stage", "arith (old behaviour)",
                  "lists (new knowledge)"], [])  # fmt: skip
    for stage, values in stages.items():
        table.rows.append([stage] + [mean_std([v[task] for v in values]) for task in ("arith", "lists")])
    mean = {stage: {task: statistics.fmean(v[task] for v in values) for task in ("arith", "lists")}
            for stage, values in stages.items()}  # fmt: skip
    before, tuned, recovered = (mean[stage] for stage in stages)
    forgot = tuned["arith"] < before["arith"] - 0.02
    restored = recovered["arith"] > tuned["arith"] + 0.02
    kept = recovered["lists"] >= tuned["lists"] - 0.02
    claims = [
        Claim("Fine-tuning on a new domain erodes the old behaviour.", "IF-eval 85 -> 79",
              f"arith {before['arith']:.3f} -> {tuned['arith']:.3f}", forgot, "A drop of more than 0.02 counts."),
        Claim("OPD from the earlier checkpoint restores the old behaviour and keeps the new knowledge.",
              "IF-eval 79 -> 83; internal QA 36 -> 41",
              f"arith {tuned['arith']:.3f} -> {recovered['arith']:.3f}; lists {tuned['lists']:.3f} -> "
              f"{recovered['lists']:.3f}", (restored and kept) or (None if restored or kept else False),
              "Restored: arith up by more than 0.02; kept: lists down by at most 0.02. Partly: one of the two."),
    ]  # fmt: skip
    return ExperimentResult(
        NAME, "6. Continual learning",
        f"zoo:domain-base (which knows arith and lists) is fine-tuned by SFT on lists solutions only "
        f"({ctx.steps(FINE_TUNE_STEPS)} steps, 32 prompts, lr 1e-3); then OPD (exact reverse KL) on arith prompts "
        f"with the earlier checkpoint, zoo:domain-base, as the teacher ({ctx.steps(RECOVER_STEPS)} steps, lr 1e-3). "
        "Both domains evaluated on 200 held-out prompts each.",
        ctx.seeds, ctx.quick, tables=[table], claims=claims,
    )  # fmt: skip
