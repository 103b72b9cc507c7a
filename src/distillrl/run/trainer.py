"""The loop. Every method is: sequences from a source -> per-token signals from frozen scorers -> an update.

    for step in 1..steps:
        problems  = prompts drawn from the task's training split
        sequences = source(problems)           # student / teacher samples, solutions, GKD mix, SKD interleaving
        signals   = one frozen pass per model over the sequences: pi_old, teachers (routed by domain),
                    references; verifier rewards                                  -> a Batch without pi_theta
        for epoch in 1..epochs, for each minibatch of whole prompts:
            for each micro-batch: loss = objective(Batch + student forward) ; loss.backward()
            sum gradients over ranks, clip them, optimizer step
        scheduler step
        every N steps: evaluate on held-out prompts; save an atomic checkpoint

Data parallel (torchrun / accelerate launch, see `distillrl.core.distributed`): each rank keeps its share of the step's
prompts and does all of the above on it; token counts, gradients and metrics are summed over ranks, so a step is
the one a single process would take on the whole batch. Every rank evaluates (a sharded student needs them all);
rank 0 alone writes the run directory.
"""

from __future__ import annotations

import errno
import json
import math
import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import Tensor

from distillrl.config import ConfigError, TrainConfig
from distillrl.core.distributed import World, join_world, launched_world_size, rank_seed
from distillrl.core.errors import UserError
from distillrl.core.files import write_failure, write_text_atomic
from distillrl.core.interrupts import RunStopped, StopRequests
from distillrl.core.sharding import clip_gradients, load_optimizer_state, model_state, optimizer_state, shard_student
from distillrl.models.loading import check_model_files, count_parameters, load_tokenizer
from distillrl.models.student import check_lora_targets
from distillrl.models.vocabulary import check_same_vocabulary
from distillrl.objectives import Objective, build_objective
from distillrl.objectives.batch import Batch
from distillrl.report.flat_rewards import FlatRewardsWarning
from distillrl.report.metrics import MetricsLog, read_teacher_evals, wandb_module
from distillrl.report.plots import plot_training_curves
from distillrl.run.checkpoint import restore_rng_state, rng_state, rng_states_by_rank, save_checkpoint, save_final_model
from distillrl.run.evaluate import evaluate
from distillrl.run.roles import Models, chat_format, load_models, shortest_context, teacher_backend, teacher_devices
from distillrl.run.run_dir import ClaimedRun, claim_run_directory_of_world
from distillrl.run.runtime import autocast, resolve_device, synchronize
from distillrl.run.signals import score_rollout
from distillrl.run.sources import sample_sequences
from distillrl.scoring.forward import completion_logits
from distillrl.scoring.logits import default_chunk_size
from distillrl.tasks import build_task
from distillrl.tasks.prompt_limits import check_prompts_fit
from distillrl.tasks.rewards import CustomReward, check_eval_answers, check_task_answers
from distillrl.text.chat import check_end_of_turn, check_teacher_template
from distillrl.text.sequences import Sequences

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


