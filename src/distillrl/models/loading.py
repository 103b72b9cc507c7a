"""Loading causal LMs and tokenizers by name: a built-in zoo name (`zoo:teacher`), a local path or a hub id.

A run directory (`runs/demo`) names its trained model, `runs/demo/final`. The loading is transformers' own
`AutoModelForCausalLM.from_pretrained`; a directory holding a PEFT adapter (`adapter_config.json`) loads its
base model and the adapter on top.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as transformers_logging

from distillrl.core.errors import UserError, one_line
from distillrl.models.run_paths import FINAL_MODEL, latest_checkpoint
from distillrl.models.zoo_paths import ZOO_DIR

# transformers (5.25 and later) draws a progress bar for every load and save, a few per step of a run; the run's
# own lines say what it loads and writes
transformers_logging.disable_progress_bar()

ZOO_PREFIX = "zoo:"
LOCAL_PATH_PREFIXES = ("/", "./", "../", "~")
# what transformers, safetensors and json raise for a missing, truncated or corrupt checkpoint file
LOAD_FAILURES = (OSError, ValueError, RuntimeError, SafetensorError)


class ModelLoadError(UserError):
    """A model name that does not resolve to a loadable checkpoint."""


def resolve_model_path(name: str) -> str:
    """Map `zoo:NAME` to the shipped checkpoint directory and a run directory to its `final/` model; other local
    paths and hub ids pass through."""
    if name.startswith(ZOO_PREFIX):
        path = ZOO_DIR / name[len(ZOO_PREFIX) :]
        if not (path / "config.json").exists():
            available = sorted(p.name for p in ZOO_DIR.glob("*") if (p / "config.json").exists())
            raise ModelLoadError(
                f"{name}: no such built-in model (have: {', '.join(available) or 'none'}; "
                "run `distillrl zoo build` to build them)"
            )
        return str(path)
    path = Path(name).expanduser()
    if not path.exists():
        if name.startswith(LOCAL_PATH_PREFIXES):
            raise ModelLoadError(f"{name}: no such directory")
        return name
    if is_model_dir(path / FINAL_MODEL):  # a run directory stands for its final model
        return str(path / FINAL_MODEL)
    if not is_model_dir(path):
        checkpoint = latest_checkpoint(path)
        hint = (f"; this run has no final/ model yet (unfinished?): its latest checkpoint's model is {checkpoint / 'model'}"
                if checkpoint else "")  # fmt: skip
        raise ModelLoadError(f"{name}: not a model directory (no config.json or adapter_config.json, no final/){hint}")
    return str(path)


def is_model_dir(path: Path) -> bool:
    """A directory holding an HF model (config.json) or a PEFT adapter (adapter_config.json)."""
    return (path / "config.json").exists() or (path / "adapter_config.json").exists()


def adapter_base(adapter_dir: Path) -> str:
    """The base model a PEFT adapter names (`base_model_name_or_path`). distillrl writes absolute paths; a relative
    one (an adapter saved elsewhere) is read from the working directory, else from the adapter's own directory."""
    name = json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    if name.startswith(ZOO_PREFIX) or Path(name).expanduser().exists():
        return name
    beside = adapter_dir / name
    return str(beside) if beside.exists() else name


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """Load the tokenizer saved beside a model (left padding, pad = eos when the model has no pad)."""
    path = resolve_model_path(name)
    try:
        adapter_config = Path(path) / "adapter_config.json"
        if adapter_config.exists() and not (Path(path) / "tokenizer_config.json").exists():
            path = resolve_model_path(adapter_base(Path(path)))
        tokenizer = AutoTokenizer.from_pretrained(path)
    except LOAD_FAILURES as error:
        raise ModelLoadError(f"{name}: cannot load its tokenizer ({one_line(error)})") from error
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(name: str, dtype: torch.dtype = torch.float32, trainable: bool = False) -> PreTrainedModel:
    """Load a causal LM (or base + PEFT adapter) by name; frozen and in eval mode unless `trainable`."""
    path = resolve_model_path(name)
    adapter_config = Path(path) / "adapter_config.json"
    try:
        if adapter_config.exists():
            from peft import PeftModel

            base_name = adapter_base(Path(path))
            base = AutoModelForCausalLM.from_pretrained(resolve_model_path(base_name), dtype=dtype)
            model = PeftModel.from_pretrained(base, path, is_trainable=trainable)
        else:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except LOAD_FAILURES as error:
        raise ModelLoadError(f"{name}: cannot load a causal LM from it ({one_line(error)})") from error
    model.train(trainable)
    if not trainable:
        model.requires_grad_(False)
    return model


def model_config(name: str):
    """A model's config (of its base model for a PEFT adapter), read without loading any weights."""
    path = resolve_model_path(name)
    try:
        adapter_config = Path(path) / "adapter_config.json"
        if adapter_config.exists():
            return model_config(adapter_base(Path(path)))
        return AutoConfig.from_pretrained(path)
    except LOAD_FAILURES as error:
        raise ModelLoadError(f"{name}: cannot read its config ({one_line(error)})") from error


def check_model_files(name: str) -> None:
    """A local checkpoint's files must load: its config (or adapter config) parses and every safetensors file has a
    whole header and the size it declares. Read in milliseconds, before any weights; hub ids are not checked."""
    path = Path(resolve_model_path(name))
    if not path.is_dir():
        return
    configs = [p for p in (path / "config.json", path / "adapter_config.json") if p.exists()]
    weights = sorted(path.glob("*.safetensors"))
    if not weights and not list(path.glob("*.bin")):
        raise ModelLoadError(f"{name}: no model weights (*.safetensors) in it")
    for file in [*configs, *weights]:
        try:
            if file.suffix == ".json":
                json.loads(file.read_text())
            else:
                with safe_open(file, "pt"):
                    pass
        except (OSError, ValueError, SafetensorError) as error:
            raise ModelLoadError(f"{name}: {file.name} does not load ({one_line(error)})") from None


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
