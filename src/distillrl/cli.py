"""The `distillrl` command line: demo, train, eval, inspect, report, zoo, control, bench, serve-teacher, teacher.

Heavy libraries (torch, transformers, datasets) are imported inside the commands that need them, so that
`distillrl --help` answers at once (scripts/bench_cli_help.py measures it).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from distillrl.bench.experiments import EXPERIMENTS
from distillrl.config import load_config
from distillrl.core.errors import UserError
from distillrl.core.interrupts import RunStopped
from distillrl.models.zoo_paths import ZOO_DIR
from distillrl.report.before_after import before_after_rows
from distillrl.zoo.recipes import ZOO

DEBUG = "distillrl.debug"  # ctx.meta key: show tracebacks instead of one-line errors


class OneLineErrors(TyperGroup):
    """Every user error (a UserError, or a bad option value) becomes `distillrl: error: ...` and exit code 2; a
    run stopped by a signal is one line and exit code 128 + the signal's number."""

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except RunStopped as stopped:
            sys.stderr.write(f"distillrl: {stopped}\n")  # one write: the ranks of a run share stderr, maybe unbuffered
            raise typer.Exit(code=stopped.exit_code) from None
        except (UserError, typer.TyperException) as error:  # TyperException: typer's usage and parameter errors
            if ctx.meta.get(DEBUG):
                raise
            message = error.format_message() if isinstance(error, typer.TyperException) else str(error)
            for line in message.splitlines() or [type(error).__name__]:
                sys.stderr.write(f"distillrl: error: {line}\n")
            raise typer.Exit(code=2) from None


# rich_markup_mode=None: click's plain help, where a boolean flag reads `--quick`, not `--quick <bool>`
CLI = dict(no_args_is_help=True, rich_markup_mode=None)
app = typer.Typer(help="Knowledge distillation the way reinforcement learning does it.", cls=OneLineErrors, **CLI)
zoo_app = typer.Typer(help="The built-in tiny model zoo.", **CLI)
app.add_typer(zoo_app, name="zoo")
control_app = typer.Typer(help="Policy distillation of control policies (gymnasium, stable-baselines3).", **CLI)
app.add_typer(control_app, name="control")
bench_app = typer.Typer(help="Benchmarks: the papers' findings reproduced on the built-in zoo; speed against TRL.",
                        **CLI)
app.add_typer(bench_app, name="bench")
teacher_app = typer.Typer(help="A stored teacher: score a dataset once, train from the stored scores.", **CLI)
app.add_typer(teacher_app, name="teacher")
console = Console()
RECIPES = Path(__file__).resolve().parent / "recipes"
ZOO_BUILD_DIR = Path("runs/zoo")


@app.callback()
def global_options(
    ctx: typer.Context, debug: bool = typer.Option(False, "--debug", help="show the traceback of an error")
) -> None:
    """Options of every command. Keeps transformers' and the hub's progress bars out of the run's own output (set
    before either is imported; an explicit setting in the environment wins); their warnings still show (a prompt
    past a model's positions, a generation setting the model ignores)."""
    ctx.meta[DEBUG] = debug
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:  # imported already (the command runs inside a Python session): tell it
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def before_after_table(summary: dict) -> Table:
    """Teacher(s), student before and after: greedy accuracy (and per domain when the held-out set has several),
    sampled accuracy, reverse KL to the teacher, response length (`report.before_after`)."""
    columns, rows = before_after_rows(summary)
    table = Table(title="held-out accuracy (verifier)")
    for column in columns:
        table.add_column(column, justify="right" if column != "model" else "left", no_wrap=column == "model")
    for row in rows:
        table.add_row(*row)
    return table