class PhaseTimer:
    """Wall seconds of a step's phases (rollout, score, update); the device is synchronised at each mark so a
    phase's queued GPU work is counted in that phase."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = {}
        self.started = self.last = time.perf_counter()

    def mark(self, phase: str) -> None:
        synchronize(self.device)
        now = time.perf_counter()
        self.seconds[phase] = now - self.last
        self.last = now

    @property
    def total(self) -> float:
        return self.last - self.started


def prompt_rows(sequences: Sequences, prompts: Tensor) -> Tensor:
    """The rows (ascending) that answer any of `prompts`."""
    return torch.isin(sequences.prompt_index, prompts).nonzero().squeeze(-1)


def update_policy(config: TrainConfig, models: Models, objective: Objective, sequences: Sequences, signals: Batch,
                  optimizer: torch.optim.Optimizer, parameters: list[torch.nn.Parameter],
                  world: World = World()) -> dict:  # fmt: skip
    """`optim.epochs` passes over the rollout, each in `optim.minibatches` optimizer steps of whole prompts
    (shuffled when there are several), each accumulated over `optim.grad_accum` micro-batches.

    A minibatch's loss is normalised by its own completion-token count, so every optimizer step takes the token
    mean of its minibatch; the importance ratios use pi_old recorded once before the first update.
    Under data parallel a minibatch is the union of every rank's: its token count is summed over ranks and so are
    the gradients, so L = sum over all ranks' tokens / their count, as one process would compute it.
    Returns the step's metrics: token-weighted means over minibatches and epochs (over all ranks).
    """
    optim = config.optim
    prompts = sequences.prompt_index.unique()
    total_tokens = world.sum(sequences.completion_mask.sum().item())
    totals: dict[str, float] = {}
    grad_norms = []
    nonfinite = 0
    for _ in range(optim.epochs):
        order = prompts[torch.randperm(len(prompts), device=prompts.device)] if optim.epochs * optim.minibatches > 1 else prompts
        for minibatch in order.tensor_split(optim.minibatches):
            minibatch_tokens = world.sum(sequences.completion_mask[prompt_rows(sequences, minibatch)].sum().item())
            if minibatch_tokens == 0:
                continue
            finite = True
            for micro_prompts in minibatch.tensor_split(optim.grad_accum):
                rows = prompt_rows(sequences, micro_prompts)
                micro = sequences.select(rows)
                if micro.completion_mask.sum() == 0:
                    continue
                with autocast(models.precision, models.device):
                    policy_logits = completion_logits(models.student, micro.input_ids, micro.attention_mask,
                                                      micro.completion_mask, vocab_size=models.vocab_size)  # fmt: skip
                    batch = replace(signals.select(rows), num_tokens=minibatch_tokens, policy_logits=policy_logits)
                    loss, metrics = objective(batch)
                finite = finite and math.isfinite(loss.item())
                loss.backward()
                weight = minibatch_tokens / total_tokens / optim.epochs
                for name, value in metrics.items():
                    totals[name] = totals.get(name, 0.0) + value * weight
            world.sum_gradients(parameters)
            finite = world.sum(int(not finite)) == 0  # every rank applies the step, or none
            grad_norm = clip_gradients(parameters, optim.max_grad_norm or float("inf"))
            if finite and math.isfinite(grad_norm):
                grad_norms.append(grad_norm)
                optimizer.step()
            else:  # a non-finite loss or gradient: this optimizer step is not applied
                nonfinite += 1
            optimizer.zero_grad(set_to_none=True)
    totals = world.sum_metrics(totals)  # each rank's totals are its share of the step's token means
    totals["grad_norm"] = sum(grad_norms) / max(len(grad_norms), 1)
    totals["nonfinite_steps"] = nonfinite
    return totals


def rollout_metrics(sequences: Sequences, signals: Batch, teacher_names: list[str]) -> dict:
    """Response length, mean reward and, with several teachers, each teacher's share of the signals."""
    metrics = {"response_length": sequences.completion_lengths.float().mean().item()}
    if signals.rewards is not None:
        metrics["reward"] = signals.rewards.float().mean().item()
    if len(teacher_names) > 1:
        for index, name in enumerate(teacher_names):
            rows = signals.teacher_index == index
            tokens = rows[signals.sequence_index]
            if not rows.any():
                continue
            if signals.rewards is not None:
                metrics[f"teacher/{name}/reward"] = signals.rewards[rows].float().mean().item()
            if signals.teacher_logprobs is not None and tokens.any():
                metrics[f"teacher/{name}/token_logprob"] = signals.teacher_logprobs[tokens].mean().item()
                if signals.old_logprobs is not None:
                    gap = signals.old_logprobs[tokens] - signals.teacher_logprobs[tokens]
                    metrics[f"teacher/{name}/reverse_kl"] = gap.mean().item()
    return metrics


