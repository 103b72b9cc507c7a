"""Atomic checkpoints: written to a temporary directory, then renamed into place.

A checkpoint directory `step_NNNNNN/` holds `model/` (HF layout or PEFT adapter, plus the tokenizer) and
`trainer_state.pt` (optimizer, scheduler, RNG states, step). A run killed mid-write leaves only a
`.tmp-*` directory, which is ignored and cleaned up.

A finished run also has `final/`: the trained model in HF layout (or the PEFT adapter) with its tokenizer,
the stable name every `--model` accepts (a run directory stands for its `final/`).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import tempfile
from pathlib import Path

import torch

from distillrl import runtime

STEP_DIR = re.compile(r"^step_(\d{6,})$")


FINAL_MODEL = "final"


def checkpoint_root(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = checkpoint_root(run_dir)
    found = [p for p in root.glob("step_*") if STEP_DIR.match(p.name) and (p / "trainer_state.pt").exists()]
    return sorted(found, key=lambda p: int(STEP_DIR.match(p.name)[1]))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def rng_state(prompt_rng: random.Random) -> dict:
    """Every RNG a run draws from: torch's (CPU and GPUs), Python's and the prompt stream."""
    return {**runtime.rng_state(), "python": random.getstate(), "prompts": prompt_rng.getstate()}


def restore_rng_state(state: dict, prompt_rng: random.Random) -> None:
    runtime.restore_rng(state)
    random.setstate(state["python"])
    prompt_rng.setstate(state["prompts"])


def save_model(model, tokenizer, folder: Path) -> None:
    """The model in HF layout, or a PEFT model's adapter alone (training never resizes the vocabulary, so no
    embedding layers go with it), and the tokenizer."""
    extra = {"save_embedding_layers": False} if hasattr(model, "peft_config") else {}
    model.save_pretrained(folder, **extra)
    tokenizer.save_pretrained(folder)


def save_checkpoint(run_dir: str | Path, step: int, model, tokenizer, trainer_state: dict, keep: int) -> Path:
    """Write `run_dir/checkpoints/step_{step}` atomically and keep only the newest `keep` checkpoints."""
    root = checkpoint_root(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    temporary = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    save_model(model, tokenizer, temporary / "model")
    torch.save({**trainer_state, "step": step}, temporary / "trainer_state.pt")
    final = root / f"step_{step:06d}"
    if final.exists():
        shutil.rmtree(final)
    os.replace(temporary, final)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def save_final_model(run_dir: str | Path, model, tokenizer) -> Path:
    """Write the trained model and its tokenizer to `run_dir/final` atomically: a complete new `final/`
    replaces the old one in one rename, so a reader never sees a half-written model."""
    run_dir = Path(run_dir)
    final = run_dir / FINAL_MODEL
    temporary = Path(tempfile.mkdtemp(prefix=".tmp-final-", dir=run_dir))
    save_model(model, tokenizer, temporary)
    if final.exists():
        retired = Path(tempfile.mkdtemp(prefix=".tmp-old-final-", dir=run_dir))
        os.replace(final, retired / FINAL_MODEL)
        os.replace(temporary, final)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(temporary, final)
    return final


def load_trainer_state(checkpoint: Path) -> dict:
    return torch.load(checkpoint / "trainer_state.pt", weights_only=False, map_location="cpu")
