"""`distillrl export`: a trained model as a plain Hugging Face checkpoint.

A LoRA run's model is an adapter over its base; `--merge` folds the adapter into the base weights
(W + scale B A, peft's `merge_and_unload`) and writes an ordinary checkpoint (config, safetensors, generation
config, tokenizer) that `AutoModelForCausalLM.from_pretrained` loads without peft or distillrl.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from distillrl.errors import UserError
from distillrl.models.loading import load_causal_lm, load_tokenizer, resolve_model_path


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
        model = model.merge_and_unload()
    tokenizer = load_tokenizer(name)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=".tmp-export-", dir=out.parent))
    try:
        model.save_pretrained(temporary)
        tokenizer.save_pretrained(temporary)
        if out.exists():
            out.rmdir()
        os.replace(temporary, out)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return out
