"""The models of a run, by role: the trainable student, frozen teachers and their references.

A reference pi_ref (G-OPD's, or GRPO's KL anchor) is either a checkpoint or, by default, the student's initial
weights: loaded again from `student.path` (never from a resumed checkpoint), or with LoRA the student itself
with its adapter disabled, which costs no memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import torch
from transformers import PreTrainedModel

from distillrl.models.loading import load_causal_lm
from distillrl.models.model_files import ModelFiles
from distillrl.models.student import load_student
from distillrl.models.vocabulary import shared_vocab_size
from distillrl.rollout.engines import RolloutEngine, build_engine
from distillrl.run.runtime import frozen_dtype, resolve_device, resolve_precision
from distillrl.run.self_teacher import self_teacher_scorer
from distillrl.scoring.cache import StoredTeacher
from distillrl.scoring.cross_tokenizer import TokenizerBridge
from distillrl.scoring.frozen import FrozenScorer
from distillrl.scoring.privileged import TeacherPrompt
from distillrl.scoring.remote import RemoteTeacher
from distillrl.scoring.teachers import LocalTeacher, TeacherScorer
from distillrl.tasks import Problem
from distillrl.tasks.prompt_limits import max_positions
from distillrl.text.chat import PLAIN, ChatFormat, stop_token_ids
from distillrl.text.sequences import Sequences


@dataclass
class Teacher:
    name: str
    path: str
    model: PreTrainedModel | None  # None for a server or cache teacher (nothing loaded here)
    reference: FrozenScorer | None  # its G-OPD reference, when the objective needs one
    scorer: TeacherScorer | None = None  # where its signals come from (default: the model, scored here)
    bridge: TokenizerBridge | None = None  # teacher.tokenizer own: how it reads the student's tokens
    prompt: TeacherPrompt | None = None  # teacher.prompt: its own prompt before the student's completions

    def __post_init__(self):
        if self.scorer is None:
            self.scorer = LocalTeacher(FrozenScorer(self.model))

    def sequences(self, sequences: Sequences, problems: list[Problem]) -> Sequences:
        """What this teacher scores: the student's sequences, or their completions after its own prompt."""
        return sequences if self.prompt is None else self.prompt.sequences(sequences, problems)


@dataclass
class Models:
    student: PreTrainedModel
    teachers: list[Teacher]
    tokenizer: object
    reference: FrozenScorer | None  # the student's initial weights (the default reference)
    device: torch.device  # the student's, where every Batch tensor lives
    precision: str  # fp32 or bf16 (resolved from `auto`)
    engine_name: str = "hf"  # rollout.engine
    vocab_size: int | None = None  # the ids scored: the tokenizer's, within every head (shared_vocab_size)
    chat: ChatFormat = PLAIN  # how prompts are rendered and completions stop (task and rollout settings)
    engines: dict[tuple[int, int], RolloutEngine] = field(default_factory=dict)  # (id(model), batch size)
    max_kv_tokens: int | None = None  # rollout.max_kv_tokens: every engine's KV budget

    def engine(self, model: PreTrainedModel, batch_size: int = 512) -> RolloutEngine:
        """The rollout engine that samples from `model` (one per model and batch size, built on first use)."""
        key = (id(model), batch_size)
        if key not in self.engines:
            self.engines[key] = build_engine(self.engine_name, model, self.tokenizer, self.precision, batch_size, self.chat,
                                              self.max_kv_tokens)  # fmt: skip
        return self.engines[key]

    def scorer(self, model: PreTrainedModel) -> FrozenScorer:
        """`model` as a frozen scorer over the shared vocabulary."""
        return FrozenScorer(model, self.vocab_size)

    @property
    def teacher(self) -> PreTrainedModel | None:
        """The first teacher: the one that the `speculative` source interleaves (and the only one of most runs)."""
        return self.teachers[0].model if self.teachers else None


def teacher_devices(config, device: torch.device) -> list[torch.device]:
    """Where each configured teacher runs: its `device`, or the run's `device`; a device this machine lacks is a
    DeviceError naming the field."""
    return [resolve_device(teacher.device, f"teachers.{index}.device" if config.teachers else "teacher.device")
            if teacher.device else device for index, teacher in enumerate(config.teacher_list)]  # fmt: skip


@dataclass
class Preflight:
    """What a run's checks resolved before any weights load, handed to load_models so nothing is resolved twice:
    each model's tokenizer and config (`files`) and each server or cache teacher's checked backend, by index."""

    files: ModelFiles = field(default_factory=ModelFiles)
    backends: dict[int, TeacherScorer] = field(default_factory=dict)

    def backend(self, config, index: int) -> TeacherScorer:
        """The checked backend of `config.teacher_list[index]` (checked on first use, see teacher_backend)."""
        if index not in self.backends:
            self.backends[index] = teacher_backend(config, index, self.files)
        return self.backends[index]


def teacher_backend(config, index: int, files: ModelFiles | None = None) -> TeacherScorer:
    """The server or cache backend of `config.teacher_list[index]`, checked against the run: a server must be up
    and tokenise as the student does; a cache must be written for the student's tokenizer, the training file and
    at least the objective's top-k. Each problem is a UserError naming the field."""
    files = files or ModelFiles()
    teacher = config.teacher_list[index]
    field = f"teachers.{index}" if config.teachers else "teacher"
    tokenizer = files.tokenizer(config.student.path)
    top_ks = [leaf.top_k for leaf in config.objective.leaves() if leaf.resolved_fidelity == "topk"]
    if teacher.backend == "server":
        backend = RemoteTeacher(teacher.server, teacher.server_timeout, teacher.server_retries,
                                teacher.server_concurrency, teacher.server_rows_per_request, f"{field}.server",
                                teacher.server_api_key_env, files.config(config.student.path).vocab_size)  # fmt: skip
        backend.check(tokenizer, teacher.path)
        return backend
    backend = StoredTeacher(teacher.cache, f"{field}.cache")
    backend.check(tokenizer, config.student.path, config.task.train_path, max(top_ks, default=None))
    return backend
