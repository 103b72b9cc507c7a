"""A run directory belongs to one run.

`claim_run_directory` is held for a run's whole lifetime:
- an exclusive lock (`DIR/.lock`): a second run into the directory is refused with one line;
- a directory that holds a run is refused unless the run is `--resume`d (same config, except the settings in
  RESUMABLE_FIELDS) or `--overwrite`n (its contents deleted first);
- temporary files left by a killed run of this directory (`.tmp-*`) are removed; nobody else's can be there;
- `--resume` picks the newest checkpoint that loads (saying which newer ones it skipped and why) and refuses
  fewer `optim.steps` than that checkpoint has done;
- a new run that fails before its first checkpoint leaves no half-made directory behind.

Under data parallel only rank 0 claims the directory; `claim_run_directory_of_world` tells the other ranks where
the run resumes, or the error that stopped it, and checks that a resumed run has the world size it was saved with.
"""

from __future__ import annotations

import shutil
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from distillrl.checkpoint import (ResumePoint, checkpoint_root, list_checkpoints, load_checked_trainer_state,
                                  newest_loadable_checkpoint, rng_states_by_rank)  # fmt: skip
from distillrl.config import TrainConfig, load_config
from distillrl.distributed import World
from distillrl.errors import UserError
from distillrl.files import TEMPORARY_PREFIX
from distillrl.report.metrics import read_metrics, read_teacher_evals

LOCK_NAME = ".lock"
CONFIG_NAME = "config.yaml"
# what a resumed run may change: how long it runs, how it evaluates, saves and logs, and where the directory is
RESUMABLE_FIELDS = ("optim.steps", "optim.skip_nonfinite_steps", "eval", "checkpoint", "tensorboard", "wandb", "output_dir",
                    "device", "teacher.device", "rollout.engine", "teacher.server", "teacher.server_timeout",
                    "teacher.server_retries", "teacher.server_concurrency",
                    "teacher.server_rows_per_request")  # where it runs, not what it computes


@dataclass
class ClaimedRun:
    path: Path
    resume_from: ResumePoint | None  # the checkpoint to continue from (None: start at step 0)
    notes: list[str]  # what the claim decided that the user should read (skipped checkpoints, a fresh start)


def flatten(data: object, prefix: str = "") -> dict[str, object]:
    """Nested dicts as one dict of dotted keys (lists are values)."""
    if not isinstance(data, dict):
        return {prefix: data}
    flat = {}
    for key, value in data.items():
        flat |= flatten(value, f"{prefix}.{key}" if prefix else str(key))
    return flat


def resumable(field: str) -> bool:
    return any(field == allowed or field.startswith(allowed + ".") for allowed in RESUMABLE_FIELDS)


def check_same_config(stored_path: Path, config: TrainConfig) -> None:
    """Refuse a resumed run whose config differs from the run's stored one other than in RESUMABLE_FIELDS,
    naming every changed field with its old and new value."""
    stored = load_config(stored_path)  # fills the fields added since the run started with their defaults
    old, new = flatten(stored.model_dump(mode="json")), flatten(config.model_dump(mode="json"))
    changed = [f"{key} ({old.get(key)!r} -> {new.get(key)!r})" for key in sorted(old.keys() | new.keys())
               if old.get(key) != new.get(key) and not resumable(key)]  # fmt: skip
    if changed:
        raise UserError(f"--resume: the config differs from {stored_path} in {', '.join(changed)}; a resumed run may "
                        f"change only {', '.join(RESUMABLE_FIELDS)} (or start a new run with --overwrite)")  # fmt: skip


def holds_a_run(path: Path) -> bool:
    """True when the directory holds anything but its lock and temporary files."""
    return any(p.name != LOCK_NAME and not p.name.startswith(TEMPORARY_PREFIX) for p in path.iterdir())


def remove_temporaries(path: Path) -> None:
    """Delete the temporary files and directories of killed runs of this directory (the lock makes them ours)."""
    for folder in (path, checkpoint_root(path)):
        for temporary in folder.glob(f"{TEMPORARY_PREFIX}*"):
            shutil.rmtree(temporary) if temporary.is_dir() else temporary.unlink()


