"""A student sharded over the ranks with FSDP2 (`distributed.strategy: fsdp`).

`shard_student` applies torch's `fully_shard` as accelerate's FSDP2 plugin does (`transformer_based_wrap`): each
block the model names in `_no_split_modules` (its decoder layers) is one unit, the rest (embeddings, final norm,
output head) the root unit. accelerate itself is not the way in here: its FSDP2 path needs GPUs (on the CPU it
falls back to DDP), and the trainer's forward (`completion_logits`) reads the decoder and the output head, which
accelerate's prepared model does not change.

Each rank then holds 1/world of every parameter, gradient and optimizer state; a unit's parameters are gathered
for its forward and backward and freed after. Gradients are reduce-scattered as sums (divide factor 1): the loss
is already normalised by the whole step's token count (see `distillrl.core.distributed`).
Checkpoints hold the full state, gathered on rank 0: `model/` loads with `from_pretrained` like any other, and
the optimizer state is keyed by parameter name.
"""

from __future__ import annotations

import torch
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,  # fmt: skip
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor

FULL_STATE = StateDictOptions(full_state_dict=True, cpu_offload=True)


def is_sharded(model: torch.nn.Module) -> bool:
    return isinstance(model, FSDPModule)


def shard_student(student: torch.nn.Module) -> None:
    """Shard `student` in place over the ranks of the default process group: one FSDP2 unit per block named in
    `_no_split_modules`, then the root; gradients reduced as sums."""
    block_names = set(getattr(student, "_no_split_modules", None) or [])
    for module in student.modules():
        if type(module).__name__ in block_names:
            fully_shard(module)
    fully_shard(student)
    for module in student.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)  # a plain sum: gloo has no pre-multiplied sum


def clip_gradients(parameters: list[torch.nn.Parameter], max_norm: float) -> float:
    """torch's clip_grad_norm_ (the norm over every rank's shards when they are sharded); the norm before clipping."""
    norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm)
    return (norm.full_tensor() if isinstance(norm, DTensor) else norm).item()


def model_state(model: torch.nn.Module) -> dict | None:
    """The weights to save: for a sharded model the full state dict, gathered on rank 0's CPU (a collective: every
    rank calls it; the others get an empty dict), without the second name of a tied weight (as the model's own
    save_pretrained writes it); else None (the model saves its own)."""
    if not is_sharded(model):
        return None
    names = {name for name, _ in model.named_parameters()} | {name for name, _ in model.named_buffers()}
    return {name: value for name, value in get_model_state_dict(model, options=FULL_STATE).items() if name in names}


def optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """optimizer.state_dict(), or for a sharded model the full state keyed by parameter name (a collective)."""
    if is_sharded(model):
        return get_optimizer_state_dict(model, optimizer, options=FULL_STATE)
    return optimizer.state_dict()


def load_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """The inverse of `optimizer_state`: each rank keeps its shard of a full state."""
    if is_sharded(model):
        set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))
    else:
        optimizer.load_state_dict(state)
