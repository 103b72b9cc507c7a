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

At fidelity `topk` (`student_topk`) each student position i gets k student ids and k + 1 log-probs (the Batch's
shape, read by the divergences unchanged). At the first student token of a chunk with teacher tokens, both sides
start a token after the same bytes, so the teacher's next-token distribution there (at its chunk's first token)
is mapped into the student's vocabulary: each teacher top-k token u with a twin v = twin(u) (the student token of
the identical bytes, `twin_table`) keeps log pi_T(u) at v, and the rest joins the tail,

    tail_i = log( sum_{u in K, twin(u) = -1} pi_T(u) + (1 - sum_{u in K} pi_T(u)) ).

Everywhere else (inside a multi-token student chunk, where the teacher has no token boundary, or in a
student-only chunk) the position carries the sampled estimator only: the realised token y_i with T_i (clamped at 0)
and the tail log(1 - e^T_i). Slots left free hold filler student ids with log-prob EMPTY_TAIL (probability 0):
ids without a teacher twin first, then the others, ascending, skipping the row's own ids. The k + 1 probabilities
of every row sum to 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from distillrl.core.errors import UserError
from distillrl.scoring.teachers import TeacherScorer, TeacherSignals, real_token_rows
from distillrl.scoring.topk import EMPTY_TAIL
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


def twin_table(student_bytes: list[bytes], teacher_bytes: list[bytes], stops: dict[int, int]) -> Tensor:
    """[V_T]: each teacher id's twin in the student's vocabulary, -1 for none. The twin of the teacher token a
    student stop id maps to (`stops`: student stop -> teacher token) is that stop id; else the student id spelling
    the same non-empty bytes, the lowest such (an added token repeating a plain token's bytes). Student ids are
    twinned at most once, to the lowest teacher id (stops first), so a top-k row never maps two ids to one."""
    lowest: dict[bytes, int] = {}
    for index, spelled in enumerate(student_bytes):
        if spelled:
            lowest.setdefault(spelled, index)
    twins, taken = [-1] * len(teacher_bytes), set()
    for stop, end in sorted(stops.items()):
        if twins[end] < 0 and stop not in taken:
            twins[end] = stop
            taken.add(stop)
    for index, spelled in enumerate(teacher_bytes):
        twin = lowest.get(spelled) if spelled else None
        if twins[index] < 0 and twin is not None and twin not in taken:
            twins[index] = twin
            taken.add(twin)
    return torch.tensor(twins, dtype=torch.long)


def filler_order(twins: Tensor, student_size: int) -> Tensor:
    """Student ids in the order free top-k slots take them: those without a teacher twin, then the rest, each
    ascending."""
    twinned = torch.zeros(student_size, dtype=torch.bool)
    twinned[twins[twins >= 0]] = True
    return torch.cat([(~twinned).nonzero().squeeze(-1), twinned.nonzero().squeeze(-1)])


