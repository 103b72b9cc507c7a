"""A teacher with its own tokenizer (`teacher.tokenizer: own`), seen through the student's tokens.

For each student row the teacher renders the original prompt through its own tokenizer and chat template,
reads the bytes the student's scored completion tokens spell (text/alignment.py: `token_byte_table`), tokenized
by itself, with the student's stop token mapped to its own end of turn, and scores that row by its backend.
Both tokenizations are aligned into minimal chunks on common byte boundaries (`align`). With S_i = log pi_old(y_i)
over the student's tokens and t_j = log pi_T(u_j) over the teacher's, chunk c has

    S_c = sum_{i in I_c} S_i,    T_c = sum_{j in J_c} t_j,    D_c = T_c - S_c  (0 for a student-only chunk),

and each student token gets the aligned teacher log-prob (`aligned_teacher_logprobs`)

    T_i = S_i + w_i D_c,    w_i >= 0,  sum_{i in I_c} w_i = 1,

so the advantages A_i = T_i - S_i of a chunk sum to D_c, every row's sum is log pi_T(teacher completion) -
log pi_old(student completion) exactly (the chunks partition both), and a student that matches the teacher on a
chunk (D_c = 0) gets zero advantage there. The Batch keeps the student's shape: every sampled-token objective
(OPD's reverse KL, G-OPD, RLAD, KDRL) reads T_i as it reads a same-tokenizer teacher's log-prob.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from distillrl.core.errors import UserError
from distillrl.scoring.teachers import TeacherScorer, TeacherSignals, real_token_rows
from distillrl.text.alignment import (
    Alignment,
    align,
    check_round_trip,
    token_byte_table,
    valid_text,
)
from distillrl.text.chat import (
    ChatFormat,
    end_of_turn_id,
    prompt_text,
    prompt_token_ids,
)
from distillrl.text.sequences import Sequences, left_pad

CREDIT_RULES = ("surprisal", "uniform", "last")
FLAT_CHUNK = 1e-6  # |S_c| below this: the surprisal share is uniform


def credit_weights(student_logprobs: Tensor, chunk: Tensor, num_chunks: int, rule: str) -> Tensor:
    """w_i of each student token i in chunk c(i) (chunks non-decreasing along the row), n_c its tokens:

    - `surprisal` (default): w_i = S_i / S_c, the student's own share of the chunk's surprisal (in [0, 1] as
      S_i <= 0); uniform when |S_c| < FLAT_CHUNK;
    - `uniform`: w_i = 1 / n_c;
    - `last`: w_i = 1 on the chunk's last student token, 0 on the others."""
    counts = torch.bincount(chunk, minlength=num_chunks).to(student_logprobs.dtype)
    uniform = 1.0 / counts[chunk]
    if rule == "uniform":
        return uniform
    if rule == "last":
        return (torch.cat([chunk[1:] != chunk[:-1], chunk.new_ones(min(len(chunk), 1), dtype=torch.bool)])).to(uniform)
    chunk_sums = student_logprobs.new_zeros(num_chunks).index_add(0, chunk, student_logprobs)[chunk]
    flat = chunk_sums.abs() < FLAT_CHUNK
    return torch.where(flat, uniform, student_logprobs / torch.where(flat, -1.0, chunk_sums))


def aligned_teacher_logprobs(student_logprobs: Tensor, teacher_logprobs: Tensor, alignment: Alignment,
                             rule: str = "surprisal") -> Tensor:  # fmt: skip
    """T_i = S_i + w_i D_c for each student token (module docstring; w_i: credit_weights), in the inputs' dtype.
    A chunk of one student token with teacher tokens gets T_c itself (so with one tokenizer on both sides, every
    chunk 1:1, T_i is the teacher's log-prob of the same token, bit for bit)."""
    chunk = torch.tensor(alignment.student_chunk, dtype=torch.long)
    teacher_chunk = torch.tensor(alignment.teacher_chunk, dtype=torch.long)
    scored = teacher_chunk >= 0
    n = alignment.num_chunks
    student_sums = student_logprobs.new_zeros(n).index_add(0, chunk, student_logprobs)
    teacher_sums = student_logprobs.new_zeros(n).index_add(0, teacher_chunk[scored], teacher_logprobs[scored])
    two_sided = torch.zeros(n, dtype=torch.bool)
    two_sided[teacher_chunk[scored]] = True
    gap = torch.where(two_sided, teacher_sums - student_sums, 0.0)
    spread = student_logprobs + credit_weights(student_logprobs, chunk, n, rule) * gap[chunk]
    single = (torch.bincount(chunk, minlength=n)[chunk] == 1) & two_sided[chunk]
    return torch.where(single, teacher_sums[chunk], spread)