def model_roles(config) -> list[tuple[str, str]]:
    """(field, path) of every model of this run's process: the student, each local teacher and each teacher's
    reference (a server or cache teacher is not loaded here)."""
    roles = [("student.path", config.student.path)]
    for index, teacher in enumerate(config.teacher_list):
        field = f"teachers.{index}" if config.teachers else "teacher"
        paths = (("path", teacher.path if teacher.backend == "local" else None), ("reference", teacher.reference))
        roles += [(f"{field}.{key}", path) for key, path in paths if path is not None]
    return roles


def shortest_context(config, files: ModelFiles | None = None) -> tuple[int | None, str]:
    """The fewest positions any model of the run takes (None: unbounded) and that model, as `field path`."""
    files = files or ModelFiles()
    contexts = [(max_positions(files.config(path)), f"{field} {path}") for field, path in model_roles(config)]
    bounded = [(context, name) for context, name in contexts if context is not None]
    return min(bounded, key=lambda item: item[0]) if bounded else (None, contexts[0][1])


def chat_format(config, files: ModelFiles | None = None) -> ChatFormat:
    """How the run renders prompts and stops completions: task.chat_template_kwargs, rollout.stop_strings and, with
    task.truncate left, prompts cut to what leaves room for the longest completion in the shortest context."""
    max_prompt_tokens = None
    if config.task.truncate == "left":
        context, _ = shortest_context(config, files)
        new_tokens = max(config.rollout.max_new_tokens, config.eval.max_new_tokens)
        max_prompt_tokens = None if context is None else context - new_tokens
    return ChatFormat(dict(config.task.chat_template_kwargs), tuple(config.rollout.stop_strings), max_prompt_tokens,
                      config.task.truncate)  # fmt: skip


def load_models(config, needs_reference: bool, student_path: str | None = None,
                preflight: Preflight | None = None) -> Models:  # fmt: skip
    """Student (trainable, maybe LoRA), frozen teachers (and references when needed), the shared tokenizer, each
    on its device: the student on `device`, a teacher and its reference on `teacher.device` (default: `device`).

    Under bf16 the student keeps fp32 master weights (bf16 compute through autocast) and frozen models are
    loaded in bf16. Every engine renders prompts and stops completions as chat_format(config) says. `preflight`:
    the tokenizers, configs and teacher backends the run's checks resolved (resolved here when not given)."""
    preflight = preflight or Preflight()
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    tokenizer = preflight.files.tokenizer(config.student.path)
    student = load_student(student_path or config.student.path, config.student.lora,
                           activation_checkpointing=config.student.activation_checkpointing).to(device)  # fmt: skip
    loaded: dict[tuple[str, torch.device], PreTrainedModel] = {}

    def frozen(path: str, where: torch.device) -> PreTrainedModel:
        if (path, where) not in loaded:  # vocabularies were compared before loading (check_same_vocabulary)
            loaded[path, where] = load_causal_lm(path, dtype=frozen_dtype(precision)).to(where)
        return loaded[path, where]

    initial = None
    if needs_reference:
        initial = (FrozenScorer(student, adapter_disabled=True) if config.student.lora
                   else FrozenScorer(frozen(config.student.path, device)))  # fmt: skip
    chat = chat_format(config, preflight.files)
    teachers = []
    for index, (teacher, where) in enumerate(zip(config.teacher_list, teacher_devices(config, device))):
        reference = initial
        if needs_reference and teacher.reference is not None:
            reference = FrozenScorer(frozen(teacher.reference, where))
        prompt = TeacherPrompt(teacher.prompt, tokenizer, chat) if teacher.prompt is not None else None
        if teacher.backend == "local" and teacher.tokenizer == "own":  # scored over its own tokenizer's range
            own, model = preflight.files.tokenizer(teacher.path), frozen(teacher.path, where)
            bridge = TokenizerBridge(tokenizer, own, chat, frozenset(stop_token_ids(tokenizer, student)), teacher.credit)
            scorer = LocalTeacher(FrozenScorer(model, shared_vocab_size(own, [model])))
            teachers.append(Teacher(teacher.name, teacher.path, model, reference, scorer, bridge))
        elif teacher.backend == "local":
            teachers.append(Teacher(teacher.name, teacher.path, frozen(teacher.path, where), reference, prompt=prompt))
        elif teacher.backend == "self":
            scorer = self_teacher_scorer(teacher, student, partial(frozen, config.student.path, where), where)
            teachers.append(Teacher(teacher.name, teacher.path, None, reference, scorer, prompt=prompt))
        else:
            backend = preflight.backend(config, index)
            teachers.append(Teacher(teacher.name, teacher.path, None, reference, backend, prompt=prompt))
    own_models = [id(teacher.model) for teacher in teachers if teacher.bridge is not None]
    vocab_size = shared_vocab_size(tokenizer, [student, *(m for m in loaded.values() if id(m) not in own_models)])
    local_teachers = [teacher.scorer.scorer for teacher in teachers
                      if isinstance(teacher.scorer, LocalTeacher) and teacher.bridge is None]  # fmt: skip
    for scorer in [initial, *(teacher.reference for teacher in teachers), *local_teachers]:
        if scorer is not None:
            scorer.vocab_size = vocab_size
    return Models(student, teachers, tokenizer, initial, device, precision, config.rollout.engine, vocab_size, chat,
                  max_kv_tokens=config.rollout.max_kv_tokens)  # fmt: skip
