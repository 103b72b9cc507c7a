"""The names of a run directory's models on disk: `final/` (the trained model) and `checkpoints/step_NNNNNN/`.

Model loading resolves a run directory through these names; run/checkpoint.py writes and reads what is in them.
"""

from __future__ import annotations

import re
from pathlib import Path

STEP_DIR = re.compile(r"^step_(\d{6,})$")
FINAL_MODEL = "final"


def checkpoint_root(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoint directories, oldest first (whether they load is `loadable_checkpoint`'s question)."""
    found = [p for p in checkpoint_root(run_dir).glob("step_*") if STEP_DIR.match(p.name) and p.is_dir()]
    return sorted(found, key=lambda p: int(STEP_DIR.match(p.name)[1]))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None
