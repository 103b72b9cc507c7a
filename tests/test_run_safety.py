"""What a run may touch: only its own directory, and what it loads runs no code.

- `--overwrite` and `--resume` refuse a directory that holds no run (a copy of a checkout, a user's folder), the
  filesystem root, the home directory and a git work tree, and a refusal leaves everything as it was (no `.lock`).
- `--resume` of a finished run whose checkpoints are gone is refused instead of starting over.
- A crafted pickle as `trainer_state.pt` is refused and its code never runs.
- What a run writes has the user's umask.
- A full disk (a real, small tmpfs) or a refused write at a checkpoint is one line naming the path and the free
  space; the previous checkpoint is kept and `--resume` continues from it.
"""

from __future__ import annotations

import os
import pickle
import shutil
import stat
import subprocess
import uuid
from pathlib import Path

import pytest
import torch
from test_bad_inputs import TINY  # the same 2-step run
from typer.testing import CliRunner

import distillrl.run.checkpoint as checkpoint
from distillrl.cli import app
from distillrl.run.checkpoint import list_checkpoints


def config(root: Path, out: Path | str) -> str:
    path = root / f"config-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(TINY.format(out=out))
    return str(path)


def train(*argv: str):
    return CliRunner().invoke(app, ["train", *argv])


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes() for p in sorted(root.rglob("*"))}


def refused(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr.count("distillrl: error: ") == 1 and result.stdout == "", result.output
    for word in words:
        assert word in result.stderr, result.stderr


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("finished")
    result = train(config(root, root / "run"))
    assert result.exit_code == 0, result.output
    return root / "run"


def checkout_copy(root: Path) -> Path:
    """A folder that looks like a user's checkout: README, src/, tests/ and .git/."""
    folder = root / "checkout"
    for name, text in {"README.md": "# mine\n", "src/app.py": "print(1)\n", "tests/test_app.py": "x = 1\n",
                       ".git/HEAD": "ref: refs/heads/main\n"}.items():  # fmt: skip
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def users_folder(root: Path) -> Path:
    """A folder of a user's own files, a `.tmp-mine/` among them, that no run wrote."""
    folder = root / "mine"
    (folder / ".tmp-mine").mkdir(parents=True)
    (folder / ".tmp-mine" / "draft.txt").write_text("keep me\n")
    (folder / "notes.txt").write_text("my notes\n")
    (folder / "config.yaml").write_text("colour: blue\n")  # a config.yaml, but not a run's
    return folder


@pytest.mark.parametrize("flag", ["--overwrite", "--resume", None])
@pytest.mark.parametrize("make", [checkout_copy, users_folder], ids=["a checkout", "a user's folder"])
def test_a_directory_that_holds_no_run_is_never_touched(make, flag, tmp_path):
    folder = make(tmp_path)
    path = config(tmp_path, folder)
    before = snapshot(tmp_path)
    refused(train(path, *([flag] if flag else [])), str(folder))
    assert snapshot(tmp_path) == before  # no .lock, and the user's .tmp-mine/ is still there


def test_a_git_work_tree_is_refused_even_when_it_holds_a_run(tmp_path, finished_run):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / ".git").mkdir()
    before = snapshot(run)
    refused(train(str(run / "config.yaml"), "--set", f"output_dir={run}", "--overwrite"), "git work tree")
    assert snapshot(run) == before


@pytest.mark.parametrize("flag", ["--overwrite", "--resume", None])
def test_the_filesystem_root_is_refused_and_left_without_a_lock(flag, tmp_path):
    lock_before = Path("/.lock").exists()
    refused(train(config(tmp_path, "/"), *([flag] if flag else [])), "filesystem root")
    assert Path("/.lock").exists() == lock_before


def test_the_home_directory_is_refused(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "work").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    before = snapshot(home)
    refused(train(config(tmp_path, home), "--overwrite"), "home directory")
    assert snapshot(home) == before