RESUME_HELP = "continue the run in the output directory from its newest checkpoint that loads"
OVERWRITE_HELP = ("delete the run that the output directory holds and start a new one there (a directory that holds "
                  "no run is never deleted)")


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="run directory (metrics, checkpoints, plot, summary.json)"),
    set_: list[str] = typer.Option([], "--set", help="override a config field, e.g. --set optim.steps=50"),
    resume: bool = typer.Option(False, "--resume", help=RESUME_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """On-policy distillation from the shipped teacher into the shipped student-base on `arith`."""
    config = load_config(RECIPES / "demo.yaml", [f"output_dir={out}", *set_])  # checked before torch loads
    from distillrl.core.files import write_text_atomic
    from distillrl.run.trainer import train

    started = time.perf_counter()
    summary = train(config, resume=resume, overwrite=overwrite)
    if summary is None:  # a rank other than 0 of a data-parallel run: rank 0 reports
        return
    wall = time.perf_counter() - started
    console.print(before_after_table(summary))
    result = {
        "teacher_accuracy": summary["teacher"]["eval/accuracy_greedy"],
        "student_accuracy_before": summary["before"]["eval/accuracy_greedy"],
        "student_accuracy_after": summary["after"]["eval/accuracy_greedy"],
        "steps": config.optim.steps,
        "wall_seconds": round(wall, 1),
        "eval_prompts": config.eval.num_prompts,
        "evaluations": {"teacher": summary["teacher"], "student_before": summary["before"],
                        "student_after": summary["after"]},
    }  # fmt: skip
    write_text_atomic(out / "summary.json", json.dumps(result, indent=2))
    console.print(f"wrote {out / 'summary.json'}, {out / 'curves.png'} and the trained model {out / 'final'} "
                  f"({wall:.0f} s)")


@app.command("train")
def train_command(
    config_path: Path = typer.Argument(..., metavar="CONFIG.yaml", help="a recipe, e.g. configs/opd.yaml"),
    set_: list[str] = typer.Option([], "--set", help="override a config field, e.g. --set optim.lr=1e-4"),
    resume: bool = typer.Option(False, "--resume", help=RESUME_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """Train with a YAML recipe; the trained model is saved to OUTPUT_DIR/final."""
    config = load_config(config_path, set_)  # a bad config is answered before torch loads
    from distillrl.run.trainer import train

    summary = train(config, resume=resume, overwrite=overwrite)
    if summary is None:  # a rank other than 0 of a data-parallel run: rank 0 reports
        return
    if summary["before"] or summary["after"]:
        console.print(before_after_table(summary))
    console.print(f"trained model: {Path(summary['run_dir']) / 'final'} (--model {summary['run_dir']} loads it)")


@app.command("eval")
def eval_command(
    model: str = typer.Option(..., help="zoo:NAME, a run directory (its final/ model), a model directory or hub id"),
    task: Optional[str] = typer.Option(None, help="arith, lists, mix, or a .jsonl/.parquet prompt file with answers "
                                       "(default: a run directory's own task, else arith)"),
    level: Optional[str] = typer.Option(None, help="arith, lists, mix: standard or hard (the zoo's hard-* models; use "
                                        "--max-new-tokens 64; default: a run directory's difficulty, else standard)"),
    n: Optional[int] = typer.Option(None, min=1, help="held-out prompts (default: a run directory's eval.num_prompts, "
                                    "else 200)"),
    teacher: Optional[str] = typer.Option(None, help="also report the reverse KL to this teacher"),
    temperature: float = typer.Option(1.0, min=0.0, help="temperature of the sampled accuracy (0: greedy)"),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", min=1, help="longest completion (default: "
                                                 "a run directory's eval.max_new_tokens, else 48)"),
    precision: str = typer.Option("fp32", help="fp32, or bf16 (models loaded in bf16, bf16 autocast)"),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="sequences per generation and scoring pass"),
    answer_format: Optional[str] = typer.Option(None, "--answer-format", help="where a completion states its answer: "
                                                "auto, hash, boxed, last_line, tag or regex:PATTERN (as "
                                                "task.answer_format; default: a run directory's, else auto)"),
    answer_tag: Optional[str] = typer.Option(None, "--answer-tag", help="the tag of --answer-format tag (default: "
                                             "answer, for <answer>...</answer>)"),
    answer_match: Optional[str] = typer.Option(None, "--answer-match", help="normalized or math (as task.answer_match)"),
    reward: Optional[str] = typer.Option(None, "--reward", help="a custom reward module:function or "
                                         "path/file.py:function (as task.reward)"),
    columns: Optional[str] = typer.Option(None, "--columns", help="a JSON/YAML mapping of fields to a prompt file's "
                                          "columns, e.g. '{prompt: question, answer: final}' (as task.columns)"),
    chat_template_kwargs: Optional[str] = typer.Option(
        None, "--chat-template-kwargs", help="a JSON object passed to the chat template, e.g. "
        "'{\"enable_thinking\": false}' (default: a run directory's task.chat_template_kwargs, else none)"),
    stop_string: Optional[list[str]] = typer.Option(
        None, "--stop-string", help="a completion also ends at this string (repeatable; default: a run directory's "
        "rollout.stop_strings, else none)"),
    samples: Optional[Path] = typer.Option(None, "--samples", help="also write every completion (greedy and sampled: "
                                           "prompt, completion, answer, reward, length, per-token reverse KL to "
                                           "--teacher) to this .jsonl file, and print two of them"),
) -> None:
    """Evaluate a model on held-out prompts (a run directory: on the run's own task, as it evaluated itself)."""
    from distillrl.run.eval_setup import EvalOptions
    from distillrl.run.model_eval import evaluate_model

    options = EvalOptions(task, level, n, max_new_tokens, answer_format, answer_tag, answer_match, reward, columns,
                          chat_template_kwargs, stop_string or [])  # fmt: skip
    result = evaluate_model(model, options, teacher, temperature, precision, batch_size, console.status)
    if samples is not None:
        from distillrl.report.samples import sample_lines, write_samples

        console.print("\n".join(["samples:", *sample_lines(result.samples, 2)]), highlight=False, markup=False,
                      soft_wrap=True)  # fmt: skip
        console.print(f"wrote {len(result.samples)} completions to {write_samples(samples, result.samples)}")
    table = Table(title=f"{model} on {result.setup.source} ({result.num_prompts} prompts)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result.metrics.items():
        table.add_row(name, f"{value:.4f}")
    console.print(table)


@app.command("export")
def export_command(
    model: str = typer.Argument(..., metavar="RUN_OR_MODEL", help="a run directory (its final/), a checkpoint's "
                                "model/ or an adapter directory"),
    out: Path = typer.Option(..., help="the new checkpoint directory (must not hold anything)"),
    merge: bool = typer.Option(False, "--merge", help="fold a LoRA adapter into its base weights"),
) -> None:
    """Write a trained model as a plain Hugging Face checkpoint (AutoModelForCausalLM loads it)."""
    from distillrl.models.export import export_model

    console.print(f"wrote {export_model(model, out, merge)}")


@zoo_app.command("build")
def zoo_build(
    out: Path = typer.Option(ZOO_BUILD_DIR, help="where to write the models (NAME/ under it)"),
    only: list[str] = typer.Option([], help=f"build only these models (repeatable): {', '.join(ZOO)}"),
    into_package: bool = typer.Option(False, "--into-package",
                                      help=f"replace the shipped models that zoo:NAME loads ({ZOO_DIR})"),
) -> None:
    """Train the built-in models from scratch on the CPU (seeded). A model that starts from another one (e.g.
    teacher from teacher-base) takes it from OUT when built there, else the shipped one."""
    from distillrl.zoo.build import build_zoo

    unknown = [name for name in only if name not in ZOO]
    if unknown:
        raise UserError(f"--only: unknown zoo model {unknown[0]!r} (have: {', '.join(ZOO)})")
    try:
        results = build_zoo(ZOO_DIR if into_package else out, only or None)
    except FileNotFoundError as error:
        raise UserError(str(error)) from None
    for name, metrics in results.items():
        console.print(f"{out / name}: greedy accuracy {metrics['eval/accuracy_greedy']:.3f} (from {metrics['init']})")
    if not into_package:
        console.print(f"use a built model by its path, e.g. --model {out / next(iter(results))}; zoo:NAME still loads "
                      "the shipped models (--into-package replaces them)")  # fmt: skip


@zoo_app.command("list")
def zoo_list() -> None:
    """The built-in models, their size, held-out accuracy at build time (and their base's) and where they are."""
    from distillrl.models.loading import count_parameters, load_causal_lm
    from distillrl.zoo.recipes import describe_build_record, read_build_record

    table = Table(title="built-in models")
    for column in ("name", "parameters", "description", "held-out accuracy (greedy)", "path"):
        table.add_column(column)
    for name, spec in ZOO.items():
        path = ZOO_DIR / name
        size = f"{count_parameters(load_causal_lm(str(path))):,}" if (path / "config.json").exists() else "not built"
        table.add_row(f"zoo:{name}", size, spec.description, describe_build_record(read_build_record(path)), str(path))
    console.print(table)


@control_app.command("teacher")
def control_teacher(
    env: str = typer.Option("CartPole-v1", help="a gymnasium environment id"),
    out: Path = typer.Option(..., help="where to save the teacher (a stable-baselines3 .zip)"),
    algo: str = typer.Option("ppo", help="ppo (discrete or Box actions; Box: with VecNormalize), sac or td3 (Box)"),
    timesteps: Optional[int] = typer.Option(None, min=1, help="environment steps (default: the env's recipe)"),
    seed: int = typer.Option(0),
) -> None:
    """Train a teacher with stable-baselines3 (64 x 64 networks)."""
    from distillrl.control import require_control_dependencies

    require_control_dependencies()
    from distillrl.control.envs import evaluate_actor, make_vector_env
    from distillrl.control.policies import TeacherPolicy
    from distillrl.control.teachers import train_teacher

    envs = make_vector_env(env, 1, seed)  # an unknown id or an unsupported action space fails here, at once
    continuous = not hasattr(envs.single_action_space, "n")
    envs.close()
    if out.exists() and out.is_dir():
        raise UserError(f"--out: {out} is a directory; give a file name such as {out / 'teacher.zip'}")
    with console.status(f"training a {algo.upper()} teacher on {env}"):
        path = train_teacher(env, out, timesteps, seed, algo, continuous)
    teacher = TeacherPolicy(path)
    result = evaluate_actor(env, teacher.act, 100)
    console.print(f"{path}: mean return {result.mean_return:.1f} +- {result.std_return:.1f} over 100 episodes, "
                  f"deterministic ({teacher.num_parameters} acting parameters)")  # fmt: skip


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
    student: Optional[str] = typer.Option(None, help="zoo:NAME, a run directory (its final/ model and its rendering, "
                                          "as eval --model), a model directory or hub id"),
    teacher: Optional[str] = typer.Option(None, help="zoo:NAME, a run directory (its final/ model), a model directory "
                                          "or hub id (default with --run: the run's teacher)"),
    run: Optional[str] = typer.Option(None, "--run", metavar="RUN_DIR", help="a run directory: its student (final/), "
                                      "teacher, rendering (task.chat_template_kwargs, task.truncate, "
                                      "rollout.stop_strings) and held-out prompts, each unless given"),
    prompt: list[str] = typer.Option([], help="a prompt (repeat for several), e.g. --prompt '3+(4*2)='; an arith "
                                     "prompt's samples are marked right or wrong"),
    prompts: Optional[Path] = typer.Option(None, "--prompts", metavar="FILE", help="a .jsonl/.parquet prompt file "
                                           "(rows with `prompt` or `messages`, as task.train_path; an `answer` marks "
                                           "the samples right or wrong)"),
    n: int = typer.Option(4, min=1, help="prompts taken from --prompts, or (without --prompt) from the task of the "
                          "student's run (arith for any other model)"),
    samples: int = typer.Option(4, min=1, help="student samples per prompt"),
    temperature: float = typer.Option(1.0, min=0.0, help="sampling temperature (0: greedy)"),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", min=1, help="longest completion sampled, "
                                                 "in tokens (default: a run's eval.max_new_tokens, else 48)"),
    chat_template_kwargs: Optional[str] = typer.Option(
        None, "--chat-template-kwargs", help="a JSON object passed to the chat template, e.g. "
        "'{\"enable_thinking\": false}' (default: the run's task.chat_template_kwargs, else none)"),
    stop_string: Optional[list[str]] = typer.Option(
        None, "--stop-string", help="a sample also ends at this string (repeatable; default: the run's "
        "rollout.stop_strings, else none)"),
    seed: int = typer.Option(0, help="seed of the student's sampling"),
    out: Optional[Path] = typer.Option(None, help="the HTML page to write (default: a new "
                                       "runs/inspect/forking-YYYYmmdd-HHMMSS.html per call)"),
) -> None:
    """Sample from the student as a run renders and stops, and shade each token by its reverse KL to the teacher
    (forking tokens), as HTML."""
    from distillrl.core.files import unused_path, write_text_atomic
    from distillrl.report.forking import render_html
    from distillrl.run.model_inspect import InspectOptions, inspect_models

    if out is not None and out.parent.exists() and not out.parent.is_dir():
        raise UserError(f"--out: {out.parent} is not a directory")
    options = InspectOptions(student, teacher, run, tuple(prompt), None if prompts is None else str(prompts), n,
                             samples, temperature, max_new_tokens, chat_template_kwargs, tuple(stop_string or ()),
                             seed)  # fmt: skip
    inspection = inspect_models(options)
    out = out or unused_path(Path("runs/inspect") / f"forking-{time.strftime('%Y%m%d-%H%M%S')}.html")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, render_html(inspection.views, f"Forking tokens: {inspection.student} vs "
                                       f"{inspection.teacher}"))  # fmt: skip
    marks = {True: "[green]right[/]", False: "[red]wrong[/]", None: "[dim]?[/]"}
    shown = None
    for view in inspection.views:
        if view.prompt != shown:  # the samples of one prompt follow it
            console.print(f"[dim]{escape(view.prompt.rstrip())}[/]", highlight=False, soft_wrap=True)
            shown = view.prompt
        peak = view.tokens[view.peak] if view.tokens else None
        where = f"peak {peak.reverse_kl:.2f} nats at {peak.text!r} (teacher: {peak.teacher_token!r})" if peak else "empty"
        sample = view.text.replace("\n", "\u23ce")  # one line per sample: a line break shows as a return sign
        console.print(f"  {marks[view.correct]} {escape(sample)}  [dim]{escape(where)}[/]", highlight=False,
                      soft_wrap=True)  # fmt: skip
    console.print(f"wrote {out}", highlight=False, soft_wrap=True)


