"""Where a teacher's per-token signals come from: one interface, three backends.

A teacher backend scores rows of a step's Sequences and returns, for their completion tokens in row-major order,
the teacher's log-prob of each realised token and, when asked, its top-k ids and log-probs with the tail bucket
(fidelity `topk`) or its logits over the whole vocabulary (fidelity `full`). The objectives never know which
backend answered (config.BACKEND_FIDELITIES says which fidelities each can give; the config check refuses the
rest before anything loads):

- `LocalTeacher`: a frozen HF model in this process (every fidelity);
- `RemoteTeacher` (scoring/remote.py): a vLLM-compatible server's `prompt_logprobs` (sampled, topk);
- `StoredTeacher` (scoring/cache.py): top-k shards written once by `distillrl teacher cache` (sampled, topk).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol

import torch
from torch import Tensor

from distillrl.scoring.logits import ChunkedLogits
from distillrl.scoring.topk import topk_with_tail
from distillrl.text.micro_batches import pack_under_budget, trim_padding
from distillrl.text.sequences import Sequences


@dataclass
class TeacherSignals:
    """A teacher's view of n completion tokens (row-major)."""

    token_logprobs: Tensor  # [n] log pi_T(y_t | c_t)
    topk_ids: Tensor | None = None  # [n, k] (fidelity topk)
    topk_logprobs: Tensor | None = None  # [n, k + 1] their log-probs, then the tail bucket
    logits: ChunkedLogits | None = None  # [n, V] (fidelity full; local teachers only)


class TeacherScorer(Protocol):
    def score(self, sequences: Sequences, rows: Tensor, top_k: int | None, full: bool, rows_per_pass: int,
              chunk_size: int, tokens_per_pass: int | None = None) -> Iterator[tuple[Tensor, TeacherSignals]]:  # fmt: skip
        """(token mask over `sequences`' completion tokens, the signals of those tokens) for each part of `rows`;
        `top_k` asks for the top-k ids and log-probs, `full` for the logits (local teachers only: the config
        refuses fidelity full for the others before anything loads, config.BACKEND_FIDELITIES). A local model runs
        passes of at most `rows_per_pass` rows or, with `tokens_per_pass`, rows packed under that token budget
        (text/micro_batches.py); the other backends run no forward pass here and ignore both."""
        ...


def row_parts(rows: Tensor, rows_per_part: int) -> list[Tensor]:
    """`rows` in consecutive parts of at most `rows_per_part`."""
    return [part for part in rows.split(rows_per_part) if len(part)]


@dataclass
class LocalTeacher:
    """A frozen model in this process, scored in micro-batches of `rows_per_pass` sequences, or of rows packed
    under `tokens_per_pass` tokens (the padding they all lack trimmed)."""

    scorer: object  # a models.roles.FrozenScorer

    def score(self, sequences: Sequences, rows: Tensor, top_k: int | None, full: bool, rows_per_pass: int,
              chunk_size: int, tokens_per_pass: int | None = None) -> Iterator[tuple[Tensor, TeacherSignals]]:  # fmt: skip
        target_ids = sequences.target_ids
        if tokens_per_pass is None:
            parts = row_parts(rows, rows_per_pass)
        else:
            parts = pack_under_budget(list(rows[:, None]), sequences.attention_mask, tokens_per_pass)
        for part in parts:
            micro = sequences.select(part)
            if tokens_per_pass is not None:
                micro = trim_padding(micro)
            mask = torch.isin(sequences.sequence_index, part)
            logits = self.scorer.logits(micro.input_ids, micro.attention_mask, micro.completion_mask)
            logits = logits.to(target_ids.device)
            with torch.no_grad():
                signals = TeacherSignals(logits.token_logprobs(target_ids[mask], chunk_size))
            if top_k is not None:
                signals.topk_ids, signals.topk_logprobs = topk_with_tail(logits, top_k, chunk_size)
            if full:
                signals.logits = logits
            yield mask, signals


def real_token_rows(sequences: Sequences, rows: Tensor) -> list[tuple[list[int], list[int]]]:
    """For each of `rows`: its real token ids (padding removed) and the positions in that list of the completion
    tokens that are scored (position j's log-prob is log pi(token_j | tokens_<j); position 0 has none)."""
    out = []
    input_ids, attention_mask, completion_mask = (t.cpu() for t in (sequences.input_ids, sequences.attention_mask,
                                                                     sequences.completion_mask))  # fmt: skip
    for row in rows.tolist():
        real = attention_mask[row].bool()
        ids = input_ids[row][real].tolist()
        completion = completion_mask[row][real].bool()
        completion[0] = False  # target_ids start at column 1: the first token is never scored
        out.append((ids, completion.nonzero().squeeze(-1).tolist()))
    return out
