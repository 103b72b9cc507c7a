"""A frozen model as a scorer: its log-probabilities at the completion positions, with no gradient."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import PreTrainedModel

from distillrl.scoring.forward import completion_logits
from distillrl.scoring.logits import ChunkedLogits


@dataclass
class FrozenScorer:
    """A model used only for scoring: no gradient, eval mode (and, for a LoRA student, its adapter disabled)."""

    model: PreTrainedModel
    vocab_size: int | None = None  # ids scored: the run's shared range (padding rows past it never are)
    adapter_disabled: bool = False

    @torch.no_grad()
    def logits(self, input_ids: Tensor, attention_mask: Tensor, completion_mask: Tensor) -> ChunkedLogits:
        """The model's ChunkedLogits at the completion positions, computed on the model's device."""
        was_training = self.model.training
        self.model.eval()
        device = next(self.model.parameters()).device
        context = self.model.disable_adapter() if self.adapter_disabled else contextlib.nullcontext()
        with context:
            logits = completion_logits(self.model, input_ids.to(device), attention_mask.to(device), completion_mask.to(device),
                                       vocab_size=self.vocab_size)  # fmt: skip
        self.model.train(was_training)
        return logits