@dataclass
class TokenizerBridge:
    """How a teacher with its own tokenizer reads the student's completions: both byte tables, the teacher's end
    of turn (its template's, else its EOS), the ids that end a student completion and the credit rule."""

    student: object  # the student's tokenizer
    teacher: object  # the teacher's tokenizer
    chat: ChatFormat
    student_stops: frozenset[int]
    credit: str = "surprisal"
    student_bytes: list[bytes] = field(init=False)
    teacher_bytes: list[bytes] = field(init=False)
    teacher_end: int = field(init=False)
    teacher_stops: dict[int, int] = field(init=False)  # student stop id -> the teacher's token of its content

    def __post_init__(self):
        self.student_bytes, self.teacher_bytes = token_byte_table(self.student), token_byte_table(self.teacher)
        end = end_of_turn_id(self.teacher)
        self.teacher_end = self.teacher.eos_token_id if end is None else end
        added = {token.content: index for index, token in self.teacher.added_tokens_decoder.items()}
        self.teacher_stops = {stop: added.get(self.student.convert_ids_to_tokens(stop), self.teacher_end)
                              for stop in self.student_stops}  # fmt: skip

    def teacher_completion(self, completion: list[int]) -> tuple[list[int], Alignment]:
        """The teacher's tokens of a student completion (its valid UTF-8 bytes, then, when the student stopped on a
        stop id, the teacher's added token of the same content, else its end of turn) and the alignment of the two."""
        closed = bool(completion) and completion[-1] in self.student_stops
        spelled = [self.student_bytes[i] for i in completion]
        text = valid_text(b"".join(spelled[: len(spelled) - closed]))
        ids = self.teacher(text, add_special_tokens=False)["input_ids"]
        ids += [self.teacher_stops[completion[-1]]] if closed else []
        return ids, align(spelled, [self.teacher_bytes[i] for i in ids], closed)

    def scorer(self, backend: TeacherScorer, prompts: list, old_logprobs: Tensor) -> BridgedTeacher:
        """`backend` (scoring teacher-token rows) as a TeacherScorer of student rows answering `prompts`."""
        return BridgedTeacher(backend, self, prompts, old_logprobs)


@dataclass
class BridgedTeacher:
    """A TeacherScorer over the student's rows whose teacher reads its own tokens (fidelity sampled only: the
    config refuses topk and full with `teacher.tokenizer: own`)."""

    backend: TeacherScorer  # scores Sequences in the teacher's tokens
    bridge: TokenizerBridge
    prompts: list  # the step's prompts (Problem.prompt), by Sequences.prompt_index
    old_logprobs: Tensor  # [N] log pi_old of the rollout's completion tokens

    def score(self, sequences: Sequences, rows: Tensor, top_k: int | None, full: bool, rows_per_pass: int,
              chunk_size: int, tokens_per_pass: int | None = None) -> Iterator[tuple[Tensor, TeacherSignals]]:  # fmt: skip
        bridge = self.bridge
        completions = [[ids[p] for p in scored] for ids, scored in real_token_rows(sequences, rows)]
        teacher_rows = [bridge.teacher_completion(c) for c in completions]
        prompt_index = sequences.prompt_index[rows].tolist()
        unique = sorted(set(prompt_index))  # G rows share a prompt: rendered once
        rendered = dict(zip(unique, prompt_token_ids(bridge.teacher, [self.prompts[i] for i in unique], bridge.chat)))
        teacher = teacher_sequences([rendered[i] for i in prompt_index], [ids for ids, _ in teacher_rows],
                                    bridge.teacher.pad_token_id or 0).to(sequences.input_ids.device)  # fmt: skip
        teacher_logprobs = torch.zeros(int(teacher.completion_mask[:, 1:].sum()), device=teacher.input_ids.device)
        for mask, scored in self.backend.score(teacher, torch.arange(len(teacher)), None, False, rows_per_pass,
                                               chunk_size, tokens_per_pass):  # fmt: skip
            teacher_logprobs[mask] = scored.token_logprobs
        mask = torch.isin(sequences.sequence_index, rows)
        student_parts = self.old_logprobs[mask].double().split([len(c) for c in completions])
        teacher_parts = teacher_logprobs.double().split([len(ids) for ids, _ in teacher_rows])
        aligned = [aligned_teacher_logprobs(s.cpu(), t.cpu(), alignment, bridge.credit)
                   for s, t, (_, alignment) in zip(student_parts, teacher_parts, teacher_rows)]  # fmt: skip
        yield mask, TeacherSignals(torch.cat(aligned).to(torch.float32).to(mask.device))


def teacher_sequences(prompts: list[list[int]], completions: list[list[int]], pad_id: int) -> Sequences:
    """Sequences of the teacher's own rows: prompts left-padded, completions right-padded and all scored."""
    prompt_ids, prompt_mask = left_pad(prompts, pad_id)
    width = max((len(c) for c in completions), default=0)
    completion_ids = torch.full((len(completions), width), pad_id, dtype=torch.long)
    completion_mask = torch.zeros_like(completion_ids)
    for row, ids in enumerate(completions):
        completion_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        completion_mask[row, : len(ids)] = 1
    return Sequences(torch.cat([prompt_ids, completion_ids], 1), torch.cat([prompt_mask, completion_mask], 1),
                     torch.cat([torch.zeros_like(prompt_mask), completion_mask], 1), torch.arange(len(prompts)),
                     [""] * len(prompts), prompt_ids.shape[1])  # fmt: skip


def check_bridgeable(student, teacher, student_name: str, teacher_name: str, field_name: str) -> None:
    """Before any weights load, a teacher with its own tokenizer (named `field_name`, e.g. `teacher.path`) must
    read text as it is: both tokenizers spell BYTE_PROBES back to their bytes (check_round_trip), the teacher
    has an end of turn or an EOS, and its chat template keeps a probe prompt's text. Each problem is a UserError."""
    check_round_trip(student, token_byte_table(student), f"student.path {student_name}")
    check_round_trip(teacher, token_byte_table(teacher), f"{field_name} {teacher_name}")
    if end_of_turn_id(teacher) is None and teacher.eos_token_id is None:
        raise UserError(f"{field_name} {teacher_name}: its tokenizer has no EOS and its template no end-of-turn token, "
                        "so a student completion that stops cannot be closed for it")  # fmt: skip
    probe = "what is 2+3?"
    if probe not in prompt_text(teacher, probe):
        raise UserError(f"{field_name} {teacher_name}: its chat template renders the probe prompt {probe!r} as "
                        f"{prompt_text(teacher, probe)!r}, without the prompt's text")  # fmt: skip
