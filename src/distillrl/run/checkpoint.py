"""Atomic checkpoints: written to a temporary directory, then renamed into place; discarded the same way.

A checkpoint directory `step_NNNNNN/` holds `model/` (HF layout or PEFT adapter, plus the tokenizer) and
`trainer_state.pt` (optimizer, scheduler, step and the RNG states of every rank, a list in rank order: its length
is the world size of the run that wrote it). It holds tensors, numbers, strings and containers only and is read with
`torch.load(weights_only=True)`: a crafted pickle in a shared or downloaded run directory is refused, never run. A run killed mid-write or mid-rotation leaves only a
`.tmp-*` directory, never an empty or half-deleted `step_*`; the next run of the directory removes it.

A finished run also has `final/`: the trained model in HF layout (or the PEFT adapter) with its tokenizer,
the stable name every `--model` accepts (a run directory stands for its `final/`).

A save that fails (a full disk, no permission) removes its temporary directory and is one line naming the path, the
reason and the free space; the previous checkpoint, and the previous `final/`, stay as they were.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from distillrl.core.errors import UserError, one_line
from distillrl.core.files import TEMPORARY_PREFIX, apply_umask, temporary_directory, write_failure
from distillrl.models.loading import ModelLoadError, check_model_files
from distillrl.models.run_paths import FINAL_MODEL, checkpoint_root, latest_checkpoint, list_checkpoints
from distillrl.run import runtime

TRAINER_STATE_KEYS = ("optimizer", "scheduler", "rng", "step")


def rng_state(prompt_rng: random.Random) -> dict:
    """Every RNG a run draws from: torch's (CPU and GPUs), Python's and the prompt stream."""
    return {**runtime.rng_state(), "python": random.getstate(), "prompts": prompt_rng.getstate()}


def rng_states_by_rank(trainer_state: dict) -> list[dict]:
    """The RNG states of a trainer state, one per rank (a checkpoint from before data parallel holds one dict)."""
    rng = trainer_state["rng"]
    return rng if isinstance(rng, list) else [rng]


def restore_rng_state(state: dict, prompt_rng: random.Random) -> None:
    runtime.restore_rng(state)
    random.setstate(state["python"])
    prompt_rng.setstate(state["prompts"])


def save_model(model, tokenizer, folder: Path, weights: dict | None = None) -> None:
    """The model in HF layout, or a PEFT model's adapter alone (training never resizes the vocabulary, so no
    embedding layers go with it), and the tokenizer. `weights`: the full state dict of a sharded model."""
    extra = {"save_embedding_layers": False} if hasattr(model, "peft_config") else {}
    model.save_pretrained(folder, state_dict=weights, **extra)
    tokenizer.save_pretrained(folder)
    apply_umask(folder)


def discard(path: Path) -> None:
    """Delete a directory so that a kill at any moment leaves it whole or gone: move it into a fresh temporary
    directory beside it (one rename), then delete that."""
    trash = Path(tempfile.mkdtemp(prefix=f"{TEMPORARY_PREFIX}discard-", dir=path.parent))
    os.replace(path, trash / path.name)
    shutil.rmtree(trash)


@contextmanager
def removed_on_failure(parent: Path, target: Path, kept: str, prefix: str = TEMPORARY_PREFIX):
    """A temporary directory under `parent` to write `target` into; when the writing fails it is deleted and the
    failure is a UserError naming `target`, the reason, the free space and what was `kept`."""
    try:
        parent.mkdir(parents=True, exist_ok=True)
        temporary = temporary_directory(prefix, parent)
    except OSError as error:
        raise write_failure(target, error, kept) from error
    try:
        yield temporary
    except Exception as error:  # OSError, or torch's and safetensors' own types for the same full disk
        shutil.rmtree(temporary, ignore_errors=True)
        raise write_failure(target, error, kept) from error


def save_checkpoint(run_dir: str | Path, step: int, model, tokenizer, trainer_state: dict, keep: int,
                    weights: dict | None = None) -> Path:  # fmt: skip
    """Write `run_dir/checkpoints/step_{step}` atomically and keep only the newest `keep` checkpoints (`weights`:
    the full state dict of a sharded model)."""
    root = checkpoint_root(run_dir)
    final = root / f"step_{step:06d}"
    previous = latest_checkpoint(run_dir)
    kept = f"the previous checkpoint {previous} is kept" if previous else "no earlier checkpoint exists"
    with removed_on_failure(root, final, kept) as temporary:
        save_model(model, tokenizer, temporary / "model", weights)
        torch.save({**trainer_state, "step": step}, temporary / "trainer_state.pt")
    if final.exists():
        discard(final)
    os.replace(temporary, final)
    for old in list_checkpoints(run_dir)[:-keep]:
        discard(old)
    return final


def save_final_model(run_dir: str | Path, model, tokenizer, weights: dict | None = None) -> Path:
    """Write the trained model and its tokenizer to `run_dir/final` atomically: a complete new `final/`
    replaces the old one in one rename, so a reader never sees a half-written model."""
    run_dir = Path(run_dir)
    final = run_dir / FINAL_MODEL
    kept = "the checkpoints are kept (--resume writes it again)"
    with removed_on_failure(run_dir, final, kept, prefix=".tmp-final-") as temporary:
        save_model(model, tokenizer, temporary, weights)
    if final.exists():
        retired = Path(tempfile.mkdtemp(prefix=".tmp-old-final-", dir=run_dir))
        os.replace(final, retired / FINAL_MODEL)
        os.replace(temporary, final)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(temporary, final)
    return final


def load_trainer_state(checkpoint: Path) -> dict:
    """The trainer state, unpickled with torch's weights-only loader (tensors, numbers, strings, containers): code
    in a crafted file does not run, it fails to load."""
    return torch.load(checkpoint / "trainer_state.pt", weights_only=True, map_location="cpu")


class CheckpointError(UserError):
    """A checkpoint whose files do not load."""


@dataclass
class ResumePoint:
    checkpoint: Path
    state: dict  # the loaded trainer_state.pt
    skipped: list[str]  # newer checkpoints that do not load, each with why


def load_checked_trainer_state(checkpoint: Path) -> dict:
    """trainer_state.pt with all its keys, once the checkpoint's model files are known to load; a CheckpointError
    says what is wrong."""
    try:
        check_model_files(str(checkpoint / "model"))
        state = load_trainer_state(checkpoint)
    except ModelLoadError as error:
        raise CheckpointError(str(error).replace(str(checkpoint / "model"), "model")) from None
    except Exception as error:  # torch.load raises many types for a truncated or foreign file
        raise CheckpointError(f"trainer_state.pt: {one_line(error)}") from None
    missing = [key for key in TRAINER_STATE_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"trainer_state.pt lacks {', '.join(missing)}")
    return state


def newest_loadable_checkpoint(run_dir: str | Path) -> ResumePoint | None:
    """The newest checkpoint that loads, with the newer ones it skipped and why; None when there is no checkpoint,
    a CheckpointError when there are some and none loads."""
    skipped = []
    for checkpoint in reversed(list_checkpoints(run_dir)):
        try:
            return ResumePoint(checkpoint, load_checked_trainer_state(checkpoint), skipped)
        except CheckpointError as error:
            skipped.append(f"{checkpoint.name} ({error})")
    if skipped:
        raise CheckpointError(f"--resume: no checkpoint under {checkpoint_root(run_dir)} loads: {'; '.join(skipped)}")
    return None