@app.command("report")
def report_command(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="a run directory (a run's output_dir), running or done"),
) -> None:
    """Rebuild RUN_DIR/report.html: one self-contained page with the config, the before/after table, the curves,
    the latest samples with their rewards and their forking tokens."""
    from distillrl.report.run_page import write_run_page

    console.print(f"wrote {escape(str(write_run_page(run_dir)))}", highlight=False)


@app.command("serve-teacher")
def serve_teacher(
    model: str = typer.Option(..., help="zoo:NAME, a run directory (its final/ model), a model directory or hub id"),
    host: str = typer.Option("127.0.0.1", help="address to bind (0.0.0.0 exposes the server to the network)"),
    port: int = typer.Option(8000, min=0, max=65535, help="port (0: any free port, printed at start)"),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N"),
    max_logprobs: int = typer.Option(20, min=0, help="largest prompt_logprobs a request may ask (vLLM's default: 20)"),
    precision: str = typer.Option("fp32", help="fp32 or bf16 weights (log-probs are computed in float32)"),
    api_key: str | None = typer.Option(None, envvar="DISTILLRL_API_KEY", show_default=False,
                                       help="every request but GET /health needs `Authorization: Bearer KEY` "
                                       "(prefer the variable: an option shows in `ps`)"),  # fmt: skip
    request_timeout: float = typer.Option(30.0, min=0.1, help="seconds for a request's head, then its body, to "
                                          "arrive (then the connection is closed)"),  # fmt: skip
    max_queue: int = typer.Option(16, min=1, help="requests running or waiting for the model at most (503 past it)"),
    max_answer_entries: int = typer.Option(1 << 19, min=1, help="log-probs in one answer at most (413 past it): "
                                           "positions x (prompt_logprobs + 1)"),  # fmt: skip
    log_requests: bool = typer.Option(False, "--log-requests", help="one line per request on stderr (method, path, "
                                      "status, rows, tokens, ms)"),  # fmt: skip
) -> None:
    """Serve a model's prompt log-probs over vLLM's completions API (`teacher.server: URL` scores through it)."""
    if precision not in ("fp32", "bf16"):
        raise UserError(f"--precision {precision}: use fp32 or bf16")
    started = time.monotonic()
    print(f"loading {model} ({precision}, device {device}) ...", file=sys.stderr, flush=True)  # before torch imports
    from distillrl.models.loading import check_model_files
    from distillrl.serve.http import ServerLimits, TeacherServer, bind
    from distillrl.serve.teacher_model import TeacherModel

    check_model_files(model)
    try:  # before the model loads: a port in use is said at once
        listening = bind(host, port)
    except OSError as error:
        raise UserError(f"--host {host} --port {port}: cannot listen there ({os.strerror(error.errno)})") from None
    teacher = TeacherModel(model, device, max_logprobs, precision, max_answer_entries)
    print(f"loaded {model} onto {teacher.device} in {time.monotonic() - started:.1f} s ({teacher.vocab_size} token "
          "ids)", file=sys.stderr, flush=True)  # fmt: skip
    server = TeacherServer(teacher, listening, api_key or None, ServerLimits(request_timeout, max_queue=max_queue),
                           sys.stderr if log_requests else None)  # fmt: skip
    bound_host, bound_port = server.address
    print(f"serving {model} at http://{bound_host}:{bound_port} (POST /v1/completions, /tokenize; GET /health, "
          f"/v1/models){'; requests need the API key' if api_key else ''}; Ctrl-C stops", flush=True)  # fmt: skip
    if bound_host not in ("127.0.0.1", "::1", "localhost") and not api_key:
        print(f"note: {bound_host} is reachable from other machines, and without --api-key (or DISTILLRL_API_KEY) "
              "anyone there can use this server", flush=True)  # fmt: skip
    server.serve_forever()


