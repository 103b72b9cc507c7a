"""`distillrl control distill`: every configured method against the same teacher, then a table and a plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from distillrl.config import ConfigError
from distillrl.control.config import ControlConfig
from distillrl.control.envs import evaluate_actor, make_vector_env
from distillrl.control.methods import MethodResult, run_method
from distillrl.control.policies import MLPPolicy, resolve_teacher
from distillrl.models.loading import count_parameters


def normalised(value: float, teacher: float, random: float) -> float:
    """(R - R_random) / (R_teacher - R_random): 1 is the teacher, 0 a uniformly random policy (this is what
    "x% of the teacher's return" means when returns are negative, as in Acrobot)."""
    return (value - random) / (teacher - random) if teacher != random else float("nan")


def samples_to_reach(result: MethodResult, target: float) -> int | None:
    """Teacher-labelled states after the first round whose return reached `target` (None: never)."""
    return next((n for n, r in zip(result.labelled, result.returns) if r >= target), None)


def reach_text(labelled_to_95: list[int | None]) -> str:
    """Teacher-labelled states each seed needed to reach 95% of the teacher, or "not reached"."""
    return ", ".join("not reached" if n is None else str(n) for n in labelled_to_95)


def method_summary(runs: list[MethodResult], target: float, teacher_return: float, random_return: float) -> dict:
    """One method over its seeds: the final return (mean over seeds +- std over seeds; with one seed, +- std
    over episodes), labelled states to reach the target per seed, and the curve averaged over seeds."""
    finals = np.array([r.final.mean_return for r in runs])
    reached = [samples_to_reach(r, target) for r in runs]
    return {
        "method": runs[0].title,
        "return": float(finals.mean()),
        "std": float(finals.std()) if len(runs) > 1 else runs[0].final.std_return,
        "per_seed": finals.tolist(),
        "episodes": runs[0].final.episodes,
        "parameters": runs[0].parameters,
        "microseconds_per_action": float(np.mean([r.final.microseconds_per_action for r in runs])),
        "labelled": runs[0].labelled[-1],
        "labelled_to_95": reached,
        "seconds": float(sum(r.seconds for r in runs)),
        "normalised": normalised(float(finals.mean()), teacher_return, random_return),
        "curve": {"labelled": runs[0].labelled, "returns": np.mean([r.returns for r in runs], axis=0).tolist()},
    }


def run_control_distillation(config: ControlConfig, console: Console | None = None) -> dict:
    """Evaluate the teacher and a random policy, run each method, write results.json / results.md / returns.png.
    With a console: a line per method and a progress bar over its rounds."""
    envs = make_vector_env(config.env, 1, config.seed)  # an unknown environment is named before the teacher
    teacher = resolve_teacher(config.teacher.path, config.env)
    obs_dim, num_actions = int(np.prod(envs.single_observation_space.shape)), int(envs.single_action_space.n)
    envs.close()
    student_size = count_parameters(MLPPolicy(obs_dim, num_actions, config.student.hidden))
    if student_size > config.max_student_fraction * teacher.num_parameters:
        raise ConfigError(f"student.hidden: {config.student.hidden} gives {student_size} parameters, more than "
                          f"{config.max_student_fraction:g} of the teacher's {teacher.num_parameters}")  # fmt: skip
    say = console.print if console is not None else (lambda *_: None)
    teacher_eval = evaluate_actor(config.env, teacher.act, config.eval_episodes, seed=config.seed + 2)
    rng = np.random.default_rng(config.seed)
    random_eval = evaluate_actor(config.env, lambda s: rng.integers(num_actions, size=len(s)), config.eval_episodes,
                                 seed=config.seed + 2)  # fmt: skip
    say(f"{config.env}: teacher {teacher_eval.mean_return:.1f} +- {teacher_eval.std_return:.1f} "
        f"({teacher.num_parameters} parameters), random {random_eval.mean_return:.1f}")  # fmt: skip
    target = random_eval.mean_return + 0.95 * (teacher_eval.mean_return - random_eval.mean_return)
    methods = []
    progress = Progress(TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("rounds"),
                        TimeElapsedColumn(), console=console, disable=console is None, transient=True)  # fmt: skip
    for method in config.methods:
        with progress:
            bar = progress.add_task(method.title, total=config.iterations * config.seeds)
            runs = [run_method(config.model_copy(update={"seed": config.seed + s}), method, teacher, obs_dim,
                               num_actions, on_round=lambda: progress.advance(bar)) for s in range(config.seeds)]  # fmt: skip
            progress.remove_task(bar)
        methods.append(method_summary(runs, target, teacher_eval.mean_return, random_eval.mean_return))
        m = methods[-1]
        say(f"  {m['method']}: {m['return']:.1f} +- {m['std']:.1f} after {m['labelled']} labelled states, "
            f"labelled states to reach 95% of the teacher: {reach_text(m['labelled_to_95'])} ({m['seconds']:.0f} s)")  # fmt: skip
    summary = {
        "env": config.env,
        "seeds": config.seeds,
        "teacher": {"return": teacher_eval.mean_return, "std": teacher_eval.std_return,
                    "parameters": teacher.num_parameters, "microseconds_per_action": teacher_eval.microseconds_per_action},
        "random_return": random_eval.mean_return,
        "target_return": target,
        "methods": methods,
    }  # fmt: skip
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    (out / "results.md").write_text(results_table(summary))
    plot_returns(summary, out / "returns.png")
    return summary


def results_table(summary: dict) -> str:
    """A markdown table: return +- std over the final evaluation, size, speed, labelled states used."""
    teacher = summary["teacher"]
    lines = [
        f"### {summary['env']}",
        "",
        f"Teacher: {teacher['return']:.1f} +- {teacher['std']:.1f} ({teacher['parameters']} parameters, "
        f"{teacher['microseconds_per_action']:.0f} us per action); random policy {summary['random_return']:.1f}; "
        f"95% of the teacher (normalised) = {summary['target_return']:.1f}. "
        + (f"{summary['seeds']} seeds: return is the mean +- std over seeds of each seed's {summary['methods'][0]['episodes']}"
           "-episode mean." if summary["seeds"] > 1 else "Return is the mean +- std over episodes (one seed)."),
        "",
        "| method | return | % of teacher (normalised) | parameters | us / action | labelled states | labelled to reach 95% (per seed) |",
        "|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for m in summary["methods"]:
        reach = reach_text(m["labelled_to_95"])
        lines.append(f"| {m['method']} | {m['return']:.1f} +- {m['std']:.1f} | {100 * m['normalised']:.0f}% | "
                     f"{m['parameters']} | {m['microseconds_per_action']:.0f} | {m['labelled']} | {reach} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def plot_returns(summary: dict, path: Path) -> None:
    """Return against teacher-labelled states, one line per method, the teacher and its 95% as references."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for m in summary["methods"]:
        axis.plot(m["curve"]["labelled"], m["curve"]["returns"], marker="o", label=m["method"])
    axis.axhline(summary["teacher"]["return"], color="black", linestyle="--", label="teacher")
    axis.axhline(summary["target_return"], color="grey", linestyle=":", label="95% of teacher")
    axis.set_xlabel("teacher-labelled states")
    axis.set_ylabel("mean return")
    axis.set_title(f"policy distillation on {summary['env']}")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