def test_resume_into_a_new_or_empty_directory_starts_at_step_0(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for out in (tmp_path / "new", empty):
        result = train(config(tmp_path, out), "--resume", "--set", "optim.steps=1")
        assert result.exit_code == 0, result.output
        assert (out / "final").is_dir() and list_checkpoints(out)


def test_resume_of_a_finished_run_whose_checkpoints_are_gone_is_refused(tmp_path, finished_run):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    shutil.rmtree(run / "checkpoints")
    before = snapshot(run)
    refused(train(str(run / "config.yaml"), "--set", f"output_dir={run}", "--resume"), "finished run", "--overwrite")
    assert snapshot(run) == before


class RunsCode:
    """A pickle that, unpickled by the full unpickler, creates a file: the proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_pickle_checkpoint_is_refused_and_runs_nothing(tmp_path, finished_run):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    marker = tmp_path / "code-ran"
    for state in run.glob("checkpoints/step_*/trainer_state.pt"):
        genuine = torch.load(state, weights_only=True)
        with state.open("wb") as handle:
            pickle.dump({**genuine, "payload": RunsCode(marker)}, handle)
    result = train(str(run / "config.yaml"), "--set", f"output_dir={run}", "--set", "optim.steps=3", "--resume")
    refused(result, "trainer_state.pt", "no checkpoint under")
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):  # what a full unpickler would have run
        torch.load(next(run.glob("checkpoints/step_*/trainer_state.pt")), weights_only=True)


def test_files_are_written_with_the_users_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        result = train(config(tmp_path, tmp_path / "run"), "--set", "optim.steps=1")
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    paths = [run / "final", *(run / "final").iterdir(), list_checkpoints(run)[-1], list_checkpoints(run)[-1] / "model",
             list_checkpoints(run)[-1] / "trainer_state.pt", run / "metrics.jsonl", run / "config.yaml"]  # fmt: skip
    modes = [(str(p.relative_to(run)), oct(stat.S_IMODE(p.stat().st_mode))) for p in paths]
    assert modes == [(name, "0o755" if (run / name).is_dir() else "0o644") for name, _ in modes], modes


def small_filesystem(root: Path, megabytes: int) -> Path | None:
    """A tmpfs of `megabytes` mounted under root (None where this machine does not allow mounting)."""
    mount = root / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(mount)],
                          capture_output=True)  # fmt: skip
    return mount if done.returncode == 0 else None


def fill(path: Path) -> None:
    """Write zeros into a file under `path` until the filesystem is full."""
    with (path / "filler").open("wb") as handle:
        try:
            while True:
                handle.write(bytes(1 << 20))
                handle.flush()
        except OSError:
            pass


def test_a_full_disk_at_a_checkpoint_is_one_line_and_keeps_the_previous_one(tmp_path, monkeypatch):
    """A real full disk where this machine can mount a tmpfs (root, as here and in CI); elsewhere the same write
    fails with the OSError a full disk raises."""
    disk = small_filesystem(tmp_path, 64)
    try:
        out = (disk or tmp_path) / "run"
        original_save = checkpoint.save_model

        def save_model(model, tokenizer, folder, weights=None):  # the disk fills up after the first checkpoint
            if list_checkpoints(out):
                if disk is not None:
                    fill(disk)
                else:
                    raise OSError(28, "No space left on device", str(folder))
            return original_save(model, tokenizer, folder, weights)

        monkeypatch.setattr(checkpoint, "save_model", save_model)
        result = train(config(tmp_path, out))
        refused(result, f"cannot write {out / 'checkpoints' / 'step_000002'}", "No space left on device",
                "MiB free there", f"the previous checkpoint {out / 'checkpoints' / 'step_000001'} is kept")
        assert "Traceback" not in result.output
        assert [c.name for c in list_checkpoints(out)] == ["step_000001"]
        assert not list((out / "checkpoints").glob(".tmp-*")), "the failed write's temporary directory was left"
        assert checkpoint.load_checked_trainer_state(list_checkpoints(out)[0])["step"] == 1
        if disk is not None:
            (disk / "filler").unlink()
        monkeypatch.setattr(checkpoint, "save_model", original_save)
        resumed = train(str(out / "config.yaml"), "--resume")
        assert resumed.exit_code == 0, resumed.output
        assert "step_000001" in "".join(resumed.stderr.split())
    finally:
        if disk is not None:
            subprocess.run(["umount", "-l", str(disk)])


def test_a_refused_write_at_a_checkpoint_is_one_line(tmp_path, monkeypatch):
    """EACCES (as root no permission bit refuses, so the write itself is made to fail as it would)."""
    out = tmp_path / "run"

    def refuse(obj, path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(checkpoint.torch, "save", refuse)
    refused(train(config(tmp_path, out)), f"cannot write {out / 'checkpoints' / 'step_000001'} (Permission denied;",
            "no earlier checkpoint exists")  # fmt: skip
    assert not out.exists()  # a new run that failed before its first checkpoint leaves nothing behind