@teacher_app.command("cache")
def teacher_cache(
    teacher: str = typer.Option(..., help="zoo:NAME, a run directory (its final/ model), a model directory or hub id"),
    data: Path = typer.Option(..., help="a .jsonl/.parquet file with `prompt` and `completion` (the task.train_path "
                              "of the runs that will read the cache)"),
    top_k: int = typer.Option(20, "--top-k", min=1, help="teacher tokens kept per position (+ a tail bucket)"),
    out: Path = typer.Option(..., help="the cache directory to write (new or empty)"),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N"),
) -> None:
    """Score a dataset's sequences with the teacher once; `teacher.cache: OUT` trains from them with no teacher."""
    from distillrl.models.loading import check_model_files
    from distillrl.run.teacher_cache import write_teacher_cache

    check_model_files(teacher)
    started = time.perf_counter()
    with console.status(f"scoring {data} with {teacher}"):
        manifest = write_teacher_cache(teacher, str(data), top_k, out, device=device)
    console.print(f"wrote {out}: {manifest['tokens']:,} tokens of {manifest['rows']:,} sequences in "
                  f"{len(manifest['shards'])} shard(s), {manifest['bytes']:,} bytes on disk = "
                  f"{manifest['bytes_per_token']:.1f} bytes per token at k={top_k} "
                  f"({time.perf_counter() - started:.0f} s)", highlight=False)  # fmt: skip


