"""The loop. Every method is: sequences from a source -> per-token signals from frozen scorers -> an update.

It reads as its stages, each a function of plain data (a Loop of what stays fixed, a LoopState of what lives
across steps, Sequences, a Batch, metrics):

    check_before_loading                     -> Preflight: every check before any weights load, each model
                                                resolved once (tokenizer, config, teacher backend)
    start_loop                               -> Loop, LoopState: seeds, models, optimizer and schedule (a
                                                resumed checkpoint's state), config.yaml, the metrics log
    evaluate_teachers; held_out_eval(student) at step 0
    for step in 1..steps, train_step:
        draw_prompts                         -> problems from the task's training split (this rank's share)
        sample_sequences (run/sources.py)    -> Sequences: student / teacher samples, solutions, GKD mix, SKD
        score (run/signals.py)               -> a Batch without pi_theta: one frozen pass per model (pi_old,
                                                teachers routed by domain, references) and verifier rewards
        update                               -> for epoch in 1..epochs, for each minibatch of whole prompts:
                                                micro-batch losses (objective(Batch + student forward)) summed,
                                                gradients summed over ranks, clipped, one optimizer step; then
                                                one scheduler step
        held_out_eval                           every eval.every steps
        save                                    every checkpoint.every steps (and when a signal stops the run)
    finish                                   -> final/, curves.png, the run's summary

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
from dataclasses import dataclass, field, replace
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
from distillrl.models.loading import count_parameters
from distillrl.models.student import check_lora_targets
from distillrl.models.vocabulary import check_same_vocabulary
from distillrl.objectives import Objective, build_objective
from distillrl.objectives.batch import Batch
from distillrl.report.flat_rewards import FlatRewardsWarning
from distillrl.report.metrics import MetricsLog, read_teacher_evals, wandb_module
from distillrl.report.plots import plot_training_curves
from distillrl.report.progress import PlainProgress, phase
from distillrl.report.run_page import write_run_page
from distillrl.report.run_warnings import TruncationWarning, zero_teacher_lines
from distillrl.report.samples import sample_lines, samples_path, write_samples
from distillrl.run.checkpoint import restore_rng_state, rng_state, rng_states_by_rank, save_checkpoint, save_final_model
from distillrl.run.evaluate import evaluate_with_samples, sample_rows
from distillrl.run.roles import Models, Preflight, Teacher, chat_format, load_models, shortest_context, teacher_devices
from distillrl.run.run_dir import ClaimedRun, claim_run_directory_of_world
from distillrl.run.runtime import apply_cpu_threads, autocast, resolve_device, synchronize
from distillrl.run.self_teacher import attach_ema_teachers, ema_teacher_state
from distillrl.run.signals import score_rollout
from distillrl.run.sources import sample_sequences
from distillrl.scoring.cross_tokenizer import check_bridgeable
from distillrl.scoring.forward import completion_logits
from distillrl.scoring.logits import default_chunk_size
from distillrl.scoring.privileged import check_teacher_prompts
from distillrl.tasks import Problem, Task, build_task
from distillrl.tasks.prompt_limits import check_prompts_fit
from distillrl.tasks.rewards import CustomReward, check_eval_answers, check_task_answers
from distillrl.text.chat import check_end_of_turn, check_teacher_template
from distillrl.text.micro_batches import pack_under_budget, trim_padding
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


def update_micro_batches(sequences: Sequences, minibatch: Tensor, grad_accum: int, budget: int | None) -> list[Tensor]:
    """The rows of each micro-batch of a minibatch of prompts: its prompts in `grad_accum` consecutive shares, or,
    with a token `budget` (optim.micro_batch_tokens), its prompts packed whole under it (text/micro_batches.py)."""
    if budget is None:
        return [prompt_rows(sequences, prompts) for prompts in minibatch.tensor_split(grad_accum)]
    return pack_under_budget([prompt_rows(sequences, prompt[None]) for prompt in minibatch], sequences.attention_mask,
                             budget)  # fmt: skip


def update_policy(config: TrainConfig, models: Models, objective: Objective, sequences: Sequences, signals: Batch,
                  optimizer: torch.optim.Optimizer, parameters: list[torch.nn.Parameter],
                  world: World = World()) -> dict:  # fmt: skip
    """`optim.epochs` passes over the rollout, each in `optim.minibatches` optimizer steps of whole prompts
    (shuffled when there are several), each accumulated over micro-batches (update_micro_batches).

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
            for rows in update_micro_batches(sequences, minibatch, optim.grad_accum, optim.micro_batch_tokens):
                micro = sequences.select(rows)
                if micro.completion_mask.sum() == 0:
                    continue
                if optim.micro_batch_tokens is not None:
                    micro = trim_padding(micro)
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


