"""`kill -9` at random points of a run (and of its resume), then `--resume` to the end: the run directory ends
bit-identical to an uninterrupted run's (weights, optimizer and RNG states, metrics). Two runs into one directory:
the second is refused while the first holds it.

The kills are real SIGKILLs of a real process (tests/kill_at.py); the point of each, a call number, is drawn at
random from the calls a run makes (seeded, so a failure reproduces: the test id names the point and call).
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from distillrl.cli import app
from distillrl.report.metrics import read_metrics
from distillrl.run.checkpoint import list_checkpoints

TINY = """\
output_dir: {out}
rollout: {{prompts_per_step: 4, group_size: 2, max_new_tokens: 16}}
optim: {{steps: 4, lr: 0.002, schedule: cosine}}
eval: {{every: 2, num_prompts: 4, max_new_tokens: 16}}
checkpoint: {{every: 1, keep: 2}}
tensorboard: false
"""
KILL_AT = Path(__file__).resolve().parent / "kill_at.py"
CALLS = {  # each kill point and the calls of it a 4-step run makes (its n-th call is where it dies)
    "rollout": range(1, 5),  # step n's sampling
    "update": range(1, 5),  # step n's optimizer step
    "saving": range(1, 5),  # step n's checkpoint
    "rotation": range(1, 3),  # the n-th old checkpoint deleted (steps 3 and 4 delete one each)
    "metrics-append": range(2, 6),  # step n - 1's line (line 1 is the evaluation before step 1)
}
DRAW = random.Random(11)
KILLS = [(point, DRAW.choice(calls)) for point, calls in CALLS.items()]


def config(root: Path, name: str) -> Path:
    path = root / f"{name}.yaml"
    path.write_text(TINY.format(out=root / name))
    return path


def killed(root: Path, name: str, point: str, n: int, *flags: str) -> None:
    """Run `train` of config `name` in a process that SIGKILLs itself at the n-th call of `point`."""
    command = [sys.executable, str(KILL_AT), point, str(n), "train", str(config(root, name)), *flags]
    process = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert process.returncode == -9, process.stderr


def resumed(root: Path, name: str) -> None:
    result = CliRunner().invoke(app, ["train", str(root / f"{name}.yaml"), "--resume"])
    assert result.exit_code == 0, result.output


def same(a, b) -> bool:
    """Bitwise equality of nested states (tensors compared exactly, dtype and all)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def assert_identical_runs(run: Path, reference: Path) -> None:
    assert [c.name for c in list_checkpoints(run)] == [c.name for c in list_checkpoints(reference)]
    for mine, theirs in zip(list_checkpoints(run), list_checkpoints(reference)):
        assert (mine / "model" / "model.safetensors").read_bytes() == (theirs / "model" / "model.safetensors").read_bytes()
        state = torch.load(mine / "trainer_state.pt", weights_only=False)
        assert same(state, torch.load(theirs / "trainer_state.pt", weights_only=False)), mine

    def without_timings(run_dir: Path) -> list[dict]:
        return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in read_metrics(run_dir)]

    assert without_timings(run) == without_timings(reference)
    assert (run / "teacher_eval.json").read_text() == (reference / "teacher_eval.json").read_text()
    assert not [p for p in run.rglob(".tmp-*")], "a killed run's temporary files were left"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("uninterrupted")
    result = CliRunner().invoke(app, ["train", str(config(root, "run"))])
    assert result.exit_code == 0, result.output
    return root / "run"


@pytest.mark.parametrize("point,n", KILLS, ids=[f"{point}-{n}" for point, n in KILLS])
def test_a_run_killed_anywhere_resumes_bit_identical(point, n, tmp_path, uninterrupted):
    killed(tmp_path, "run", point, n)
    resumed(tmp_path, "run")
    assert_identical_runs(tmp_path / "run", uninterrupted)


def test_a_resume_killed_while_rewriting_metrics_loses_nothing(tmp_path, uninterrupted):
    killed(tmp_path, "run", "saving", DRAW.choice(range(2, 5)))  # step n logged, its checkpoint not renamed
    before = (tmp_path / "run" / "metrics.jsonl").read_text()
    killed(tmp_path, "run", "metrics-rewrite", 1, "--resume")
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == before  # the rewrite is a rename: all or nothing
    resumed(tmp_path, "run")
    assert_identical_runs(tmp_path / "run", uninterrupted)


