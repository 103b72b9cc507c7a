"""Micro-batches under a token budget: groups of rows packed so that each forward pass costs at most N tokens.

A micro-batch of rows R is run as the padded rectangle of its own columns (`trim_padding`: the columns where no
row of R has a real token are dropped), so its cost is

    cost(R) = |R| * (max_{r in R} end_r - min_{r in R} start_r)

tokens, where [start_r, end_r) are row r's real columns (a left-padded prompt, then its completion). Units (a
prompt's rows, or single rows) are packed whole, longest unit first (its longest row's real length), each into
the current micro-batch while the cost stays within the budget, else into a new one (next fit decreasing). A unit
whose cost alone exceeds the budget gets a micro-batch of its own. The micro-batches partition the units' rows;
each one's rows are ascending.
"""

from __future__ import annotations

import torch
from torch import Tensor

from distillrl.text.sequences import Sequences


def real_spans(attention_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Each row's first real column and one past its last: (start [B], end [B])."""
    real = attention_mask.bool()
    columns = torch.arange(real.shape[1], device=real.device)
    start = torch.where(real, columns, real.shape[1]).amin(-1)
    end = torch.where(real, columns + 1, 0).amax(-1)
    return start, end


def pack_under_budget(units: list[Tensor], attention_mask: Tensor, budget: int) -> list[Tensor]:
    """`units` (tensors of row ids) packed into micro-batches of cost <= `budget` tokens (see the module's
    docstring); each micro-batch is its rows, ascending."""
    start, end = (t.tolist() for t in real_spans(attention_mask))
    spans = [(min(start[r] for r in rows), max(end[r] for r in rows), rows) for rows in (u.tolist() for u in units) if rows]
    spans.sort(key=lambda span: -max(end[r] - start[r] for r in span[2]))
    packed: list[list[int]] = []
    low = high = 0
    for unit_low, unit_high, rows in spans:
        if packed:
            new_low, new_high = min(low, unit_low), max(high, unit_high)
            if (len(packed[-1]) + len(rows)) * (new_high - new_low) <= budget:
                packed[-1] += rows
                low, high = new_low, new_high
                continue
        packed.append(list(rows))
        low, high = unit_low, unit_high
    device = attention_mask.device
    return [torch.tensor(sorted(rows), dtype=torch.long, device=device) for rows in packed]


def trim_padding(sequences: Sequences) -> Sequences:
    """The same rows without the columns where every row is padding (left of the earliest prompt token, right of
    the latest completion token)."""
    start, end = real_spans(sequences.attention_mask)
    low, high = int(start.min()), int(end.max())
    columns = slice(low, high)
    return Sequences(
        input_ids=sequences.input_ids[:, columns],
        attention_mask=sequences.attention_mask[:, columns],
        completion_mask=sequences.completion_mask[:, columns],
        prompt_index=sequences.prompt_index,
        completions=sequences.completions,
        prompt_width=max(sequences.prompt_width - low, 0),
    )