def student_topk(alignment: Alignment, completion: Tensor, aligned: Tensor, teacher_ids: Tensor,
                 teacher_logprobs: Tensor, twins: Tensor, fillers: Tensor) -> tuple[Tensor, Tensor]:  # fmt: skip
    """The student's top-k rows of one completion (module docstring): `completion` [n] its ids, `aligned` [n] T_i,
    `teacher_ids` [m, k] and `teacher_logprobs` [m, k + 1] the teacher's top-k over its own m tokens; returns ids
    [n, k] and log-probs [n, k + 1] (in `teacher_logprobs`' dtype), each row sorted by falling log-prob (a stable
    sort: with one tokenizer on both sides, the teacher's rows bit for bit)."""
    k, n = teacher_ids.shape[1], len(completion)
    if len(fillers) < k:
        raise ValueError(f"objective.top_k: {k} is larger than the student's vocabulary ({len(fillers)} tokens)")
    chunk = torch.tensor(alignment.student_chunk, dtype=torch.long)
    first_teacher = torch.full((alignment.num_chunks,), -1, dtype=torch.long)  # each chunk's first teacher token
    for index, c in reversed(list(enumerate(alignment.teacher_chunk))):
        if c >= 0:
            first_teacher[c] = index
    start = torch.cat([torch.ones(min(n, 1), dtype=torch.bool), chunk[1:] != chunk[:-1]])
    source = torch.where(start, first_teacher[chunk], -1)
    mapped = source >= 0
    ids = torch.full((n, k), -1, dtype=torch.long)
    logprobs = torch.full((n, k + 1), EMPTY_TAIL, dtype=teacher_logprobs.dtype)
    rows_t, rows_lp = teacher_ids[source[mapped]], teacher_logprobs[source[mapped]]
    twin = twins[rows_t]
    kept = twin >= 0
    ids[mapped] = twin
    logprobs[mapped, :k] = torch.where(kept, rows_lp[:, :k], EMPTY_TAIL)
    dropped = torch.cat([torch.where(kept, -torch.inf, rows_lp[:, :k]), rows_lp[:, k:]], dim=1)
    logprobs[mapped, k] = torch.logsumexp(dropped, dim=1)
    sampled = aligned[~mapped].double().clamp(max=0.0)
    ids[~mapped, 0] = completion[~mapped]
    logprobs[~mapped, 0] = sampled.to(logprobs.dtype)
    rest = -torch.expm1(sampled)
    logprobs[~mapped, k] = torch.where(rest > 0, rest.clamp(min=1e-300).log(), EMPTY_TAIL).to(logprobs.dtype)
    order = logprobs[:, :k].sort(dim=1, descending=True, stable=True).indices
    ids, logprobs[:, :k] = ids.gather(1, order), logprobs[:, :k].gather(1, order)
    candidates = fillers[: 2 * k]
    free = ids < 0
    clash = (candidates[None, :, None] == ids[:, None, :]).any(-1)
    usable = candidates[clash.to(torch.int8).argsort(dim=1, stable=True)]  # [n, C]: non-clashing first
    rank = (free.cumsum(1) - 1).clamp(min=0)
    ids = torch.where(free, usable.gather(1, rank), ids)
    return ids, logprobs


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
    twins: Tensor = field(init=False)  # [V_T] each teacher id's twin in the student's vocabulary or -1 (twin_table)
    fillers: Tensor = field(init=False)  # student ids for free top-k slots (filler_order)

    def __post_init__(self):
        self.student_bytes, self.teacher_bytes = token_byte_table(self.student), token_byte_table(self.teacher)
        end = end_of_turn_id(self.teacher)
        self.teacher_end = self.teacher.eos_token_id if end is None else end
        added = {token.content: index for index, token in self.teacher.added_tokens_decoder.items()}
        self.teacher_stops = {stop: added.get(self.student.convert_ids_to_tokens(stop), self.teacher_end)
                              for stop in self.student_stops}  # fmt: skip
        self.twins = twin_table(self.student_bytes, self.teacher_bytes, self.teacher_stops)
        self.fillers = filler_order(self.twins, len(self.student_bytes))

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
    """A TeacherScorer over the student's rows whose teacher reads its own tokens: the aligned T_i, and with `top_k`
    the student's top-k rows (student_topk); the config refuses fidelity full with `teacher.tokenizer: own`."""

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
        num_teacher = int(teacher.completion_mask[:, 1:].sum())
        teacher_logprobs = torch.zeros(num_teacher, device=teacher.input_ids.device)
        if top_k is not None:
            topk_ids = torch.zeros(num_teacher, top_k, dtype=torch.long, device=teacher.input_ids.device)
            topk_logprobs = torch.zeros(num_teacher, top_k + 1, device=teacher.input_ids.device)
        for mask, scored in self.backend.score(teacher, torch.arange(len(teacher)), top_k, False, rows_per_pass,
                                               chunk_size, tokens_per_pass):  # fmt: skip
            teacher_logprobs[mask] = scored.token_logprobs
            if top_k is not None:
                topk_ids[mask], topk_logprobs[mask] = scored.topk_ids, scored.topk_logprobs
        mask = torch.isin(sequences.sequence_index, rows)
        student_parts = self.old_logprobs[mask].double().split([len(c) for c in completions])
        teacher_sizes = [len(ids) for ids, _ in teacher_rows]
        teacher_parts = teacher_logprobs.double().split(teacher_sizes)
        aligned = [aligned_teacher_logprobs(s.cpu(), t.cpu(), alignment, bridge.credit).float()
                   for s, t, (_, alignment) in zip(student_parts, teacher_parts, teacher_rows)]  # fmt: skip
        signals = TeacherSignals(torch.cat(aligned).to(mask.device))
        if top_k is not None:
            parts = zip(completions, aligned, topk_ids.cpu().split(teacher_sizes),
                        topk_logprobs.cpu().split(teacher_sizes), teacher_rows)  # fmt: skip
            rows_topk = [student_topk(alignment, torch.tensor(c, dtype=torch.long), a, ids, lp, bridge.twins,
                                      bridge.fillers) for c, a, ids, lp, (_, alignment) in parts]  # fmt: skip
            signals.topk_ids = torch.cat([ids for ids, _ in rows_topk]).to(mask.device)
            signals.topk_logprobs = torch.cat([lp for _, lp in rows_topk]).to(mask.device)
        yield mask, signals


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
