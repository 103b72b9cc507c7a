"""The trainable student: all weights, or a LoRA adapter (PEFT) over frozen base weights."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel

from distillrl.core.errors import ConfigError
from distillrl.models.loading import ZOO_PREFIX, load_causal_lm, model_config, resolve_model_path


def check_lora_targets(path: str, lora, config=None) -> None:
    """Every `lora.target_modules` name must name modules of the model at `path` (built on the meta device from its
    `config`, read when not given: no weights are read); PEFT alone would ignore a misspelt one as long as another
    matches."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config or model_config(path))
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    unknown = [target for target in lora.target_modules if target not in names]
    if unknown:
        linear = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
        raise ConfigError(f"student.lora.target_modules: {path} has no module named {unknown[0]!r} (its linear layers: "
                          f"{', '.join(sorted(linear))})")  # fmt: skip


def base_model_reference(path: str) -> str:
    """How a saved adapter names its base: `zoo:NAME` and hub ids as given, a local directory by its absolute path
    (so the adapter loads from any working directory)."""
    if path.startswith(ZOO_PREFIX) or not Path(path).expanduser().exists():
        return path
    return str(Path(resolve_model_path(path)).resolve())


def load_student(path: str, lora=None, dtype: torch.dtype = torch.float32,
                 activation_checkpointing: bool = False) -> PreTrainedModel:  # fmt: skip
    """Load the student for training; with `lora` (LoraSettings) wrap it in a fresh PEFT LoRA adapter; with
    `activation_checkpointing`, its decoder layers recompute their activations in the backward pass.

    A path that already holds an adapter (a resumed LoRA run) loads base + adapter, trainable.
    """
    model = load_causal_lm(path, dtype=dtype, trainable=True)
    if lora is not None and not hasattr(model, "peft_config"):
        from peft import LoraConfig, get_peft_model

        peft_config = LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=lora.target_modules,
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, peft_config)
        model.peft_config["default"].base_model_name_or_path = base_model_reference(path)
    if activation_checkpointing:
        enable_activation_checkpointing(model)
    return model


def enable_activation_checkpointing(model: PreTrainedModel) -> None:
    """transformers' gradient checkpointing, non-reentrant: each decoder layer keeps only its input in training
    forward passes (model.training, grad enabled) and recomputes the rest in the backward pass, so activations cost
    O(layers x B x T x H) for the layer inputs plus one layer's internals at a time. It acts in the layers
    themselves, so the decoder called alone (scoring/forward.py) checkpoints too. A LoRA student's frozen embeddings
    give outputs without grad: `enable_input_require_grads` makes them require it, as PEFT asks."""
    if hasattr(model, "activation_checkpointing_enable"):  # its name since transformers 5.2x; the old one warns
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if hasattr(model, "peft_config"):
        model.enable_input_require_grads()