@bench_app.command("repro")
def bench_repro(
    only: list[str] = typer.Option([], help="run only these experiments (repeatable): sweep (the lr sweep alone), "
                                   f"{', '.join(EXPERIMENTS)}"),
    seeds: int = typer.Option(3, min=1, help="seeds per experiment"),
    quick: bool = typer.Option(False, "--quick", help="1 seed, 2 steps per run: a smoke test of every experiment"),
    sweep_from: Optional[Path] = typer.Option(None, "--sweep-from", help="take each method's lr from this saved "
                                              "lr_sweep.json (OUT/bench/lr_sweep.json of an earlier run, or of "
                                              "scripts/lr_sweep_parallel.py) instead of running the lr sweep first"),
    out: Optional[Path] = typer.Option(None, help="where REPORT.md, plots/, raw/ and bench/ go (default: a new "
                                       "runs/bench-repro/TIMESTAMP; --out docs/results updates the committed report)"),
    work: Path = typer.Option(Path("runs/bench"), help="run directories (checkpoints) of the experiments"),
    workers: int = typer.Option(1, min=1, help="run the experiments in this many processes of one torch thread each "
                                "(experiments sharing runs stay together; 2 suits a 2-core machine)"),
    threads: Optional[int] = typer.Option(None, min=1, help="torch CPU threads of this process (default: torch's)"),
) -> None:
    """Reproduce the papers' findings on the built-in zoo: tables, verdicts and plots in OUT/REPORT.md."""
    from distillrl.bench.repro import check_out_dir, default_out_dir, run_repro

    out = out or default_out_dir()
    started = time.perf_counter()
    check_out_dir(out, quick)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    report = run_repro(out, work, only or None, seeds, quick, sweep_from, workers)
    console.print(f"wrote {report} ({(time.perf_counter() - started) / 60:.1f} min)")


