"""One forward pass of a causal LM over finished sequences -> its logits at the completion positions."""

from __future__ import annotations

from torch import Tensor
from transformers import PreTrainedModel

from distillrl.scoring.logits import ChunkedLogits


def position_ids_from_mask(attention_mask: Tensor) -> Tensor:
    """Positions that skip left padding, as HF generate assigns them: cumsum(mask) - 1, clamped at 0."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def target_positions(completion_mask: Tensor) -> Tensor:
    """Boolean [B, T-1]: position t predicts token t+1, which is a completion token."""
    return completion_mask[:, 1:].bool()


def completion_logits(
    model: PreTrainedModel,
    input_ids: Tensor,
    attention_mask: Tensor,
    completion_mask: Tensor,
    temperature: float = 1.0,
) -> ChunkedLogits:
    """The model's logits for every completion token, in row-major order: N = completion_mask.sum().

    Runs the decoder once over [B, T] and keeps only the hidden states that predict completion tokens; the
    output head is applied later, chunk by chunk (see ChunkedLogits). Heads with logit soft-capping or
    scaling are not plain linear maps and are refused.
    """
    config = model.config
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None):
        raise NotImplementedError(f"{config.model_type}: output heads with soft-capping or scaling are not supported")
    decoder = model.get_decoder()
    outputs = decoder(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids_from_mask(attention_mask),
        use_cache=False,
    )
    hidden = outputs.last_hidden_state[:, :-1][target_positions(completion_mask)]  # [N, H]
    head = model.get_output_embeddings()
    return ChunkedLogits(hidden=hidden, weight=head.weight, bias=head.bias, temperature=temperature)
