"""One forward pass of a causal LM over finished sequences -> its logits at the completion positions."""

from __future__ import annotations

import torch
from torch import Tensor
from transformers import PreTrainedModel

from distillrl.core.sharding import is_sharded
from distillrl.scoring.logits import ChunkedLogits


def position_ids_from_mask(attention_mask: Tensor) -> Tensor:
    """Positions that skip left padding, as HF generate assigns them: cumsum(mask) - 1, clamped at 0."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def target_positions(completion_mask: Tensor) -> Tensor:
    """Boolean [B, T-1]: position t predicts token t+1, which is a completion token."""
    return completion_mask[:, 1:].bool()


def packs_by_default(model: PreTrainedModel) -> bool:
    """Whether forward passes pack sequences when not told: with a varlen attention kernel (FlashAttention),
    which attends within each packed sequence at no cost. With sdpa or eager attention a packed row needs a dense
    [S, S] block-diagonal mask, more work than the padding it saves, so padded rectangles stay the default."""
    return str(getattr(model.config, "_attn_implementation", "")).startswith("flash_attention")


def packed_hidden_states(decoder, input_ids: Tensor, attention_mask: Tensor, predicts: Tensor) -> Tensor:
    """Decoder states at the positions `predicts` [B, T] (row-major), from one packed row of every real token.

    The real tokens of all rows are laid end to end in a [1, S] row whose position ids restart at 0 for each
    sequence; transformers reads the restarts as sequence boundaries (attention stays within each sequence).
    """
    real = attention_mask.bool()
    positions = position_ids_from_mask(attention_mask)[real]
    hidden = decoder(input_ids=input_ids[real][None], position_ids=positions[None], use_cache=False).last_hidden_state[0]
    return hidden[predicts[real]]


def decoder_states_through_root(model: PreTrainedModel, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """The decoder's last hidden states [B, T, H], taken from a call of the whole model that keeps no logits: a
    student sharded with FSDP2 gathers its root unit (embeddings, output head) in the model's own forward hooks,
    and keeps it gathered through the backward pass, where the output head is applied chunk by chunk."""
    captured = []
    keep = lambda module, args, output: captured.append(output.last_hidden_state)  # noqa: E731
    hook = model.get_decoder().register_forward_hook(keep)
    try:
        model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids_from_mask(attention_mask),
              use_cache=False, logits_to_keep=input_ids.new_zeros(0))  # fmt: skip
    finally:
        hook.remove()
    return captured[0]


def completion_logits(
    model: PreTrainedModel,
    input_ids: Tensor,
    attention_mask: Tensor,
    completion_mask: Tensor,
    temperature: float = 1.0,
    packed: bool | None = None,
    vocab_size: int | None = None,
) -> ChunkedLogits:
    """The model's logits for every completion token, in row-major order: N = completion_mask.sum().

    Runs the decoder once, over the padded [B, T] rectangle or (`packed`; default: packs_by_default) over the
    real tokens packed into one row, and keeps only the hidden states that predict completion tokens; the
    output head is applied later, chunk by chunk (see ChunkedLogits). `vocab_size` keeps the head's first rows
    only (the tokenizer's ids: padding rows past them are never scored). Heads with logit soft-capping or
    scaling are not plain linear maps and are refused.
    """
    config = model.config
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None):
        raise NotImplementedError(f"{config.model_type}: output heads with soft-capping or scaling are not supported")
    decoder = model.get_decoder()
    predicts = torch.zeros_like(completion_mask, dtype=torch.bool)
    predicts[:, :-1] = target_positions(completion_mask)  # position t predicts completion token t + 1
    if is_sharded(model):
        hidden = decoder_states_through_root(model, input_ids, attention_mask)[predicts]  # [N, H]
    elif packs_by_default(model) if packed is None else packed:
        hidden = packed_hidden_states(decoder, input_ids, attention_mask, predicts)  # [N, H]
    else:
        outputs = decoder(input_ids=input_ids, attention_mask=attention_mask,
                          position_ids=position_ids_from_mask(attention_mask), use_cache=False)  # fmt: skip
        hidden = outputs.last_hidden_state[predicts]  # [N, H]
    weight, bias = output_head(model)
    if vocab_size is not None and vocab_size < weight.shape[0]:
        weight, bias = weight[:vocab_size], None if bias is None else bias[:vocab_size]
    return ChunkedLogits(hidden=hidden, weight=weight, bias=bias, temperature=temperature)


def output_head(model: PreTrainedModel) -> tuple[Tensor, Tensor | None]:
    """The output head's weight [V, H] and bias, as the model's forward applies them: for a LoRA-adapted head
    (peft, `lm_head` in `target_modules`) W + sum_a scale_a B_a A_a over the active adapters (none while the
    adapter is disabled)."""
    head = model.get_output_embeddings()
    if not hasattr(head, "get_delta_weight"):
        return head.weight, head.bias
    weight = head.base_layer.weight
    if not head.disable_adapters and not head.merged:
        for adapter in head.active_adapters:
            if adapter in head.lora_A:
                weight = weight + head.get_delta_weight(adapter).to(weight.dtype)
    return weight, head.base_layer.bias