@bench_app.command("speed")
def bench_speed(
    config: str = typer.Option("cpu", help="cpu, gpu (one CUDA GPU) or tiny (a smoke size)"),
    rounds: Optional[int] = typer.Option(None, min=1, help="interleaved rounds (default: the config's)"),
    steps: Optional[int] = typer.Option(None, min=2, help="optimizer steps per tool per round, the first untimed"),
    out: Optional[Path] = typer.Option(None, help="result JSON (default: runs/bench-speed/CONFIG.json)"),
    threads: Optional[int] = typer.Option(None, min=1, help="torch CPU threads for both tools (default: torch's); "
                                          "1 keeps a busy shared machine from oversubscribing its cores"),
    precision: Optional[str] = typer.Option(None, help="fp32 or bf16 for both tools (default: the config's)"),
    set_: list[str] = typer.Option([], "--set", help="override a distillrl config field, e.g. rollout.engine=static"),
) -> None:
    """distillrl's on-policy reverse-KL step against TRL's DistillationTrainer: same models, batch, lengths and
    divergence, interleaved rounds; prints s/step, tokens/s, peak memory and the floor decomposition."""
    from distillrl.bench.speed import run_speed_bench, write_result
    from distillrl.bench.speed_report import floor_table, step_table, summary_lines
    from distillrl.bench.speed_spec import SETTINGS

    if config not in SETTINGS:
        raise UserError(f"--config {config}: unknown (have: {', '.join(SETTINGS)})")
    if precision not in (None, "fp32", "bf16"):
        raise UserError(f"--precision {precision}: use fp32 or bf16")
    if threads is not None:
        import torch

        torch.set_num_threads(threads)

    def progress(segment) -> None:
        console.print(f"round {segment.round + 1} {segment.tool}: steps "
                      + ", ".join(f"{s:.2f}" for s in segment.step_seconds) + " s", highlight=False)  # fmt: skip

    result = run_speed_bench(config, rounds, steps, set_, precision, on_segment=progress)
    out = out or Path("runs/bench-speed") / f"{config}.json"
    write_result(result, out)
    console.print(step_table(result))
    console.print(floor_table(result))
    for line in summary_lines(result):
        console.print(line, highlight=False)
    console.print(f"wrote {out}")


