"""The loop. Every method is: sequences from a source -> per-token signals from frozen scorers -> an update.

    for step in 1..steps:
        problems  = prompts drawn from the task's training split
        sequences = source(problems)                        # student samples, teacher samples or solutions
        for each micro-batch of sequences:                  # gradient accumulation
            signals = frozen forward passes (old student, teacher) over the finished sequences
            loss    = objective(Batch(student forward, signals)) ; loss.backward()
        clip gradients, optimizer step, scheduler step
        every N steps: evaluate on held-out prompts; save an atomic checkpoint
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from distillrl.batch import Batch
from distillrl.checkpoint import latest_checkpoint, load_trainer_state, restore_rng_state, rng_state, save_checkpoint
from distillrl.config import TrainConfig
from distillrl.evaluate import autocast, evaluate
from distillrl.models.loading import ModelLoadError, count_parameters, load_causal_lm, load_tokenizer
from distillrl.models.student import load_student
from distillrl.objectives import Objective, build_objective
from distillrl.report.metrics import MetricsLog
from distillrl.report.plots import plot_training_curves
from distillrl.rollout.hf_generate import generate
from distillrl.rollout.sequences import Sequences, encode_pairs
from distillrl.scoring.forward import completion_logits, score_token_logprobs
from distillrl.tasks import Problem, build_task

console = Console(stderr=True)


def lr_multiplier(step: int, warmup_steps: int, total_steps: int, schedule: str, min_lr_ratio: float) -> float:
    """Learning-rate factor for optimizer step `step` (0-based).

    Warm-up: (step + 1) / warmup_steps while step < warmup_steps. Then, with progress
    p = (step - warmup_steps) / max(1, total_steps - warmup_steps): constant 1; linear 1 - (1 - m) p;
    cosine m + (1 - m)(1 + cos(pi p)) / 2, where m = min_lr_ratio.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "linear":
        return 1.0 - (1.0 - min_lr_ratio) * progress
    if schedule == "cosine":
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


@dataclass
class Models:
    student: torch.nn.Module
    teacher: torch.nn.Module | None
    tokenizer: object


def load_models(config: TrainConfig, student_path: str | None = None) -> Models:
    """Student (trainable, maybe LoRA), frozen teacher and the shared tokenizer; checks they fit together."""
    tokenizer = load_tokenizer(config.student.path)
    student = load_student(student_path or config.student.path, config.student.lora)
    teacher = None
    if config.teacher is not None:
        teacher = load_causal_lm(config.teacher.path)
        teacher_vocab = load_tokenizer(config.teacher.path).get_vocab()
        if teacher_vocab != tokenizer.get_vocab():
            raise ModelLoadError(
                f"teacher.path: {config.teacher.path} uses a different tokenizer from student.path "
                f"{config.student.path}; token-level distillation needs one shared vocabulary"
            )
    return Models(student, teacher, tokenizer)


def make_sequences(config: TrainConfig, models: Models, problems: list[Problem]) -> Sequences:
    """The sequence source: on-policy student samples, teacher samples (seq-KD) or the dataset's solutions."""
    rollout = config.rollout
    prompts = [p.prompt for p in problems]
    if rollout.source == "dataset":
        missing = [p.prompt for p in problems if p.solution is None]
        if missing:
            raise ValueError(f"rollout.source 'dataset' needs solutions; prompt {missing[0]!r} has none")
        return encode_pairs(models.tokenizer, prompts, [p.solution for p in problems])
    model = models.student if rollout.source == "student" else models.teacher
    with autocast(config.precision, model.device):
        return generate(model, models.tokenizer, prompts, rollout.group_size, rollout.temperature, rollout.max_new_tokens)


def accumulate_gradients(config: TrainConfig, models: Models, objective: Objective, sequences: Sequences) -> dict:
    """Score each micro-batch with the frozen models, run the objective and backpropagate; returns step metrics."""
    num_tokens = sequences.completion_mask.sum().item()
    chunk_size = config.objective.chunk_size
    totals: dict[str, float] = {}
    for rows in torch.arange(len(sequences)).tensor_split(config.optim.grad_accum):
        micro = sequences.select(rows)
        args = (micro.input_ids, micro.attention_mask, micro.completion_mask)
        if micro.completion_mask.sum() == 0:
            continue
        with autocast(config.precision, models.student.device):
            batch_signals = {}
            if objective.needs_old_logprobs:
                models.student.eval()
                batch_signals["old_logprobs"] = score_token_logprobs(models.student, *args, chunk_size=chunk_size)
                models.student.train()
            if objective.teacher_fidelity == "sampled":
                batch_signals["teacher_logprobs"] = score_token_logprobs(models.teacher, *args, chunk_size=chunk_size)
            elif objective.teacher_fidelity == "full":
                with torch.no_grad():
                    batch_signals["teacher_logits"] = completion_logits(models.teacher, *args)
            batch = Batch(
                target_ids=micro.target_ids,
                sequence_index=micro.sequence_index,
                policy_logits=completion_logits(models.student, *args),
                num_tokens=num_tokens,
                chunk_size=chunk_size,
                **batch_signals,
            )
            loss, metrics = objective(batch)
        loss.backward()
        for name, value in metrics.items():
            totals[name] = totals.get(name, 0.0) + value
    totals["response_length"] = sequences.completion_lengths.float().mean().item()
    return totals


