"""`distillrl export`: a trained model as a plain Hugging Face checkpoint.

A LoRA run's model is an adapter over its base; `--merge` folds the adapter into the base weights
(W + scale B A, peft's `merge_and_unload`) and writes an ordinary checkpoint (config, safetensors, generation
config, tokenizer) that `AutoModelForCausalLM.from_pretrained` loads without peft or distillrl.

A student that ties its output head to its input embeddings (Qwen3-0.6B to 4B, Llama-3.2, Gemma: one matrix E)
with an adapter on `lm_head` or `embed_tokens` computes embeddings E + dE and logits h (E + dH)^T, with dE = 0
and dH = 0 for an untargeted side. Merged into the one shared E, both deltas would land on both sides (peft
only warns). So the merged model is untied first: its head gets its own copy of E and the saved config says
`tie_word_embeddings: false`; the merge then adds dH to the head alone and dE to the embeddings alone, and the
checkpoint computes what base + adapter computed (the embeddings of an lm_head-only adapter stay E exactly).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from distillrl.core.errors import UserError
from distillrl.core.files import apply_umask, temporary_directory
from distillrl.models.loading import load_causal_lm, load_tokenizer, resolve_model_path


def untie_adapted_embeddings(model) -> bool:
    """Give a PEFT model's tied output head its own copy of the embedding matrix (and `tie_word_embeddings=False`)
    when the adapter targets the head or the embeddings, so that merging puts each delta on its own side; returns
    whether it untied. Models with untied (or untargeted) embeddings are left as they are."""
    base = model.get_base_model()
    config = base.config.get_text_config(decoder=True)
    adapted = [module for module in (base.get_input_embeddings(), base.get_output_embeddings())
               if hasattr(module, "base_layer")]  # fmt: skip
    if not getattr(config, "tie_word_embeddings", False) or not adapted:
        return False
    head = base.get_output_embeddings()
    head = getattr(head, "base_layer", head)
    head.weight = torch.nn.Parameter(head.weight.detach().clone(), requires_grad=False)
    for each in {id(base.config): base.config, id(config): config}.values():
        each.tie_word_embeddings = False
    return True


def export_model(name: str, out: Path, merge: bool = False) -> Path:
    """Write the model that `name` names (a run directory, a checkpoint's model/, an adapter or a model) to `out`
    as a plain checkpoint; an adapter needs `merge`. `out` appears whole or not at all (one rename)."""
    path = Path(resolve_model_path(name))
    is_adapter = (path / "adapter_config.json").exists()
    if is_adapter and not merge:
        raise UserError(f"{name}: a LoRA adapter; pass --merge to write base + adapter merged as a plain checkpoint")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out}: exists and is not an empty directory")
    if out.parent.exists() and not out.parent.is_dir():
        raise UserError(f"--out: {out.parent} is not a directory")
    model = load_causal_lm(name)
    if is_adapter:
        untie_adapted_embeddings(model)
        model = model.merge_and_unload()
    tokenizer = load_tokenizer(name)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_directory(".tmp-export-", out.parent)
    try:
        model.save_pretrained(temporary)
        tokenizer.save_pretrained(temporary)
        apply_umask(temporary)  # safetensors writes 0600: the export is for others to load
        if out.exists():
            out.rmdir()
        os.replace(temporary, out)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return out
