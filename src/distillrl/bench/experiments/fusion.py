"""4. Multi-teacher fusion: two same-size domain teachers into one student by SFT, OPD and ExOPD.

Seed (G-OPD, Table 2): multi-teacher ExOPD beats both domain teachers (math 47.7 vs 46.0, code 62.0 vs 61.2).
"""

from __future__ import annotations

import statistics

from distillrl.bench.context import BenchContext, merged
from distillrl.bench.methods import OPD, SFT, exopd
from distillrl.bench.report import Claim, ExperimentResult, Table, mean_std

NAME = "fusion"
STEPS = 60
DOMAINS = ("arith", "lists")
TEACHERS = {"student": {"path": "zoo:domain-base"}, "task": {"name": "mix"}, "teacher": None, "optim": {"lr": 1e-4},
            "teachers": [{"name": d, "path": f"zoo:teacher-{d}"} for d in DOMAINS]}  # fmt: skip
# lr 1e-4 as in the same-size lambda sweep: each teacher is one GRPO stage away from the student.


def run(ctx: BenchContext) -> ExperimentResult:
    methods = {"SFT": SFT, "OPD": OPD, "ExOPD (lambda 1.25)": exopd(1.25)}
    runs = {label: [ctx.train(NAME, f"fusion-{label.split()[0].lower()}", seed,
                              ctx.scaled(merged(TEACHERS, method), STEPS)) for seed in ctx.seeds]
            for label, method in methods.items()}  # fmt: skip
    first = runs["OPD"][0]
    key = "eval/accuracy_greedy/{}".format
    table = Table(f"zoo:domain-base <- {{arith: zoo:teacher-arith, lists: zoo:teacher-lists}} on mix, "
                  f"{ctx.steps(STEPS)} steps", ["model", "arith", "lists", "all"], [])  # fmt: skip
    for name in DOMAINS:
        metrics = first.teachers[name]
        table.rows.append([f"teacher-{name}"] + [f"{metrics[key(d)]:.3f}" for d in DOMAINS]
                          + [f"{metrics['eval/accuracy_greedy']:.3f}"])  # fmt: skip
    base = first.evals[0]
    table.rows.append(["student before"] + [f"{base[key(d)]:.3f}" for d in DOMAINS] + [f"{base['eval/accuracy_greedy']:.3f}"])
    for label, group in runs.items():
        table.rows.append([label] + [mean_std([r.after[key(d)] for r in group]) for d in DOMAINS]
                          + [mean_std([r.after["eval/accuracy_greedy"] for r in group])])  # fmt: skip
    ex = {d: statistics.fmean(r.after[key(d)] for r in runs["ExOPD (lambda 1.25)"]) for d in DOMAINS}
    opd = {d: statistics.fmean(r.after[key(d)] for r in runs["OPD"]) for d in DOMAINS}
    expert = {d: first.teachers[d][key(d)] for d in DOMAINS}
    beats = all(ex[d] > expert[d] for d in DOMAINS)
    claims = [
        Claim("Multi-teacher ExOPD beats each domain's teacher in its domain.", "math 47.7 vs 46.0; code 62.0 vs 61.2",
              "; ".join(f"{d} {ex[d]:.3f} vs {expert[d]:.3f}" for d in DOMAINS), beats,
              f"OPD: {'; '.join(f'{d} {opd[d]:.3f}' for d in DOMAINS)}. The domain teachers are domain-base after "
              f"150 GRPO steps; their gain over the base in their own domain is "
              f"{'; '.join(f'{d} {expert[d] - base[key(d)]:+.3f}' for d in DOMAINS)}."),
    ]  # fmt: skip
    return ExperimentResult(
        NAME, "4. Multi-teacher fusion",
        "Student zoo:domain-base (3x96); each prompt of the `mix` task (arith and lists, half each) is routed to "
        "its domain's teacher (same size, GRPO'd from the student). SFT on the routed teachers' samples, OPD "
        "(sampled-token reverse KL) and ExOPD (lambda 1.25, pi_ref = the student's initial weights); 32 prompts x 4 "
        f"samples, lr 1e-4 (as in experiment 2), {ctx.steps(STEPS)} steps. Accuracy per domain on 200 held-out mix prompts (100 each).",
        ctx.seeds, ctx.quick, tables=[table], claims=claims,
    )  # fmt: skip
