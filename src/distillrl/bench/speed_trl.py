"""TRL's side of `bench speed`: `trl.DistillationTrainer` on the bench models, at its defaults except what the
comparison fixes (reverse KL `beta = 1`, gradient checkpointing off, prompts per step, completion length,
temperature 1, learning rate, bf16 on CUDA / fp32 on the CPU, no logging, evaluation or saving).

TRL 1.16's DistillationTrainer is always on-policy (it has no `lmbda`): every step samples the student's
completions with `generate`, then runs the teacher and the student over them inside the loss.

Timing: a TrainerCallback brackets each optimizer step (on_step_begin .. on_step_end, synchronising CUDA at
both ends); the trainer's own generation (`_generate_single_turn`) and the teacher's backbone pass
(`_get_last_hidden_state` called with the teacher) are wrapped on this instance to time those phases and count
completion tokens. The student phase is the rest of the step.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from distillrl.bench.peak_memory import PeakMemory
from distillrl.bench.speed_setup import BenchModels
from distillrl.bench.speed_spec import TRL_TOOL, Segment, SpeedSetting
from distillrl.core.errors import UserError


class TrlMissing(UserError):
    """trl is not installed."""


def import_trl():
    try:
        import trl
    except ImportError as error:
        raise TrlMissing(
            "bench speed compares against TRL's DistillationTrainer: install it with `pip install -e \".[bench]\"` "
            "(or `pip install 'trl>=1.16'`)"
        ) from error
    return trl


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def trl_step_timer(device: str):
    """A TrainerCallback that records each step's seconds and, through `add`, the phases measured inside it."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.steps: list[dict] = []
            self.current: dict = {}
            self.started = 0.0

        def add(self, phase: str, value: float) -> None:
            self.current[phase] = self.current.get(phase, 0.0) + value

        def on_step_begin(self, args, state, control, **kwargs):
            synchronize(device)
            self.current = {}
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            synchronize(device)
            self.steps.append({"seconds": time.perf_counter() - self.started, **self.current})

    return StepTimer()


def time_phases(trainer, timer, device: str) -> None:
    """Wrap this trainer's generation and teacher-forward methods so that `timer` sees their seconds (and the
    completion tokens generated)."""
    generate_single_turn = trainer._generate_single_turn
    last_hidden_state = trainer._get_last_hidden_state
    teacher = trainer.accelerator.unwrap_model(trainer.teacher_model)

    def timed_generation(*args, **kwargs):
        started = time.perf_counter()
        completion_ids = generate_single_turn(*args, **kwargs)  # lists of ids: already synchronised
        timer.add("generation", time.perf_counter() - started)
        timer.add("tokens", sum(len(ids) for ids in completion_ids))
        return completion_ids

    def timed_hidden_state(model, *args, **kwargs):
        if model is not teacher:
            return last_hidden_state(model, *args, **kwargs)
        synchronize(device)
        started = time.perf_counter()
        hidden = last_hidden_state(model, *args, **kwargs)
        synchronize(device)
        timer.add("teacher", time.perf_counter() - started)
        return hidden

    trainer._generate_single_turn = timed_generation
    trainer._get_last_hidden_state = timed_hidden_state


def run_trl_segment(setting: SpeedSetting, models: BenchModels, steps: int, seed: int, run_dir: Path,
                    round_index: int) -> Segment:  # fmt: skip
    trl = import_trl()
    from datasets import Dataset
    from transformers import AutoTokenizer, PrinterCallback

    # TRL turns gradient checkpointing on by default; transformers 5.24 renamed the switch
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in {
        f.name for f in dataclasses.fields(trl.DistillationConfig)} else "gradient_checkpointing"  # fmt: skip
    args = trl.DistillationConfig(
        **{checkpointing: False},
        output_dir=str(run_dir),
        max_steps=steps,
        per_device_train_batch_size=setting.prompts,
        gradient_accumulation_steps=1,
        learning_rate=setting.lr,
        max_completion_length=setting.new_tokens,
        temperature=1.0,
        beta=1.0,
        bf16=setting.precision == "bf16",
        use_cpu=setting.device == "cpu",
        seed=seed,
        report_to="none",
        logging_strategy="no",
        save_strategy="no",
        eval_strategy="no",
        disable_tqdm=True,
    )  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(models.student, padding_side="left")
    dataset = Dataset.from_list([{"prompt": prompt} for prompt in models.prompt_list])
    timer = trl_step_timer(setting.device)
    with PeakMemory(setting.device) as peak:
        trainer = trl.DistillationTrainer(model=models.student, teacher_model=models.teacher, args=args,
                                          train_dataset=dataset, processing_class=tokenizer, callbacks=[timer])  # fmt: skip
        trainer.remove_callback(PrinterCallback)  # its end-of-training print only
        time_phases(trainer, timer, setting.device)
        trainer.train()
    del trainer
    steps_done = timer.steps
    return Segment(
        tool=TRL_TOOL,
        round=round_index,
        step_seconds=[s["seconds"] for s in steps_done],
        completion_tokens=[int(s.get("tokens", 0)) for s in steps_done],
        generation_seconds=[s.get("generation") for s in steps_done],
        teacher_seconds=[s.get("teacher") for s in steps_done],
        student_seconds=[s["seconds"] - s.get("generation", 0.0) - s.get("teacher", 0.0) for s in steps_done],
        peak_memory_bytes=peak.bytes,
    )
