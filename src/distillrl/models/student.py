"""The trainable student: all weights, or a LoRA adapter (PEFT) over frozen base weights."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from distillrl.models.loading import load_causal_lm


def load_student(path: str, lora=None, dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    """Load the student for training; with `lora` (LoraSettings) wrap it in a fresh PEFT LoRA adapter.

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
        model.peft_config["default"].base_model_name_or_path = path  # keep zoo:NAME, not a site-packages path
    return model