def clear(path: Path, keep_lock: bool = True) -> None:
    """Delete everything in the directory (but its lock, unless not `keep_lock`)."""
    for entry in path.iterdir():
        if entry.name != LOCK_NAME or not keep_lock:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def resume_point(path: Path, config: TrainConfig) -> ResumePoint | None:
    """--resume: check the config against the stored one, then the newest loadable checkpoint (None: none yet)."""
    stored = path / CONFIG_NAME
    if stored.exists():
        check_same_config(stored, config)
    elif list_checkpoints(path):
        raise UserError(f"--resume: {stored} is missing, so the run's config cannot be checked; start a new run "
                        "with --overwrite")  # fmt: skip
    read_metrics(path)  # a damaged metrics file is named now, before anything loads
    point = newest_loadable_checkpoint(path)
    if point is not None:
        read_teacher_evals(path)  # what the resumed run reads instead of evaluating its teachers
    if point is not None and point.state["step"] > config.optim.steps:
        raise UserError(f"optim.steps: {config.optim.steps} is fewer than the {point.state['step']} steps already "
                        f"done by {point.checkpoint}; give optim.steps >= {point.state['step']}")  # fmt: skip
    return point


def first_missing_ancestor(path: Path) -> Path | None:
    """The outermost directory of `path` that does not exist yet (what creating it makes), None if it exists."""
    missing = None
    for candidate in [path, *path.parents]:
        if candidate.exists():
            return missing
        missing = candidate
    return missing


@contextmanager
def claim_run_directory(config: TrainConfig, resume: bool = False, overwrite: bool = False) -> Iterator[ClaimedRun]:
    """Create (or take over) `config.output_dir` for one run and hold its lock until the run ends."""
    if resume and overwrite:
        raise UserError("--resume and --overwrite: give at most one of them")
    path = Path(config.output_dir)
    if path.exists() and not path.is_dir():
        raise UserError(f"output_dir: {path} is a file, not a directory")
    created = first_missing_ancestor(path)
    lock_existed = (path / LOCK_NAME).exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
        lock = FileLock(path / LOCK_NAME, timeout=0)
        lock.acquire()
    except Timeout:
        raise UserError(f"output_dir: {path} is in use by another run (it holds {path / LOCK_NAME}); wait for that "
                        "run to end or choose another output_dir") from None  # fmt: skip
    except OSError as error:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise UserError(f"output_dir: cannot write to {path} ({error.strerror})") from None
    was_empty = created is None and not holds_a_run(path)
    try:
        notes = []
        if not resume and not overwrite and holds_a_run(path):
            raise UserError(f"output_dir: {path} already holds a run; continue it with --resume or replace it with "
                            "--overwrite")  # fmt: skip
        point = resume_point(path, config) if resume else None
        if overwrite:
            clear(path)
        remove_temporaries(path)
        if resume:
            notes += [f"--resume: skipped {skipped}" for skipped in (point.skipped if point else [])]
            notes.append(f"--resume: from {point.checkpoint}" if point else
                         f"--resume: no checkpoint under {checkpoint_root(path)}, starting from step 0")  # fmt: skip
        yield ClaimedRun(path, point, notes)
    except BaseException:
        if not list_checkpoints(path):  # nothing to resume: put the directory back as it was
            if created is not None:
                shutil.rmtree(created, ignore_errors=True)
            elif was_empty:
                clear(path, keep_lock=lock_existed)
        raise
    finally:
        lock.release()


@contextmanager
def claim_run_directory_of_world(config: TrainConfig, resume: bool, overwrite: bool,
                                 world: World) -> Iterator[ClaimedRun]:  # fmt: skip
    """Rank 0 claims the directory for the run (`claim_run_directory`); every other rank gets rank 0's answer:
    the checkpoint to resume from (each rank loads it from the shared directory) or the error that stopped it.
    A checkpoint written by a run of another world size is refused (its ranks' sampling streams do not map)."""
    with ExitStack() as stack:
        answer = None
        if world.is_main:
            try:
                run = stack.enter_context(claim_run_directory(config, resume, overwrite))
                answer = ("resume", str(run.resume_from.checkpoint) if run.resume_from else None)
            except UserError as error:
                world.share(("error", str(error)))
                raise
        kind, detail = world.share(answer)
        if kind == "error":
            raise UserError(detail)
        if not world.is_main:
            point = None if detail is None else ResumePoint(Path(detail), load_checked_trainer_state(Path(detail)), [])
            run = ClaimedRun(Path(config.output_dir), point, [])
        if run.resume_from is not None:
            saved = len(rng_states_by_rank(run.resume_from.state))
            if saved != world.size:
                raise UserError(f"--resume: {run.resume_from.checkpoint} was written by a run of {saved} process(es) "
                                f"and this run has {world.size}; resume it with {saved} (the ranks' sampling "
                                "streams are saved per rank)")  # fmt: skip
        yield run
