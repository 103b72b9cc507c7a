"""9. Forking tokens: in the student's wrong samples, does the largest per-token reverse KL sit where the
reasoning leaves the teacher's path?

Seed (Thinking Machines' example): the token that sends the reasoning the wrong way carries the largest penalty.
The student is round one's OPD student (zoo:student-base after 100 OPD steps from zoo:teacher on standard arith:
it reasons step by step, and sometimes goes wrong); this experiment already reproduced and stays on the first bed.
"""

from __future__ import annotations

import statistics

from distillrl.bench.context import BASE_RUN, BenchContext
from distillrl.bench.methods import OPD
from distillrl.bench.report import Claim, ExperimentResult, Table
from distillrl.config import TaskConfig
from distillrl.models.loading import load_causal_lm, load_tokenizer
from distillrl.report.forking import inspect_samples, render_html
from distillrl.tasks import build_task

NAME = "forking_tokens"
PAGE_SAMPLES = 12
STEPS = 100  # round one's OPD run (recipe lr 1e-3, cosine)


def run(ctx: BenchContext) -> ExperimentResult:
    settings = ctx.scaled(OPD, STEPS)
    task = build_task(TaskConfig(name="arith"))
    problems = task.test_problems(BASE_RUN["eval"]["num_prompts"])
    teacher = load_causal_lm(BASE_RUN["teacher"]["path"])
    rows, views_by_seed = [], {}
    for seed in ctx.seeds:
        student_run = ctx.train(NAME, "opd-standard", seed, settings)
        student = load_causal_lm(str(student_run.checkpoint))
        views = inspect_samples(student, teacher, load_tokenizer(str(student_run.checkpoint)),
                                [p.prompt for p in problems], 1, 1.0, BASE_RUN["eval"]["max_new_tokens"],
                                verify=lambda i, completion: task.reward(problems[i], completion) > 0)  # fmt: skip
        views_by_seed[seed] = views
        wrong = [v for v in views if v.correct is False and v.tokens]
        right = [v for v in views if v.correct and v.tokens]
        at_fork = [v.peak == v.fork for v in wrong]
        chance = statistics.fmean(1 / len(v.tokens) for v in wrong) if wrong else 0.0
        rows.append((len(wrong), statistics.fmean(at_fork) if wrong else 0.0, chance,
                     statistics.fmean(v.tokens[v.peak].reverse_kl for v in wrong) if wrong else 0.0,
                     statistics.fmean(v.tokens[v.peak].reverse_kl for v in right) if right else 0.0))  # fmt: skip
    table = Table("student samples on the 200 held-out arith prompts (one each), scored by zoo:teacher",
                  ["seed", "wrong samples", "peak KL at the first fork", "chance (1/length)", "peak KL, wrong",
                   "peak KL, right"],
                  [[str(seed), str(n), f"{hit:.2f}", f"{chance:.2f}", f"{peak_wrong:.2f}", f"{peak_right:.2f}"]
                   for seed, (n, hit, chance, peak_wrong, peak_right) in zip(ctx.seeds, rows)])  # fmt: skip
    first = views_by_seed[ctx.seeds[0]]
    shown = [v for v in first if v.correct is False][: PAGE_SAMPLES // 2] + [v for v in first if v.correct][: PAGE_SAMPLES // 2]
    (ctx.out_dir / "forking_tokens.html").write_text(render_html(shown, "Forking tokens: OPD student vs zoo:teacher"))
    hit = statistics.fmean(r[1] for r in rows)
    chance = statistics.fmean(r[2] for r in rows)
    claims = [Claim("The token that sends the reasoning the wrong way carries the largest penalty.",
                    "one worked example", f"in wrong samples the peak sits at the first fork {hit:.0%} of the time "
                    f"(chance {chance:.0%})", hit > 2 * chance,
                    "The first fork is the first token that is not the teacher's most likely token given the "
                    "student's prefix; reproduced when the peak is there more than twice as often as chance.")]  # fmt: skip
    return ExperimentResult(
        NAME, "9. Forking tokens",
        "Round one's OPD student (zoo:student-base after 100 OPD steps from zoo:teacher, lr 1e-3) samples one completion per held-out arith prompt; every token is scored by its "
        "exact reverse KL to zoo:teacher. `distillrl inspect` draws the same view for any prompt; "
        "[forking_tokens.html](forking_tokens.html) shows 6 wrong and 6 right samples (hover for the teacher's token).",
        ctx.seeds, ctx.quick, tables=[table], claims=claims,
    )  # fmt: skip