def check_before_loading(config: TrainConfig, task, objective: Objective) -> Preflight:
    """Problems that only show once data, tokenizer and model files are known, raised before any model loads (and
    before the run directory is touched). Returns what the checks resolved (each model's tokenizer and config, each
    server or cache teacher's backend), for load_models."""
    check_world(config)
    teacher_devices(config, resolve_device(config.device))  # a GPU this machine lacks
    preflight = Preflight()
    files = preflight.files
    student = config.student.path
    files.check(student)
    for index, teacher in enumerate(config.teacher_list):
        field = f"teachers.{index}" if config.teachers else "teacher"
        if teacher.backend in ("server", "cache"):  # a server that is down or tokenises otherwise, a cache of other data
            preflight.backend(config, index)
        local_path = teacher.path if teacher.backend == "local" else None
        for role, path in ((f"{field}.path", local_path), (f"{field}.reference", teacher.reference)):
            if path is not None:
                files.check(path)
                if role.endswith(".path") and teacher.tokenizer == "own":
                    check_bridgeable(files.tokenizer(student), files.tokenizer(path), student, path, role)
                else:
                    check_same_vocabulary(student, path, role, files)
    if config.student.lora is not None:
        check_lora_targets(student, config.student.lora, files.config(student))
    tokenizer = files.tokenizer(student)
    chat = chat_format(config, files)
    check_end_of_turn(tokenizer, f"student.path {student}")
    for index, teacher in enumerate(config.teacher_list):
        # a server's tokens: teacher_backend; a teacher with its own tokenizer renders prompts its own way
        if teacher.chat_template == "check" and teacher.backend == "local" and teacher.tokenizer == "same":
            check_teacher_template(tokenizer, files.tokenizer(teacher.path), chat, student, teacher.path,
                                   f"teachers.{index}.path" if config.teachers else "teacher.path")  # fmt: skip
    context, shortest = shortest_context(config, files)
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
    skipped = check_teacher_prompts(config, task, tokenizer, chat, context, shortest)
    if skipped:
        console.print(f"[yellow]teacher.prompt: {skipped} training rows lack a field of the template and are "
                      "skipped (prompt_missing: skip)[/]", highlight=False)  # fmt: skip
    check_eval_answers(task, config.eval.num_prompts)  # the evaluation before the first step scores them
    return preflight


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
    apply_cpu_threads()
    task = build_task(config.task)  # data problems surface before any model loads or any file is written
    if reward is not None:
        task.reward = reward
    eval_problems = (task.validation_problems if config.eval.split == "validation" else task.test_problems)(
        config.eval.num_prompts)
    objective = build_objective(config.objective)
    preflight = check_before_loading(config, task, objective)
    with StopRequests() as stops, join_world(resolve_device(config.device)) as world, \
            claim_run_directory_of_world(config, resume, overwrite, world) as run:  # fmt: skip
        for note in run.notes:
            console.print(f"[yellow]{note}[/]", highlight=False)
        try:
            return train_in(run, config, task, eval_problems, objective, on_step, show_progress, eval_cache, world,
                            stops, preflight)  # fmt: skip
        except OSError as error:
            if error.errno not in DISK_ERRORS:
                raise
            raise write_failure(Path(error.filename or run.path), error) from error


DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}  # a write that the disk refused


@dataclass
class Loop:
    """What a run holds fixed from its first step to its last: the config, task, objective, models and world, the
    run directory and its metrics log (rank 0's; None on the other ranks)."""

    config: TrainConfig
    task: Task
    eval_problems: list[Problem]
    objective: Objective
    models: Models
    world: World
    run_dir: Path
    log: MetricsLog | None
    parameters: list[torch.nn.Parameter]  # the student's trainable ones, which the optimizer updates
    chunk_size: int  # vocabulary columns per log-softmax chunk
    eval_cache: dict | None = None

    @property
    def single_teacher(self) -> Teacher | None:
        """The teacher that evaluation reports the reverse KL to: the run's only one (None with several, or with
        one of its own tokenizer: its distributions are over other tokens)."""
        teachers = self.models.teachers
        return teachers[0] if len(teachers) == 1 and teachers[0].bridge is None else None