def train(
    config: TrainConfig,
    resume: bool = False,
    on_step: Callable[[int, dict], None] | None = None,
    show_progress: bool = True,
) -> dict:
    """Run the configured method; returns the final evaluation (and where the run's files are)."""
    run_dir = Path(config.output_dir)
    checkpoint = latest_checkpoint(run_dir) if resume else None
    if resume and checkpoint is None:
        console.print(f"[yellow]--resume: no checkpoint under {run_dir}/checkpoints, starting from step 0[/]")
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    prompt_rng = random.Random(config.seed)

    task = build_task(config.task)  # data problems surface before any model loads
    eval_problems = task.test_problems(config.eval.num_prompts)
    objective = build_objective(config.objective)
    models = load_models(config, student_path=str(checkpoint / "model") if checkpoint else None)
    student = models.student
    parameters = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        parameters, lr=config.optim.lr, betas=config.optim.betas, weight_decay=config.optim.weight_decay
    )
    optim = config.optim
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_multiplier(s, optim.warmup_steps, optim.steps, optim.schedule, optim.min_lr_ratio)
    )
    start_step = 0
    if checkpoint is not None:
        state = load_trainer_state(checkpoint)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng_state(state["rng"], prompt_rng)
        start_step = state["step"]
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    log = MetricsLog(run_dir, resume_step=start_step if checkpoint else None, tensorboard=config.tensorboard)

    def run_eval(model, teacher=None) -> dict:
        e = config.eval
        return evaluate(model, models.tokenizer, task, eval_problems, teacher, e.temperature, e.max_new_tokens,
                        e.batch_size, config.precision)  # fmt: skip

    teacher_file = run_dir / "teacher_eval.json"
    teacher_eval = None
    if models.teacher is not None:
        if checkpoint is not None and teacher_file.exists():
            teacher_eval = json.loads(teacher_file.read_text())
        else:
            teacher_eval = run_eval(models.teacher)
            teacher_file.write_text(json.dumps(teacher_eval, indent=2))
    console.print(
        f"student {config.student.path}: {count_parameters(student, trainable_only=True):,} trainable parameters"
        + (f" | teacher {config.teacher.path}: greedy accuracy {teacher_eval['eval/accuracy_greedy']:.3f}" if teacher_eval else "")
    )
    if start_step == 0:
        log.log(0, run_eval(student, models.teacher))

    def save(step: int) -> None:
        state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state(prompt_rng)}
        save_checkpoint(run_dir, step, student, models.tokenizer, state, config.checkpoint.keep)

    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=not show_progress, transient=False,
    )  # fmt: skip
    last_eval = next((r for r in reversed(log.records()) if "eval/accuracy_greedy" in r), {})
    with progress:
        bar = progress.add_task("train", total=optim.steps, completed=start_step, info="")
        student.train()
        for step in range(start_step + 1, optim.steps + 1):
            started = time.perf_counter()
            problems = [task.sample_train(prompt_rng) for _ in range(config.rollout.prompts_per_step)]
            sequences = make_sequences(config, models, problems)
            metrics = accumulate_gradients(config, models, objective, sequences)
            grad_norm = torch.nn.utils.clip_grad_norm_(parameters, optim.max_grad_norm or float("inf"))
            learning_rate = scheduler.get_last_lr()[0]
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            seconds = time.perf_counter() - started
            record = {f"train/{k}": v for k, v in metrics.items()}
            record |= {"train/grad_norm": grad_norm.item(), "train/lr": learning_rate,
                       "perf/tokens_per_second": sequences.completion_mask.sum().item() / seconds}  # fmt: skip
            if step == optim.steps or (config.eval.every and step % config.eval.every == 0):
                last_eval = run_eval(student, models.teacher)
                record |= last_eval
            log.log(step, record)
            if step == optim.steps or (config.checkpoint.every and step % config.checkpoint.every == 0):
                save(step)
            info = f"loss {metrics['loss']:.4f}"
            if "reverse_kl" in metrics:
                info += f" | KL {metrics['reverse_kl']:.4f}"
            if last_eval:
                info += f" | acc {last_eval.get('eval/accuracy_greedy', 0.0):.3f}"
            info += f" | {record['perf/tokens_per_second']:.0f} tok/s"
            progress.update(bar, advance=1, info=info)
            if on_step is not None:
                on_step(step, record)
    log.close()
    records = log.records()
    teacher_accuracy = teacher_eval["eval/accuracy_greedy"] if teacher_eval else None
    plot_training_curves(records, run_dir / "curves.png", teacher_accuracy)
    final = [r for r in records if "eval/accuracy_greedy" in r]
    return {
        "teacher": teacher_eval,
        "before": final[0] if final and final[0]["step"] == 0 else None,
        "after": final[-1] if final else None,
        "run_dir": str(run_dir),
    }
