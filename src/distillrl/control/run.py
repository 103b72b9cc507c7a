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
from distillrl.control.heads import CategoricalHead, head_for
from distillrl.control.losses import DISTRIBUTION_LOSSES
from distillrl.control.methods import MethodResult, run_method
from distillrl.control.policies import MLPPolicy, TeacherPolicy, resolve_teacher
from distillrl.core.errors import UserError
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
    sampled = np.array([r.final_sampled.mean_return for r in runs if r.final_sampled is not None])
    return {
        "method": runs[0].title,
        "return": float(finals.mean()),
        "std": float(finals.std()) if len(runs) > 1 else runs[0].final.std_return,
        "per_seed": finals.tolist(),
        "sampled_return": float(sampled.mean()) if len(sampled) else None,
        "sampled_std": None if not len(sampled) else float(sampled.std()) if len(runs) > 1
        else runs[0].final_sampled.std_return,
        "formula": None if isinstance(runs[0].best, MLPPolicy) else runs[0].best.formula(),
        "episodes": runs[0].final.episodes,
        "parameters": runs[0].parameters,
        "microseconds_per_action": float(np.mean([r.final.microseconds_per_action for r in runs])),
        "labelled": runs[0].labelled[-1],
        "labelled_to_95": reached,
        "seconds": float(sum(r.seconds for r in runs)),
        "normalised": normalised(float(finals.mean()), teacher_return, random_return),
        "curve": {"labelled": runs[0].labelled, "returns": np.mean([r.returns for r in runs], axis=0).tolist()},
    }


def student_head(config: ControlConfig, teacher: TeacherPolicy, action_space):
    """The students' action head: categorical on Discrete actions; on Box `student.head`, by default the
    teacher's (squashed for SAC/TD3, gaussian for PPO). Refused here, before any work: a teacher for the other
    kind of action space, a loss the teacher or the actions cannot give (a TD3 teacher has no distribution;
    `mse` needs Box actions), distribution losses between a squashed and an unsquashed Gaussian."""
    env_discrete = hasattr(action_space, "n")
    if env_discrete != isinstance(teacher.head, CategoricalHead):
        raise UserError(f"teacher.path: {config.teacher.path} acts on {teacher.head.name} actions; {config.env} has "
                        f"{'discrete' if env_discrete else 'Box'} actions")  # fmt: skip
    name = teacher.head.name if config.student.head == "auto" else config.student.head
    head = head_for(action_space, name)
    for index, method in enumerate(config.methods):
        loss, where = method.kd_loss, f"methods.{index}.{'loss' if method.name in ('dagger', 'hybrid') else 'name'}"
        if loss is not None and loss not in head.losses:
            raise UserError(f"{where}: {loss} needs Box actions; {config.env} has discrete actions")
        needs_distribution = loss in DISTRIBUTION_LOSSES or method.name == "hybrid"
        if teacher.deterministic and needs_distribution:
            raise UserError(f"{where}: {method.name if method.name == 'hybrid' else loss} needs the teacher's action "
                            f"distribution; {config.teacher.path} is a TD3 teacher (deterministic): use mse or a "
                            "readable student")  # fmt: skip
        if needs_distribution and head.name != teacher.head.name:
            raise UserError(f"student.head: {head.name} against a {teacher.head.name} teacher has no closed-form "
                            f"{loss}; use the teacher's head or loss mse")  # fmt: skip
    return head


