"""The models of a run, by role: the trainable student, frozen teachers and their references.

A reference pi_ref (G-OPD's, or GRPO's KL anchor) is either a checkpoint or, by default, the student's initial
weights: loaded again from `student.path` (never from a resumed checkpoint), or with LoRA the student itself
with its adapter disabled, which costs no memory.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import PreTrainedModel

from distillrl.models.loading import ModelLoadError, load_causal_lm, load_tokenizer, model_config
from distillrl.models.student import load_student
from distillrl.scoring.forward import completion_logits
from distillrl.scoring.logits import ChunkedLogits


@dataclass
class FrozenScorer:
    """A model used only for scoring: no gradient, eval mode (and, for a LoRA student, its adapter disabled)."""

    model: PreTrainedModel
    adapter_disabled: bool = False

    @torch.no_grad()
    def logits(self, input_ids: Tensor, attention_mask: Tensor, completion_mask: Tensor) -> ChunkedLogits:
        was_training = self.model.training
        self.model.eval()
        context = self.model.disable_adapter() if self.adapter_disabled else contextlib.nullcontext()
        with context:
            logits = completion_logits(self.model, input_ids, attention_mask, completion_mask)
        self.model.train(was_training)
        return logits


@dataclass
class Teacher:
    name: str
    path: str
    model: PreTrainedModel
    reference: FrozenScorer | None  # its G-OPD reference, when the objective needs one


@dataclass
class Models:
    student: PreTrainedModel
    teachers: list[Teacher]
    tokenizer: object
    reference: FrozenScorer | None  # the student's initial weights (the default reference)

    @property
    def teacher(self) -> PreTrainedModel | None:
        """The first teacher: the one that the `speculative` source interleaves (and the only one of most runs)."""
        return self.teachers[0].model if self.teachers else None


def check_same_vocabulary(student: str, other: str, role: str) -> None:
    """Token-level distillation compares distributions over one vocabulary: `other` (named by `role`, e.g.
    `teacher.path`) must have the student's tokenizer and the same number of output rows (no padded vocabulary)."""
    if load_tokenizer(other).get_vocab() != load_tokenizer(student).get_vocab():
        raise ModelLoadError(f"{role} {other} uses a different tokenizer from the student {student}; token-level "
                             "distillation needs one shared vocabulary")  # fmt: skip
    rows, student_rows = model_config(other).vocab_size, model_config(student).vocab_size
    if rows != student_rows:
        raise ModelLoadError(f"{role} {other} has {rows} vocabulary rows and the student {student} {student_rows} "
                             "(a padded vocabulary); distillrl needs the same number (padded vocabularies are not "
                             "supported yet)")  # fmt: skip


def load_models(config, needs_reference: bool, student_path: str | None = None) -> Models:
    """Student (trainable, maybe LoRA), frozen teachers (and references when needed), the shared tokenizer."""
    tokenizer = load_tokenizer(config.student.path)
    student = load_student(student_path or config.student.path, config.student.lora)
    loaded: dict[str, PreTrainedModel] = {}

    def frozen(path: str) -> PreTrainedModel:
        if path not in loaded:
            loaded[path] = load_causal_lm(path)
        return loaded[path]

    initial = None
    if needs_reference:
        initial = FrozenScorer(student, adapter_disabled=True) if config.student.lora else FrozenScorer(frozen(config.student.path))
    teachers = []
    for teacher in config.teacher_list:
        reference = initial
        if needs_reference and teacher.reference is not None:
            reference = FrozenScorer(frozen(teacher.reference))
        teachers.append(Teacher(teacher.name, teacher.path, frozen(teacher.path), reference))
    return Models(student, teachers, tokenizer, initial)
