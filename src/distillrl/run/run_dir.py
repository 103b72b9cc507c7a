"""A run directory belongs to one run.

`claim_run_directory` is held for a run's whole lifetime:
- an exclusive lock (`DIR/.lock`): a second run into the directory is refused with one line;
- a directory that holds a run is refused unless the run is `--resume`d (same config, except the settings in
  RESUMABLE_FIELDS) or `--overwrite`n (its contents deleted first);
- a directory that holds anything but a run (no `config.yaml` or `metrics.jsonl` written by distillrl) is refused
  whatever the flags, and so are the filesystem root, the home directory and a git work tree (before anything is
  written): nothing of the user's is deleted or written among, and a refusal leaves no `.lock` behind;
- temporary files left by a killed run of this directory (`.tmp-*`) are removed; nobody else's can be there;
- `--resume` picks the newest checkpoint that loads (saying which newer ones it skipped and why) and refuses
  fewer `optim.steps` than that checkpoint has done; a new or empty directory starts at step 0, and a finished run
  whose checkpoints are gone is refused (starting over would replace its metrics and final model);
- a new run that fails before its first checkpoint leaves no half-made directory behind.

Under data parallel only rank 0 claims the directory; `claim_run_directory_of_world` tells the other ranks where
the run resumes, or the error that stopped it, and checks that a resumed run has the world size it was saved with.
"""

from __future__ import annotations

import json
import shutil
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import yaml
from filelock import FileLock, Timeout

from distillrl.config import TrainConfig, load_config
from distillrl.core.distributed import World
from distillrl.core.errors import UserError
from distillrl.core.files import TEMPORARY_PREFIX
from distillrl.report.metrics import METRICS_NAME, read_metrics, read_teacher_evals
from distillrl.run.checkpoint import (
    FINAL_MODEL,
    ResumePoint,
    checkpoint_root,
    list_checkpoints,
    load_checked_trainer_state,  # fmt: skip
    newest_loadable_checkpoint,
    rng_states_by_rank,
)

LOCK_NAME = ".lock"
CONFIG_NAME = "config.yaml"
RUN_CONFIG_KEYS = {"output_dir", "student", "objective", "optim"}  # what every config.yaml that a run wrote holds
# what a resumed run may change: how long it runs, how it evaluates, saves and logs, and where the directory is
RESUMABLE_FIELDS = ("optim.steps", "optim.skip_nonfinite_steps", "eval", "checkpoint", "log", "tensorboard", "wandb",
                    "output_dir",
                    "device", "teacher.device", "rollout.engine", "teacher.server", "teacher.server_timeout",
                    "teacher.server_retries", "teacher.server_concurrency",
                    "teacher.server_rows_per_request", "teacher.server_api_key_env")  # where it runs, not what it computes


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


def first_line(path: Path) -> str:
    """The first line of a text file (at most 64 KiB of it; empty when unreadable)."""
    try:
        with path.open("rb") as handle:
            return handle.readline(1 << 16).decode("utf-8", errors="replace")
    except OSError:
        return ""


def is_run_directory(path: Path) -> bool:
    """True when `path` holds what a distillrl run writes: its `config.yaml` (a mapping with a run's sections), a
    `metrics.jsonl` whose first line is a step's record, or checkpoints."""
    try:
        config = yaml.safe_load((path / CONFIG_NAME).read_text(errors="replace")[: 1 << 20])
        if isinstance(config, dict) and RUN_CONFIG_KEYS <= config.keys():
            return True
    except (OSError, yaml.YAMLError):
        pass
    try:
        record = json.loads(first_line(path / METRICS_NAME))
        if isinstance(record, dict) and "step" in record:
            return True
    except json.JSONDecodeError:
        pass
    return bool(list_checkpoints(path))


def protected_directory(path: Path) -> str | None:
    """Why `path` may never be a run directory (the filesystem root, the home directory, a git work tree), or None."""
    resolved = path.resolve()
    if resolved == Path(resolved.anchor):
        return "is the filesystem root"
    if resolved == Path.home().resolve():
        return "is the home directory"
    if (resolved / ".git").exists():
        return "is a git work tree (it holds .git)"
    return None


def check_location(path: Path, resume: bool, overwrite: bool) -> None:
    """Refuse, before anything is written, flags that conflict and a path that no run may take."""
    if resume and overwrite:
        raise UserError("--resume and --overwrite: give at most one of them")
    if path.exists() and not path.is_dir():
        raise UserError(f"output_dir: {path} is a file, not a directory")
    why = protected_directory(path)
    if why:
        raise UserError(f"output_dir: {path} {why}; distillrl writes runs only into their own directory, give "
                        "output_dir a new one")  # fmt: skip


def check_contents(path: Path, resume: bool, overwrite: bool) -> None:
    """Refuse a directory whose contents a run with these flags may not take (under its lock: not in use)."""
    if not holds_a_run(path):
        return
    if not is_run_directory(path):
        raise UserError(f"output_dir: {path} holds files that are not a distillrl run (no config.yaml or "
                        f"{METRICS_NAME} of a run); choose a new or empty directory")  # fmt: skip
    if not resume and not overwrite:
        raise UserError(f"output_dir: {path} already holds a run; continue it with --resume or replace it with "
                        "--overwrite")  # fmt: skip


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
    records = read_metrics(path)  # a damaged metrics file is named now, before anything loads
    point = newest_loadable_checkpoint(path)
    if point is None and (path / FINAL_MODEL).exists():
        steps = max((record["step"] for record in records), default=0)
        raise UserError(f"--resume: {path} holds a finished run ({steps} steps, its {FINAL_MODEL}/ model) but no "
                        f"checkpoint under {checkpoint_root(path)} to continue from; starting over would replace its "
                        "metrics and final model: give a new output_dir, or --overwrite to replace the run")  # fmt: skip
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
    path = Path(config.output_dir)
    check_location(path, resume, overwrite)
    created = first_missing_ancestor(path)
    lock_existed = (path / LOCK_NAME).exists()

    def put_back() -> None:
        """Undo what claiming made: the directories it created, else the lock file it created."""
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        elif not lock_existed:
            (path / LOCK_NAME).unlink(missing_ok=True)

    try:
        path.mkdir(parents=True, exist_ok=True)
        lock = FileLock(path / LOCK_NAME, timeout=0)
        lock.acquire()
    except Timeout:
        raise UserError(f"output_dir: {path} is in use by another run (it holds {path / LOCK_NAME}); wait for that "
                        "run to end or choose another output_dir") from None  # fmt: skip
    except OSError as error:
        put_back()
        raise UserError(f"output_dir: cannot write to {path} ({error.strerror})") from None
    was_empty = created is None and not holds_a_run(path)
    try:
        notes = []
        check_contents(path, resume, overwrite)
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
        lock.release()
        if not list_checkpoints(path):  # nothing to resume: put the directory back as it was
            if was_empty and created is None:
                clear(path, keep_lock=lock_existed)
            put_back()
        raise
    else:
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