def run_control_distillation(config: ControlConfig, console: Console | None = None) -> dict:
    """Evaluate the teacher and a random policy, run each method, write results.json / results.md / returns.png.
    With a console: a line per method and a progress bar over its rounds."""
    envs = make_vector_env(config.env, 1, config.seed)  # an unknown environment is named before the teacher
    teacher = resolve_teacher(config.teacher.path, config.env, config.teacher.vecnormalize)
    obs_dim = int(np.prod(envs.single_observation_space.shape))
    head = student_head(config, teacher, envs.single_action_space)
    envs.close()
    student_size = count_parameters(MLPPolicy(obs_dim, head, config.student.hidden))
    if student_size > config.max_student_fraction * teacher.num_parameters:
        raise ConfigError(f"student.hidden: {config.student.hidden} gives {student_size} parameters, more than "
                          f"{config.max_student_fraction:g} of the teacher's {teacher.num_parameters}")  # fmt: skip
    say = console.print if console is not None else (lambda *_: None)
    teacher_eval = evaluate_actor(config.env, teacher.act, config.eval_episodes, seed=config.seed + 2)
    teacher_sampled = None if teacher.deterministic else evaluate_actor(
        config.env, lambda s: teacher.act(s, greedy=False), config.eval_episodes, seed=config.seed + 2)
    rng = np.random.default_rng(config.seed)
    random_eval = evaluate_actor(config.env, lambda s: head.random_actions(len(s), rng), config.eval_episodes,
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
            runs = [run_method(config.model_copy(update={"seed": config.seed + s}), method, teacher, head, obs_dim,
                               on_round=lambda: progress.advance(bar)) for s in range(config.seeds)]  # fmt: skip
            progress.remove_task(bar)
        methods.append(method_summary(runs, target, teacher_eval.mean_return, random_eval.mean_return))
        m = methods[-1]
        say(f"  {m['method']}: {m['return']:.1f} +- {m['std']:.1f} after {m['labelled']} labelled states, "
            f"labelled states to reach 95% of the teacher: {reach_text(m['labelled_to_95'])} ({m['seconds']:.0f} s)")  # fmt: skip
    summary = {
        "env": config.env,
        "seed": config.seed,
        "seeds": config.seeds,
        "head": head.name,
        "teacher": {"return": teacher_eval.mean_return, "std": teacher_eval.std_return,
                    "sampled_return": teacher_sampled.mean_return if teacher_sampled else None,
                    "sampled_std": teacher_sampled.std_return if teacher_sampled else None,
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
    """A markdown table: return +- std over the final evaluation, deterministic and sampled, size, speed,
    labelled states used; then the readable students' formulas."""
    teacher = summary["teacher"]
    sampled = f", sampled {teacher['sampled_return']:.1f} +- {teacher['sampled_std']:.1f}" if teacher["sampled_return"] is not None else ""
    lines = [
        f"### {summary['env']}",
        "",
        f"Teacher: {teacher['return']:.1f} +- {teacher['std']:.1f}{sampled} ({teacher['parameters']} parameters, "
        f"{teacher['microseconds_per_action']:.0f} us per action); random policy {summary['random_return']:.1f}; "
        f"95% of the teacher (normalised) = {summary['target_return']:.1f}. "
        + (f"{summary['seeds']} seeds: return is the mean +- std over seeds of each seed's {summary['methods'][0]['episodes']}"
           "-episode mean." if summary["seeds"] > 1 else "Return is the mean +- std over episodes (one seed)."),
        "",
        "| method | return | sampled actions | % of teacher (normalised) | parameters | us / action | labelled states | labelled to reach 95% (per seed) |",
        "|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for m in summary["methods"]:
        reach = reach_text(m["labelled_to_95"])
        sampled = "-" if m["sampled_return"] is None else f"{m['sampled_return']:.1f} +- {m['sampled_std']:.1f}"
        lines.append(f"| {m['method']} | {m['return']:.1f} +- {m['std']:.1f} | {sampled} | {100 * m['normalised']:.0f}% | "
                     f"{m['parameters']} | {m['microseconds_per_action']:.0f} | {m['labelled']} | {reach} |")  # fmt: skip
    for m in summary["methods"]:
        if m["formula"] is not None:
            lines += ["", f"{m['method']} (seed {summary.get('seed', 0)}, {m['parameters']} parameters):", "",
                      *[f"    {line}" for line in m["formula"].splitlines()]]  # fmt: skip
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
