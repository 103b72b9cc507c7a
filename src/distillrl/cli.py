"""The `distillrl` command line: demo, train, eval, zoo."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from distillrl.config import load_config
from distillrl.errors import UserError

DEBUG = "distillrl.debug"  # ctx.meta key: show tracebacks instead of one-line errors


class OneLineErrors(TyperGroup):
    """Every user error (a UserError, or a bad option value) becomes `distillrl: error: ...` and exit code 2."""

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except (UserError, typer.TyperException) as error:  # TyperException: typer's usage and parameter errors
            if ctx.meta.get(DEBUG):
                raise
            message = error.format_message() if isinstance(error, typer.TyperException) else str(error)
            for line in message.splitlines() or [type(error).__name__]:
                print(f"distillrl: error: {line}", file=sys.stderr)
            raise typer.Exit(code=2) from None


app = typer.Typer(help="Knowledge distillation the way reinforcement learning does it.", no_args_is_help=True,
                  cls=OneLineErrors)  # fmt: skip
zoo_app = typer.Typer(help="The built-in tiny model zoo.", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")
control_app = typer.Typer(help="Policy distillation of control policies (gymnasium, stable-baselines3).",
                          no_args_is_help=True)  # fmt: skip
app.add_typer(control_app, name="control")
bench_app = typer.Typer(help="Benchmarks: the papers' findings reproduced on the built-in zoo.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
console = Console()
RECIPES = Path(__file__).resolve().parent / "recipes"


@app.callback()
def global_options(
    ctx: typer.Context, debug: bool = typer.Option(False, "--debug", help="show the traceback of an error")
) -> None:
    """Options of every command; keep transformers' progress bars and notices out of the run's own output."""
    from transformers.utils import logging as hf_logging

    ctx.meta[DEBUG] = debug
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def before_after_table(summary: dict) -> Table:
    table = Table(title="held-out accuracy (verifier)")
    for column in ("model", "greedy", "sampled", "reverse KL", "length"):
        table.add_column(column, justify="right" if column != "model" else "left")
    teachers = summary.get("teachers") or {}
    if len(teachers) > 1:  # several teachers: one row each
        rows = [(f"teacher {name}", metrics) for name, metrics in teachers.items()]
    else:
        rows = [("teacher", summary["teacher"])]
    rows += [("student before", summary["before"]), ("student after", summary["after"])]
    for label, metrics in rows:
        if metrics:
            kl = metrics.get("eval/reverse_kl")
            table.add_row(label, f"{metrics['eval/accuracy_greedy']:.3f}", f"{metrics['eval/accuracy_sampled']:.3f}",
                          "-" if kl is None else f"{kl:.4f}", f"{metrics['eval/response_length']:.1f}")  # fmt: skip
    return table


RESUME_HELP = "continue the run in the output directory from its newest checkpoint that loads"
OVERWRITE_HELP = "delete what the output directory holds and start a new run there"


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="run directory (metrics, checkpoints, plot, summary.json)"),
    set_: list[str] = typer.Option([], "--set", help="override a config field, e.g. --set optim.steps=50"),
    resume: bool = typer.Option(False, "--resume", help=RESUME_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """On-policy distillation from the shipped teacher into the shipped student-base on `arith`."""
    from distillrl.files import write_text_atomic
    from distillrl.trainer import train

    config = load_config(RECIPES / "demo.yaml", [f"output_dir={out}", *set_])
    started = time.perf_counter()
    summary = train(config, resume=resume, overwrite=overwrite)
    wall = time.perf_counter() - started
    console.print(before_after_table(summary))
    result = {
        "teacher_accuracy": summary["teacher"]["eval/accuracy_greedy"],
        "student_accuracy_before": summary["before"]["eval/accuracy_greedy"],
        "student_accuracy_after": summary["after"]["eval/accuracy_greedy"],
        "steps": config.optim.steps,
        "wall_seconds": round(wall, 1),
        "eval_prompts": config.eval.num_prompts,
    }
    write_text_atomic(out / "summary.json", json.dumps(result, indent=2))
    console.print(f"wrote {out / 'summary.json'} and {out / 'curves.png'} ({wall:.0f} s)")


@app.command("train")
def train_command(
    config_path: Path = typer.Argument(..., metavar="CONFIG.yaml", help="a recipe, e.g. configs/opd.yaml"),
    set_: list[str] = typer.Option([], "--set", help="override a config field, e.g. --set optim.lr=1e-4"),
    resume: bool = typer.Option(False, "--resume", help=RESUME_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """Train with a YAML recipe."""
    from distillrl.trainer import train

    summary = train(load_config(config_path, set_), resume=resume, overwrite=overwrite)
    if summary["before"] or summary["after"]:
        console.print(before_after_table(summary))


@app.command("eval")
def eval_command(
    model: str = typer.Option(..., help="zoo:NAME, checkpoint directory or hub id"),
    task: str = typer.Option("arith", help="arith, lists, mix, or a .jsonl/.parquet prompt file with answers"),
    n: int = typer.Option(200, min=1, help="held-out prompts"),
    teacher: Optional[str] = typer.Option(None, help="also report the reverse KL to this teacher"),
    temperature: float = typer.Option(1.0, min=0.0, help="temperature of the sampled accuracy (0: greedy)"),
    max_new_tokens: int = typer.Option(48, min=1, help="longest completion"),
) -> None:
    """Evaluate a model on held-out prompts."""
    from distillrl.config import TaskConfig
    from distillrl.evaluate import evaluate
    from distillrl.models.loading import load_causal_lm, load_tokenizer, model_config
    from distillrl.models.roles import check_same_vocabulary
    from distillrl.tasks import PromptsTask, build_task
    from distillrl.tasks.prompt_limits import check_prompts_fit

    builtin = task in ("arith", "lists", "mix")
    task_object = build_task(TaskConfig(name=task)) if builtin else PromptsTask(task, task)
    problems = task_object.test_problems(n)
    tokenizer = load_tokenizer(model)
    context = getattr(model_config(model), "max_position_embeddings", None)
    check_prompts_fit(task_object.located_prompts(n), tokenizer, f"--model {model}", context, max_new_tokens)
    if teacher:
        check_same_vocabulary(model, teacher, "--teacher")
    student = load_causal_lm(model)
    teacher_model = load_causal_lm(teacher) if teacher else None
    metrics = evaluate(student, tokenizer, task_object, problems, teacher_model, temperature, max_new_tokens)
    table = Table(title=f"{model} on {task} ({len(problems)} prompts)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.4f}")
    console.print(table)


@zoo_app.command("build")
def zoo_build(
    out: Optional[Path] = typer.Option(None, help="where to write the models (default: the package's zoo)"),
    only: list[str] = typer.Option([], help="build only these models"),
) -> None:
    """Train the built-in models from scratch on the CPU (seeded, reproducible)."""
    from distillrl.models.loading import ZOO_DIR
    from distillrl.models.zoo import ZOO, build_zoo

    unknown = [name for name in only if name not in ZOO]
    if unknown:
        raise UserError(f"--only: unknown zoo model {unknown[0]!r} (have: {', '.join(ZOO)})")
    results = build_zoo(out or ZOO_DIR, only or None)
    for name, metrics in results.items():
        console.print(f"{name}: greedy accuracy {metrics['eval/accuracy_greedy']:.3f}")


@zoo_app.command("list")
def zoo_list() -> None:
    """The built-in models, their size and where they are."""
    from distillrl.models.loading import ZOO_DIR, count_parameters, load_causal_lm
    from distillrl.models.zoo import ZOO

    table = Table(title="built-in models")
    for column in ("name", "parameters", "description", "path"):
        table.add_column(column)
    for name, spec in ZOO.items():
        path = ZOO_DIR / name
        size = f"{count_parameters(load_causal_lm(str(path))):,}" if (path / "config.json").exists() else "not built"
        table.add_row(f"zoo:{name}", size, spec.description, str(path))
    console.print(table)


@control_app.command("teacher")
def control_teacher(
    env: str = typer.Option("CartPole-v1", help="a gymnasium environment id with discrete actions"),
    out: Path = typer.Option(..., help="where to save the teacher (a stable-baselines3 .zip)"),
    timesteps: Optional[int] = typer.Option(None, min=1, help="PPO environment steps (default: the env's recipe)"),
    seed: int = typer.Option(0),
) -> None:
    """Train a PPO teacher with stable-baselines3."""
    from distillrl.control import require_control_dependencies

    require_control_dependencies()
    from distillrl.control.envs import evaluate_actor, make_vector_env
    from distillrl.control.policies import TeacherPolicy
    from distillrl.control.teachers import train_teacher

    make_vector_env(env, 1, seed).close()  # an unknown id or a continuous action space fails here, at once
    if out.exists() and out.is_dir():
        raise UserError(f"--out: {out} is a directory; give a file name such as {out / 'teacher.zip'}")
    with console.status(f"training a PPO teacher on {env}"):
        path = train_teacher(env, out, timesteps, seed)
    teacher = TeacherPolicy(path)
    result = evaluate_actor(env, teacher.act, 100)
    console.print(f"{path}: mean return {result.mean_return:.1f} +- {result.std_return:.1f} over 100 episodes "
                  f"({teacher.num_parameters} acting parameters)")  # fmt: skip


@control_app.command("distill")
def control_distill(
    config_path: Path = typer.Argument(..., metavar="CONFIG.yaml", help="e.g. configs/control/cartpole.yaml"),
    set_: list[str] = typer.Option([], "--set", help="override a config field, e.g. --set iterations=5"),
) -> None:
    """Distil a teacher policy into small students by every configured method; write a table and a plot."""
    from distillrl.control import require_control_dependencies

    require_control_dependencies()
    from distillrl.control.config import load_control_config
    from distillrl.control.run import run_control_distillation

    config = load_control_config(config_path, set_)
    run_control_distillation(config, console)
    out = Path(config.output_dir)
    console.print((out / "results.md").read_text())
    console.print(f"wrote {out / 'results.json'}, {out / 'results.md'} and {out / 'returns.png'}")


@app.command("inspect")
def inspect_command(
    student: str = typer.Option(..., help="zoo:NAME, checkpoint directory or hub id"),
    teacher: str = typer.Option(..., help="zoo:NAME, checkpoint directory or hub id"),
    prompt: list[str] = typer.Option(..., help="a prompt (repeat for several), e.g. --prompt '3+4*2='"),
    samples: int = typer.Option(4, min=1, help="student samples per prompt"),
    temperature: float = typer.Option(1.0, min=0.0, help="sampling temperature (0: greedy)"),
    max_new_tokens: int = typer.Option(48, min=1),
    out: Path = typer.Option(Path("forking_tokens.html"), help="the HTML page to write"),
) -> None:
    """Sample from the student and shade each token by its reverse KL to the teacher (forking tokens), as HTML."""
    from distillrl.files import write_text_atomic
    from distillrl.forking import inspect_samples, render_html
    from distillrl.models.loading import load_causal_lm, load_tokenizer, model_config
    from distillrl.models.roles import check_same_vocabulary
    from distillrl.tasks.prompt_limits import check_prompts_fit

    empty = next((i for i, text in enumerate(prompt) if not text), None)
    if empty is not None:
        raise UserError(f"--prompt: prompt {empty + 1} is empty")
    if not out.parent.is_dir():
        raise UserError(f"--out: {out.parent} is not a directory")
    tokenizer = load_tokenizer(student)
    context = getattr(model_config(student), "max_position_embeddings", None)
    check_prompts_fit([(f"--prompt {i + 1}", text) for i, text in enumerate(prompt)], tokenizer,
                      f"--student {student}", context, max_new_tokens)  # fmt: skip
    check_same_vocabulary(student, teacher, "--teacher")
    student_model, teacher_model = load_causal_lm(student), load_causal_lm(teacher)
    views = inspect_samples(student_model, teacher_model, tokenizer, prompt, samples, temperature, max_new_tokens)
    write_text_atomic(out, render_html(views, f"Forking tokens: {student} vs {teacher}"))
    for view in views:
        peak = view.tokens[view.peak] if view.tokens else None
        where = f"peak {peak.reverse_kl:.2f} nats at {peak.text!r} (teacher: {peak.teacher_token!r})" if peak else "empty"
        console.print(f"{view.prompt}{view.completion}  [dim]{where}[/]", highlight=False)
    console.print(f"wrote {out}")


@bench_app.command("repro")
def bench_repro(
    only: list[str] = typer.Option([], help="run only these experiments (repeatable)"),
    seeds: int = typer.Option(3, min=1, help="seeds per experiment"),
    quick: bool = typer.Option(False, "--quick", help="1 seed, 2 steps per run: a smoke test of every experiment"),
    out: Path = typer.Option(Path("docs/results"), help="where REPORT.md, plots/, raw/ and bench/ go"),
    work: Path = typer.Option(Path("runs/bench"), help="run directories (checkpoints) of the experiments"),
) -> None:
    """Reproduce the papers' findings on the built-in zoo: tables, verdicts and plots in OUT/REPORT.md."""
    from distillrl.bench.repro import run_repro

    started = time.perf_counter()
    report = run_repro(out, work, only or None, seeds, quick)
    console.print(f"wrote {report} ({(time.perf_counter() - started) / 60:.1f} min)")


if __name__ == "__main__":
    app()