def check_world(config: TrainConfig) -> None:
    """What the number of processes (torchrun / accelerate launch) asks of the config."""
    processes = launched_world_size()
    if config.rollout.prompts_per_step % processes:
        raise ConfigError(f"rollout.prompts_per_step: {config.rollout.prompts_per_step} prompts do not split evenly "
                          f"over the {processes} processes of this run; give a multiple of {processes}")  # fmt: skip
    if processes > 1 and config.device.startswith("cuda:"):
        raise ConfigError(f"device: {config.device} would put all {processes} processes on one GPU; use auto or cuda "
                          "(each process takes the GPU numbered by its LOCAL_RANK)")  # fmt: skip
    if config.distributed.strategy == "fsdp" and processes == 1:
        raise ConfigError("distributed.strategy: fsdp shards the student over the processes of a run started by "
                          "torchrun or accelerate launch, and this run has one; use ddp (the default)")  # fmt: skip


def check_before_loading(config: TrainConfig, task, objective: Objective) -> None:
    """Problems that only show once data, tokenizer and model files are known, raised before any model loads (and
    before the run directory is touched)."""
    check_world(config)
    teacher_devices(config, resolve_device(config.device))  # a GPU this machine lacks
    student = config.student.path
    check_model_files(student)
    for index, teacher in enumerate(config.teacher_list):
        field = f"teachers.{index}" if config.teachers else "teacher"
        if teacher.backend != "local":  # a server that is down or tokenises otherwise, a cache of other data
            teacher_backend(config, index)
        local_path = teacher.path if teacher.backend == "local" else None
        for role, path in ((f"{field}.path", local_path), (f"{field}.reference", teacher.reference)):
            if path is not None:
                check_model_files(path)
                check_same_vocabulary(student, path, role)
    if config.student.lora is not None:
        check_lora_targets(student, config.student.lora)
    tokenizer = load_tokenizer(student)
    chat = chat_format(config)
    check_end_of_turn(tokenizer, f"student.path {student}")
    for index, teacher in enumerate(config.teacher_list):
        if teacher.chat_template == "check" and teacher.backend == "local":  # a server's tokens: teacher_backend
            check_teacher_template(tokenizer, load_tokenizer(teacher.path), chat, student, teacher.path,
                                   f"teachers.{index}.path" if config.teachers else "teacher.path")  # fmt: skip
    context, shortest = shortest_context(config)
    check_prompts_fit(task.located_prompts(config.eval.num_prompts), tokenizer, shortest, context,
                      max(config.rollout.max_new_tokens, config.eval.max_new_tokens), chat)  # fmt: skip
    task.sample_train(random.Random(config.seed))  # a generator too small for any training problem fails here
    vocab_size = len(tokenizer)
    for leaf in config.objective.leaves():
        if leaf.resolved_fidelity == "topk" and leaf.top_k > vocab_size:
            raise ConfigError(f"objective.top_k: {leaf.top_k} is larger than the vocabulary ({vocab_size} tokens "
                              f"of {config.student.path})")  # fmt: skip
    if config.rollout.source == "speculative" and config.rollout.speculative_top_k > vocab_size:
        raise ConfigError(f"rollout.speculative_top_k: {config.rollout.speculative_top_k} is larger than the "
                          f"vocabulary ({vocab_size} tokens of {config.student.path})")  # fmt: skip
    if "rewards" in objective.needs:
        task.check_complete("answer", f"objective.name: {config.objective.name} needs a verifiable reward")
    check_task_answers(task, tokenizer, trained="rewards" in objective.needs, stop_strings=chat.stop_strings)
    if config.wandb is not None:
        wandb_module()  # a missing extra fails before any model loads
    rollout = config.rollout
    if rollout.source == "dataset" or (rollout.source == "mixed" and not rollout.seq_kd):
        task.check_complete("solution", f"rollout.source: {rollout.source!r} trains on the dataset's solutions")
    if config.teachers:
        names = [t.name for t in config.teachers]
        for domain, where in task.domains().items():
            if domain not in names:
                raise ConfigError(f"{where}: teachers: domain {domain!r} names no teacher (teachers: {', '.join(names)})")
    check_eval_answers(task, config.eval.num_prompts)  # the evaluation before the first step scores them