@dataclass
class LoopState:
    """What lives across steps (and what a checkpoint saves): the last step done, the prompt stream, the optimizer
    and its schedule, the non-finite steps skipped so far and the last evaluation."""

    step: int
    prompt_rng: random.Random
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    nonfinite_skipped: int = 0
    last_eval: dict = field(default_factory=dict)


def start_loop(run: ClaimedRun, config: TrainConfig, task: Task, eval_problems: list[Problem], objective: Objective,
               world: World, preflight: Preflight, eval_cache: dict | None) -> tuple[Loop, LoopState]:  # fmt: skip
    """Seed every RNG, load the models, build the optimizer and its schedule, restore a resumed checkpoint's state,
    and (rank 0) write config.yaml and open the metrics log."""
    checkpoint = run.resume_from.checkpoint if run.resume_from else None
    torch.manual_seed(rank_seed(config.seed, world.rank))  # each rank samples its own sequences
    random.seed(rank_seed(config.seed, world.rank))
    prompt_rng = random.Random(config.seed)  # one stream on every rank: the whole step's prompts, then each its share
    if world.is_main:
        roles = [f"the student {config.student.path}"] + [f"the teacher {t.path}" for t in config.teacher_list]
        phase(console, f"loading {' and '.join(roles)}")
    models = load_models(config, "reference_logprobs" in objective.needs,
                         student_path=str(checkpoint / "model") if checkpoint else None, preflight=preflight)  # fmt: skip
    student = models.student
    if config.distributed.strategy == "fsdp":
        shard_student(student)  # every rank keeps 1/world of each parameter; the optimizer sees the shards
        models.engine_name = "hf"  # generate keeps the ranks in step (synced_gpus) until every rank has finished
    chunk_size = config.objective.chunk_size or default_chunk_size(student.get_output_embeddings().weight.shape[0])
    parameters = [p for p in student.parameters() if p.requires_grad]
    optim = config.optim
    optimizer = torch.optim.AdamW(parameters, lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay,
                                  fused=models.device.type == "cuda")  # fmt: skip
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_multiplier(s, optim.warmup_steps, optim.steps, optim.schedule, optim.min_lr_ratio)
    )
    state = LoopState(0, prompt_rng, optimizer, scheduler)
    if checkpoint is not None:
        saved = run.resume_from.state
        load_optimizer_state(student, optimizer, saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        restore_rng_state(rng_states_by_rank(saved)[world.rank], prompt_rng)
        state.step = saved["step"]
        state.nonfinite_skipped = saved.get("nonfinite_skipped", 0)
    attach_ema_teachers(models.teachers, optimizer, run.resume_from.state if checkpoint is not None else None)
    log = None
    if world.is_main:
        write_text_atomic(run.path / "config.yaml", yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
        log = MetricsLog(run.path, resume_step=state.step if checkpoint else None, tensorboard=config.tensorboard,
                         wandb=config.wandb, config=config.model_dump(mode="json"))  # fmt: skip
    loop = Loop(config, task, eval_problems, objective, models, world, run.path, log, parameters, chunk_size,
                eval_cache)  # fmt: skip
    return loop, state


def held_out_eval(loop: Loop, model, teacher: Teacher | None = None,
                  unchanged_path: str | None = None) -> tuple[dict, list[dict]]:  # fmt: skip
    """`model` evaluated on the held-out prompts (with the reverse KL to `teacher`): its metrics and its completions
    as samples rows (greedy and sampled, report/samples.py). The evaluation of a model loaded unchanged from
    `unchanged_path` is kept in the loop's eval cache (keyed by path, task and eval settings)."""
    config, models, e = loop.config, loop.models, loop.config.eval
    key = None
    if loop.eval_cache is not None and unchanged_path is not None:
        key = json.dumps([unchanged_path, teacher.path if teacher is not None else None,
                          config.task.model_dump(mode="json"), e.model_dump(mode="json"), models.precision,
                          str(models.device)])  # fmt: skip
        if key in loop.eval_cache:
            metrics, samples = loop.eval_cache[key]
            return dict(metrics), samples
    metrics, samples = evaluate_with_samples(model, models.tokenizer, loop.task, loop.eval_problems,
                                             teacher.model if teacher else None, e.temperature, e.max_new_tokens,
                                             e.batch_size, models.precision, models.engine(model, e.batch_size))  # fmt: skip
    if key is not None:
        loop.eval_cache[key] = (dict(metrics), samples)
    return metrics, samples


def evaluate_teachers(loop: Loop, resumed: bool) -> dict[str, dict]:
    """Rank 0: each local teacher's held-out evaluation, written once to teacher_eval.json (read back on a resume),
    and the run's opening line; {} on the other ranks."""
    if not loop.world.is_main:
        return {}
    models, teacher_file = loop.models, loop.run_dir / "teacher_eval.json"
    teacher_evals = {}
    if resumed and teacher_file.exists():
        teacher_evals = read_teacher_evals(loop.run_dir)
    elif models.teachers:
        for teacher in [t for t in models.teachers if t.model is not None and t.bridge is None]:  # own: other tokens
            phase(console, f"evaluating the teacher {teacher.path} on {len(loop.eval_problems)} held-out prompts")
            teacher_evals[teacher.name] = held_out_eval(loop, teacher.model, unchanged_path=teacher.path)[0]
        write_text_atomic(teacher_file, json.dumps(teacher_evals, indent=2))
    console.print(
        f"student {loop.config.student.path}: {count_parameters(models.student, trainable_only=True):,} trainable "
        "parameters" + (f" | {loop.world.size} processes" if loop.world.size > 1 else "")
        + "".join(f" | teacher {t.path}: greedy accuracy {teacher_evals[t.name]['eval/accuracy_greedy']:.3f}"
                  for t in models.teachers if t.name in teacher_evals)  # fmt: skip
        + f" | torch threads {torch.get_num_threads()}"
    )
    paths = {t.name: t.path for t in models.teachers}
    for line in zero_teacher_lines(teacher_evals, paths, len(loop.eval_problems)):
        console.print(f"[yellow]{line}[/]", highlight=False, soft_wrap=True)
    return teacher_evals


def draw_prompts(loop: Loop, state: LoopState) -> list[Problem]:
    """The step's problems: `rollout.prompts_per_step` drawn from the training split, this rank's share of them."""
    drawn = [loop.task.sample_train(state.prompt_rng) for _ in range(loop.config.rollout.prompts_per_step)]
    return loop.world.share_of(drawn)


def score(loop: Loop, sequences: Sequences, problems: list[Problem]) -> Batch:
    """One frozen pass per scorer over the sequences: the signals the objective needs, as a Batch without pi_theta."""
    config = loop.config
    top_k = max((leaf.top_k for leaf in config.objective.leaves() if leaf.resolved_fidelity == "topk"), default=1)
    with autocast(loop.models.precision, loop.models.device):
        return score_rollout(loop.models, loop.objective.needs, sequences, problems, loop.task.reward, top_k=top_k,
                             rows_per_pass=-(-len(sequences) // config.optim.grad_accum),
                             chunk_size=loop.chunk_size, tokens_per_pass=config.optim.resolved_score_tokens)  # fmt: skip


def update(loop: Loop, state: LoopState, sequences: Sequences, signals: Batch) -> dict:
    """The step's optimizer steps (update_policy) and its schedule step; a NonFiniteStep once more optimizer steps
    were skipped as non-finite than `optim.skip_nonfinite_steps` allows. Returns the update's metrics."""
    optim = loop.config.optim
    metrics = update_policy(loop.config, loop.models, loop.objective, sequences, signals, state.optimizer,
                            loop.parameters, loop.world)  # fmt: skip
    state.nonfinite_skipped += metrics.pop("nonfinite_steps")
    if state.nonfinite_skipped > optim.skip_nonfinite_steps:
        raise NonFiniteStep(
            f"step {state.step + 1}: the loss or gradient is not finite (nan or inf); the step was not applied and "
            f"nothing saved. Lower optim.lr ({optim.lr:g}), or allow a few such steps with optim.skip_nonfinite_steps"
        )
    state.scheduler.step()
    return metrics


def rollout_samples(loop: Loop, problems: list[Problem], sequences: Sequences, signals: Batch, n: int) -> list[dict]:
    """The first `n` rollouts of the step as samples rows: reward (the signals', else the task's), length and, where
    the signals hold pi_old and the teacher at the sampled tokens, the sampled reverse KL log pi_old(y_t) -
    log pi_T(y_t) per token."""
    rows = torch.arange(min(n, len(sequences)))
    chosen = sequences.select(rows)
    row_problems = [problems[i] for i in chosen.prompt_index.tolist()]
    if signals.rewards is not None:
        rewards = signals.rewards[rows].tolist()
    else:
        rewards = [loop.task.reward(p, c) for p, c in zip(row_problems, chosen.completions)]
    token_kl = None
    if signals.old_logprobs is not None and signals.teacher_logprobs is not None:
        gap = (signals.old_logprobs - signals.teacher_logprobs).float().cpu()
        index = signals.sequence_index.cpu()
        token_kl = [gap[index == row] for row in rows.tolist()]
    return sample_rows(loop.models.tokenizer, row_problems, chosen, "rollout", rewards,
                       loop.config.rollout.max_new_tokens, token_kl)  # fmt: skip


def train_step(loop: Loop, state: LoopState, watch: StepWatch) -> tuple[dict, dict, list[dict]]:
    """One step: draw prompts, sample, score, update, and evaluate when due. Returns the step's record (as
    metrics.jsonl holds it), its rollout and update metrics (all ranks' means) and its samples rows (a few
    rollouts, and every held-out completion when it evaluated)."""
    step, world, config = state.step + 1, loop.world, loop.config
    phases = PhaseTimer(loop.models.device)
    problems = draw_prompts(loop, state)
    sequences, metrics = sample_sequences(config, loop.models, problems, state.prompt_rng)
    phases.mark("rollout")
    signals = score(loop, sequences, problems)
    phases.mark("score")
    metrics |= watch.flat_rewards.check(step, signals)
    if config.rollout.source != "dataset":  # given solutions are not cut by the sampling limit
        metrics |= watch.truncation.check(step, sequences.completion_lengths)
    metrics |= rollout_metrics(sequences, signals, [t.name for t in loop.models.teachers])
    metrics = world.mean_metrics(metrics)  # per-row means over ranks of equal row counts
    samples = rollout_samples(loop, problems, sequences, signals, config.log.rollout_samples) if world.is_main else []
    learning_rate = state.scheduler.get_last_lr()[0]
    metrics |= update(loop, state, sequences, signals)
    phases.mark("update")
    state.step = step
    record = {f"train/{k}": v for k, v in metrics.items()}
    record |= {"train/lr": learning_rate,
               "perf/step_seconds": phases.total,
               "perf/tokens_per_second": world.sum(sequences.completion_mask.sum().item()) / phases.total,
               **{f"perf/{phase}_seconds": value for phase, value in phases.seconds.items()}}  # fmt: skip
    e = config.eval
    if step == config.optim.steps or (e.every and step % e.every == 0) or step in e.at:
        state.last_eval, held_out = held_out_eval(loop, loop.models.student, loop.single_teacher)
        record |= state.last_eval
        samples = held_out + samples
    return record, metrics, samples


def save(loop: Loop, state: LoopState) -> None:
    """A checkpoint of the step done: every rank's RNG states (and a sharded student's full state) gathered; rank 0
    writes it."""
    student, world = loop.models.student, loop.world
    weights, optimizer_saved = model_state(student), optimizer_state(student, state.optimizer)
    rng = world.gather(rng_state(state.prompt_rng))
    if world.is_main:
        saved = {"optimizer": optimizer_saved, "scheduler": state.scheduler.state_dict(), "rng": rng,
                 "nonfinite_skipped": state.nonfinite_skipped, **ema_teacher_state(loop.models.teachers)}  # fmt: skip
        save_checkpoint(loop.run_dir, state.step, student, loop.models.tokenizer, saved, loop.config.checkpoint.keep,
                        weights)  # fmt: skip


def progress_line(metrics: dict, record: dict, last_eval: dict) -> str:
    """The progress bar's text: loss, reverse KL, the last greedy accuracy, tokens per second."""
    info = f"loss {metrics['loss']:.4f}"
    if "reverse_kl" in metrics:
        info += f" | KL {metrics['reverse_kl']:.4f}"
    if last_eval:
        info += f" | acc {last_eval.get('eval/accuracy_greedy', 0.0):.3f}"
    return info + f" | {record['perf/tokens_per_second']:.0f} tok/s"


def finish(loop: Loop, teacher_evals: dict[str, dict]) -> dict | None:
    """Rank 0: the final model (atomically), the closed log, curves.png, report.html and the run's summary; None
    elsewhere."""
    weights = model_state(loop.models.student)
    if not loop.world.is_main:
        return None
    save_final_model(loop.run_dir, loop.models.student, loop.models.tokenizer, weights)
    loop.log.close()
    records = loop.log.records()
    plot_training_curves(records, loop.run_dir / "curves.png", teacher_evals)
    write_run_page(loop.run_dir)
    final = [r for r in records if "eval/accuracy_greedy" in r]
    return {
        "teacher": next(iter(teacher_evals.values()), None),
        "teachers": teacher_evals,
        "before": final[0] if final and final[0]["step"] == 0 else None,
        "after": final[-1] if final else None,
        "run_dir": str(loop.run_dir),
    }


def stopped(loop: Loop, step: int, signum: int) -> RunStopped:
    """The RunStopped to raise at `step` for signal `signum`, the metrics log closed."""
    if loop.log is not None:
        loop.log.close()
    return RunStopped(step, signum)


@dataclass
class StepWatch:
    """What watches the steps for the user: the no-op warnings (equal rewards, completions cut at the limit) and
    the plain progress lines of a run whose stderr is not a terminal."""

    flat_rewards: FlatRewardsWarning
    truncation: TruncationWarning
    plain: PlainProgress


def keep_samples(loop: Loop, step: int, rows: list[dict], evaluated: bool) -> None:
    """Rank 0: the step's samples to samples/step_N.jsonl, TensorBoard and W&B; at an evaluation report.html
    rewritten and the first `log.show_samples` greedy completions printed."""
    if loop.log is None or not rows:
        return
    write_samples(samples_path(loop.run_dir, step), rows, step)
    loop.log.log_samples(step, rows)
    if evaluated:
        write_run_page(loop.run_dir)  # report.html, rewritten (atomically) at each evaluation
        if loop.config.log.show_samples:
            lines = sample_lines(rows, loop.config.log.show_samples)
            console.print("\n".join([f"samples at step {step}:", *lines]), highlight=False, markup=False,
                          soft_wrap=True)  # fmt: skip


def train_in(run: ClaimedRun, config: TrainConfig, task: Task, eval_problems: list[Problem], objective: Objective,
             on_step: Callable[[int, dict], None] | None, show_progress: bool, eval_cache: dict | None,
             world: World, stops: StopRequests = StopRequests(), preflight: Preflight | None = None,
             ) -> dict | None:  # fmt: skip
    """The run itself, in the claimed directory: start, evaluate, then the loop of train_step; every rank runs it.
    After each step the ranks agree whether a signal asked them to stop (`stops`): then each saves the step's
    checkpoint and raises RunStopped."""
    loop, state = start_loop(run, config, task, eval_problems, objective, world, preflight or Preflight(), eval_cache)
    teacher_evals = evaluate_teachers(loop, resumed=run.resume_from is not None)
    if state.step == 0:  # every rank evaluates the student (a sharded one needs them all); rank 0 logs
        if world.is_main:
            phase(console, f"evaluating the student before training on {len(eval_problems)} held-out prompts")
        before, samples = held_out_eval(loop, loop.models.student, loop.single_teacher,
                                        unchanged_path=config.student.path)  # fmt: skip
        if loop.log is not None:
            loop.log.log(0, before)
        keep_samples(loop, 0, samples, evaluated=True)
    if loop.log is not None:  # the progress line shows the newest evaluation (of a resumed run too)
        state.last_eval = next((r for r in reversed(loop.log.records()) if "eval/accuracy_greedy" in r), {})
    shown = show_progress and world.is_main
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=not shown, transient=False,
    )  # fmt: skip
    signum = agreed_signal(world, stops)
    if signum:  # during the start: nothing new to save
        raise stopped(loop, state.step, signum)
    steps, every = config.optim.steps, config.checkpoint.every
    watch = StepWatch(FlatRewardsWarning(objective, console, world),
                      TruncationWarning(console, world, config.rollout.max_new_tokens),
                      PlainProgress(console, steps, state.step, config.log.every, shown and not console.is_terminal))  # fmt: skip
    with progress:
        bar = progress.add_task("train", total=steps, completed=state.step, info="")
        loop.models.student.train()
        while state.step < steps:
            record, metrics, samples = train_step(loop, state, watch)
            evaluated = "eval/accuracy_greedy" in record
            if loop.log is not None:
                loop.log.log(state.step, record)
            keep_samples(loop, state.step, samples, evaluated)
            signum = agreed_signal(world, stops)
            if state.step == steps or (every and state.step % every == 0) or signum:
                save(loop, state)
            info = progress_line(metrics, record, state.last_eval)
            progress.update(bar, advance=1, info=info)
            watch.plain.step(state.step, info, evaluated)
            if on_step is not None:
                on_step(state.step, record)
            if signum and state.step < steps:
                raise stopped(loop, state.step, signum)
    return finish(loop, teacher_evals)