@bench_app.command("memory")
def bench_memory(
    config: str = typer.Option("cpu", help="cpu (8 layers, 256 wide), gpu (Qwen3-0.6B's widths) or tiny (a smoke size)"),
    lengths: str = typer.Option("512,1024,2048,4096", help="completion lengths, comma-separated"),
    budget_length: int = typer.Option(1024, min=1, help="the length of the token-budget runs (1 and 4 prompts)"),
    threads: Optional[int] = typer.Option(None, min=1, help="torch CPU threads in each child (default: torch's)"),
    out: Path = typer.Option(Path("runs/bench-memory"), help="folder for CONFIG.json and CONFIG.png"),
) -> None:
    """Peak memory and seconds of one OPD step (teacher pass + student update on random tokens) as completions
    grow: fidelity sampled and full, with and without activation checkpointing, and a token budget as the prompts
    grow 4x; each measurement in its own process. Prints a table and the ratios, writes JSON and a PNG."""
    import json

    from distillrl.bench.memory import SHAPES, acceptance, plot, run_memory_bench, table_lines

    if config not in SHAPES:
        raise UserError(f"--config {config}: unknown (have: {', '.join(SHAPES)})")
    try:
        sizes = [int(part) for part in lengths.split(",")]
    except ValueError:
        raise UserError(f"--lengths {lengths}: give whole numbers separated by commas, e.g. 512,1024") from None
    device = "cuda" if config == "gpu" else "cpu"
    rows = run_memory_bench(config, sizes, budget_length, device, threads,
                            on_row=lambda row: console.print(table_lines([row])[1], highlight=False))  # fmt: skip
    ratios = acceptance(rows, sizes, budget_length)
    console.print("\n".join(table_lines(rows)), highlight=False)
    for key, values in ratios.items():
        console.print(f"{key} ratios: " + "; ".join(f"{name} {value:.2f}" for name, value in values.items()
                                                    if value is not None), highlight=False)  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{config}.json").write_text(json.dumps({"rows": rows, "ratios": ratios}, indent=2))
    plot(rows, out / f"{config}.png")
    console.print(f"wrote {out / config}.json and .png")


if __name__ == "__main__":
    app()