def agreed_signal(world: World, stops: StopRequests) -> int | None:
    """The stop signal that any rank received (the first rank's, in rank order), on every rank; None if none."""
    return next((signum for signum in world.gather(stops.signum) if signum is not None), None)


class NonFiniteStep(UserError):
    """Optimizer steps with a non-finite loss or gradient, more than `optim.skip_nonfinite_steps` allows."""


def train(
    config: TrainConfig,
    resume: bool = False,
    overwrite: bool = False,
    on_step: Callable[[int, dict], None] | None = None,
    show_progress: bool = True,
    eval_cache: dict | None = None,
    reward: CustomReward | None = None,
) -> dict | None:
    """Run the configured method in `config.output_dir`; returns the final evaluation (and where the run's files are),
    or None on a rank other than 0 of a data-parallel run. The trained model is saved to `output_dir/final` (HF
    layout, with the tokenizer).

    A directory that holds a run is refused unless `resume` (continue it from its newest checkpoint that loads; the
    config may change only as `run_dir.RESUMABLE_FIELDS` allow) or `overwrite`; see `distillrl.run.run_dir`.
    A SIGTERM or SIGINT finishes the current step, writes a checkpoint and raises `RunStopped` (see
    `distillrl.core.interrupts`); a disk that is full or not writable is a UserError naming the file.
    `eval_cache` (optional, shared between runs in one process) keeps the evaluations of unchanged checkpoints,
    the teachers and the student before its first step, keyed by their paths and the task and eval settings.
    `reward` (a Python function wrapped as a CustomReward) replaces the task's reward for this run.
    """
    task = build_task(config.task)  # data problems surface before any model loads or any file is written
    if reward is not None:
        task.reward = reward
    eval_problems = (task.validation_problems if config.eval.split == "validation" else task.test_problems)(
        config.eval.num_prompts)
    objective = build_objective(config.objective)
    check_before_loading(config, task, objective)
    with StopRequests() as stops, join_world(resolve_device(config.device)) as world, \
            claim_run_directory_of_world(config, resume, overwrite, world) as run:  # fmt: skip
        for note in run.notes:
            console.print(f"[yellow]{note}[/]", highlight=False)
        try:
            return train_in(run, config, task, eval_problems, objective, on_step, show_progress, eval_cache, world,
                            stops)  # fmt: skip
        except OSError as error:
            if error.errno not in DISK_ERRORS:
                raise
            raise write_failure(Path(error.filename or run.path), error) from error


DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}  # a write that the disk refused