def test_resume_skips_a_damaged_newest_checkpoint_and_says_so(tmp_path, uninterrupted):
    killed(tmp_path, "run", "rollout", 4)  # checkpoints of steps 2 and 3
    newest = list_checkpoints(tmp_path / "run")[-1]
    (newest / "trainer_state.pt").write_bytes(b"truncated")
    result = CliRunner().invoke(app, ["train", str(tmp_path / "run.yaml"), "--resume"])
    assert result.exit_code == 0, result.output
    assert f"--resume: skipped {newest.name} (trainer_state.pt:" in result.stderr
    assert_identical_runs(tmp_path / "run", uninterrupted)


def test_a_second_run_into_a_directory_in_use_is_refused(tmp_path):
    path = config(tmp_path, "run")
    first = subprocess.Popen([sys.executable, "-m", "distillrl.cli", "train", str(path), "--set", "optim.steps=1000"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / "run" / "config.yaml").exists():  # written once the first run holds the directory
            assert first.poll() is None and time.monotonic() < deadline, "the first run did not start"
            time.sleep(0.2)
        for flags in ([], ["--resume"], ["--overwrite"]):
            second = CliRunner().invoke(app, ["train", str(path), "--set", "optim.steps=1000", *flags])
            assert second.exit_code == 2, second.output
            assert second.stderr.startswith(f"distillrl: error: output_dir: {tmp_path / 'run'} is in use by another run")
        assert first.poll() is None  # the first run goes on
    finally:
        first.kill()
        first.wait()


def test_overwrite_replaces_a_run_with_a_new_one(tmp_path, uninterrupted):
    shutil.copytree(uninterrupted, tmp_path / "run")
    (tmp_path / "run" / "notes.txt").write_text("from the old run")
    result = CliRunner().invoke(app, ["train", str(config(tmp_path, "run")), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "run" / "notes.txt").exists()
    assert_identical_runs(tmp_path / "run", uninterrupted)


def signalled(root: Path, name: str, point: str, n: int, *flags: str) -> subprocess.CompletedProcess:
    """`train` of config `name` in a process that sends itself a signal at the n-th call of `point` (kill_at.py)."""
    command = [sys.executable, str(KILL_AT), point, str(n), "train", str(config(root, name)), *flags]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def assert_same_end(run: Path, reference: Path) -> None:
    """The final model, the last checkpoint and every metric (but the timings) as the reference run's."""
    assert (run / "final" / "model.safetensors").read_bytes() == (reference / "final" / "model.safetensors").read_bytes()
    mine, theirs = list_checkpoints(run)[-1], list_checkpoints(reference)[-1]
    assert mine.name == theirs.name
    assert same(torch.load(mine / "trainer_state.pt", weights_only=True),
                torch.load(theirs / "trainer_state.pt", weights_only=True))  # fmt: skip

    def without_timings(run_dir: Path) -> list[dict]:
        return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in read_metrics(run_dir)]

    assert without_timings(run) == without_timings(reference)


@pytest.mark.parametrize("sent,point,n,code", [("TERM", "rollout", 2, 143), ("INT", "update", 3, 130)])
def test_a_signal_finishes_the_step_saves_it_and_resume_ends_bit_identical(sent, point, n, code, tmp_path,
                                                                           uninterrupted):  # fmt: skip
    """checkpoint.every 0: the only checkpoint before the end is the one the signal makes, so `--resume` starting
    from it (not from step 0) shows that no step was lost."""
    stopped = signalled(tmp_path, "run", f"{sent}:{point}", n, "--set", "checkpoint.every=0")
    assert stopped.returncode == code, stopped.stderr
    assert stopped.stderr.splitlines()[-1] == f"distillrl: stopped at step {n} by SIG{sent}; --resume continues"
    run = tmp_path / "run"
    assert [c.name for c in list_checkpoints(run)] == [f"step_{n:06d}"]
    assert [r["step"] for r in read_metrics(run)] == list(range(n + 1))
    assert not (run / "final").exists()
    result = CliRunner().invoke(app, ["train", str(tmp_path / "run.yaml"), "--resume", "--set", "checkpoint.every=0"])
    assert result.exit_code == 0, result.output
    assert f"--resume:from{run / 'checkpoints' / f'step_{n:06d}'}" in "".join(result.stderr.split())
    assert_same_end(run, uninterrupted)


def test_a_second_signal_ends_the_run_at_once(tmp_path):
    stopped = signalled(tmp_path, "run", "TERMx2:rollout", 2, "--set", "checkpoint.every=0")
    assert stopped.returncode == -15, stopped.stderr  # the default action of SIGTERM: no step finished, no line
    assert "stopped at step" not in stopped.stderr
    assert list_checkpoints(tmp_path / "run") == []