def train_in(run: ClaimedRun, config: TrainConfig, task, eval_problems: list, objective: Objective,
             on_step: Callable[[int, dict], None] | None, show_progress: bool, eval_cache: dict | None,
             world: World, stops: StopRequests = StopRequests()) -> dict | None:  # fmt: skip
    """The run itself, in the claimed directory: load, evaluate, then the loop. Every rank runs it; rank 0
    alone evaluates the teachers, logs and writes files. After each step the ranks agree whether a signal asked
    them to stop (`stops`): then each saves the step's checkpoint and raises RunStopped."""
    run_dir = run.path
    checkpoint = run.resume_from.checkpoint if run.resume_from else None
    torch.manual_seed(rank_seed(config.seed, world.rank))  # each rank samples its own sequences
    random.seed(rank_seed(config.seed, world.rank))
    prompt_rng = random.Random(config.seed)  # one stream on every rank: the whole step's prompts, then each its share

    models = load_models(config, "reference_logprobs" in objective.needs,
                         student_path=str(checkpoint / "model") if checkpoint else None)  # fmt: skip
    student = models.student
    if config.distributed.strategy == "fsdp":
        shard_student(student)  # every rank keeps 1/world of each parameter; the optimizer sees the shards
        models.engine_name = "hf"  # generate keeps the ranks in step (synced_gpus) until every rank has finished
    chunk_size = config.objective.chunk_size or default_chunk_size(student.get_output_embeddings().weight.shape[0])
    single_teacher = models.teacher if len(models.teachers) == 1 else None
    single_teacher_path = models.teachers[0].path if single_teacher is not None else None
    parameters = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.optim.lr, betas=config.optim.betas,
                                  weight_decay=config.optim.weight_decay, fused=models.device.type == "cuda")  # fmt: skip
    optim = config.optim
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_multiplier(s, optim.warmup_steps, optim.steps, optim.schedule, optim.min_lr_ratio)
    )
    start_step = 0
    nonfinite_skipped = 0
    if checkpoint is not None:
        state = run.resume_from.state
        load_optimizer_state(student, optimizer, state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng_state(rng_states_by_rank(state)[world.rank], prompt_rng)
        start_step = state["step"]
        nonfinite_skipped = state.get("nonfinite_skipped", 0)
    log = None
    if world.is_main:
        write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
        log = MetricsLog(run_dir, resume_step=start_step if checkpoint else None, tensorboard=config.tensorboard,
                         wandb=config.wandb, config=config.model_dump(mode="json"))  # fmt: skip

    def run_eval(model, teacher=None, unchanged_path: str | None = None) -> dict:
        """Evaluate on the held-out prompts; a checkpoint loaded unchanged from `unchanged_path` is cached."""
        e = config.eval
        key = None
        if eval_cache is not None and unchanged_path is not None:
            teacher_path = single_teacher_path if teacher is not None else None
            key = json.dumps([unchanged_path, teacher_path, config.task.model_dump(mode="json"),
                              config.eval.model_dump(mode="json"), models.precision, str(models.device)])  # fmt: skip
            if key in eval_cache:
                return dict(eval_cache[key])
        metrics = evaluate(model, models.tokenizer, task, eval_problems, teacher, e.temperature, e.max_new_tokens,
                           e.batch_size, models.precision, models.engine(model, e.batch_size))  # fmt: skip
        if key is not None:
            eval_cache[key] = dict(metrics)
        return metrics

    teacher_file = run_dir / "teacher_eval.json"
    teacher_evals = {}
    if world.is_main:
        if checkpoint is not None and teacher_file.exists():
            teacher_evals = read_teacher_evals(run_dir)
        elif models.teachers:
            teacher_evals = {t.name: run_eval(t.model, unchanged_path=t.path) for t in models.teachers
                             if t.model is not None}
            write_text_atomic(teacher_file, json.dumps(teacher_evals, indent=2))
        console.print(
            f"student {config.student.path}: {count_parameters(student, trainable_only=True):,} trainable parameters"
            + (f" | {world.size} processes" if world.size > 1 else "")
            + "".join(f" | teacher {t.path}: greedy accuracy {teacher_evals[t.name]['eval/accuracy_greedy']:.3f}"
                      for t in models.teachers if t.name in teacher_evals)  # fmt: skip
        )
    teacher_eval = next(iter(teacher_evals.values()), None)
    if start_step == 0:  # every rank evaluates the student (a sharded one needs them all); rank 0 logs
        before = run_eval(student, single_teacher, unchanged_path=config.student.path)
        if log is not None:
            log.log(0, before)

    def save(step: int) -> None:
        """A checkpoint of the run: every rank's RNG states (and a sharded student's full state) gathered; rank 0
        writes it."""
        weights, optimizer_saved = model_state(student), optimizer_state(student, optimizer)
        rng = world.gather(rng_state(prompt_rng))
        if world.is_main:
            state = {"optimizer": optimizer_saved, "scheduler": scheduler.state_dict(), "rng": rng,
                     "nonfinite_skipped": nonfinite_skipped}  # fmt: skip
            save_checkpoint(run_dir, step, student, models.tokenizer, state, config.checkpoint.keep, weights)

    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=not (show_progress and world.is_main),
        transient=False,
    )  # fmt: skip
    last_eval = next((r for r in reversed(log.records()) if "eval/accuracy_greedy" in r), {}) if log else {}
    signum = agreed_signal(world, stops)
    if signum:  # during the start: nothing new to save
        if log is not None:
            log.close()
        raise RunStopped(start_step, signum)
    flat_rewards = FlatRewardsWarning(objective, console, world)
    with progress:
        bar = progress.add_task("train", total=optim.steps, completed=start_step, info="")
        student.train()
        for step in range(start_step + 1, optim.steps + 1):
            phases = PhaseTimer(models.device)
            problems = world.share_of([task.sample_train(prompt_rng) for _ in range(config.rollout.prompts_per_step)])
            sequences, metrics = sample_sequences(config, models, problems, prompt_rng)
            phases.mark("rollout")
            with autocast(models.precision, models.device):
                signals = score_rollout(models, objective.needs, sequences, problems, task.reward,
                                        top_k=max((leaf.top_k for leaf in config.objective.leaves()
                                                   if leaf.resolved_fidelity == "topk"), default=1),
                                        rows_per_pass=-(-len(sequences) // optim.grad_accum),
                                        chunk_size=chunk_size)  # fmt: skip
            phases.mark("score")
            flat_rewards.check(step, signals)
            metrics |= rollout_metrics(sequences, signals, [t.name for t in models.teachers])
            metrics = world.mean_metrics(metrics)  # per-row means over ranks of equal row counts
            learning_rate = scheduler.get_last_lr()[0]
            metrics |= update_policy(config, models, objective, sequences, signals, optimizer, parameters, world)
            nonfinite_skipped += metrics.pop("nonfinite_steps")
            if nonfinite_skipped > optim.skip_nonfinite_steps:
                raise NonFiniteStep(
                    f"step {step}: the loss or gradient is not finite (nan or inf); the step was not applied and "
                    f"nothing saved. Lower optim.lr ({optim.lr:g}), or allow a few such steps with "
                    "optim.skip_nonfinite_steps"
                )
            scheduler.step()
            phases.mark("update")
            seconds = phases.total
            record = {f"train/{k}": v for k, v in metrics.items()}
            record |= {"train/lr": learning_rate,
                       "perf/step_seconds": seconds,
                       "perf/tokens_per_second": world.sum(sequences.completion_mask.sum().item()) / seconds,
                       **{f"perf/{phase}_seconds": value for phase, value in phases.seconds.items()}}  # fmt: skip
            if step == optim.steps or (config.eval.every and step % config.eval.every == 0) or step in config.eval.at:
                last_eval = run_eval(student, single_teacher)
                record |= last_eval
            if log is not None:
                log.log(step, record)
            signum = agreed_signal(world, stops)
            if step == optim.steps or (config.checkpoint.every and step % config.checkpoint.every == 0) or signum:
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
            if signum and step < optim.steps:
                if log is not None:
                    log.close()
                raise RunStopped(step, signum)
    weights = model_state(student)
    if not world.is_main:
        return None
    save_final_model(run_dir, student, models.tokenizer, weights)
    log.close()
    records = log.records()
    plot_training_curves(records, run_dir / "curves.png", teacher_evals)
    final = [r for r in records if "eval/accuracy_greedy" in r]
    return {
        "teacher": teacher_eval,
        "teachers": teacher_evals,
        "before": final[0] if final and final[0]["step"] == 0 else None,
        "after": final[-1] if final else None,
        "run_dir": str(run_dir),
    }
