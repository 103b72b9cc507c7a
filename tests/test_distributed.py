"""Data parallel on this CPU: two real processes started by torchrun or accelerate launch, talking over loopback
sockets with gloo. No mocks: the runs are the CLI's, the kill a real SIGKILL (tests/kill_at.py).

- With fixed sequences (`rollout.source: dataset`) two processes that each take half of a step's prompts end
  with the weights of one process that takes them all (the loss is normalised by the step's token count over
  both ranks and the gradients are summed over ranks), whole copies (ddp) or a sharded student (FSDP2), killed
  and resumed or not.
- On-policy distillation on two processes lowers the reverse KL, and a run killed mid-way resumes with
  `--resume` (on the same number of processes; another number is refused with one line); a sharded student
  samples and scores the first step as the whole copies do.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from distillrl.config import ConfigError, load_config
from distillrl.core.errors import UserError
from distillrl.report.metrics import read_metrics
from distillrl.run.trainer import train

KILL_AT = Path(__file__).resolve().parent / "kill_at.py"
FIXED_SEQUENCES = """\
output_dir: {out}
rollout: {{source: dataset, prompts_per_step: 8, max_new_tokens: 24}}
objective: {{name: forward_kl}}
optim: {{steps: 5, lr: 0.002, schedule: constant}}
eval: {{every: 0, num_prompts: 4, max_new_tokens: 8}}
checkpoint: {{every: 0, keep: 1}}
tensorboard: false
"""
ON_POLICY = """\
output_dir: {out}
rollout: {{prompts_per_step: 8, group_size: 2, max_new_tokens: 40}}
optim: {{steps: 6, lr: 0.003, schedule: constant}}
eval: {{every: 0, num_prompts: 8, max_new_tokens: 40}}
checkpoint: {{every: 1, keep: 2}}
tensorboard: false
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(launcher: str, *script: str) -> subprocess.CompletedProcess:
    """Two processes of `script` (`-m distillrl ...` or a file and its arguments) started by `launcher`."""
    if launcher == "torchrun":
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *script]
    else:  # accelerate launch; --multi_gpu is its multi-process launcher, which runs on CPUs too (gloo)
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                   "--main_process_port", str(free_port()), *script]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def write_config(root: Path, template: str, name: str) -> Path:
    path = root / f"{name}.yaml"
    path.write_text(template.format(out=root / name))
    return path


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    """The fixed-sequence run in this one process: the whole batch of every step."""
    root = tmp_path_factory.mktemp("one")
    train(load_config(write_config(root, FIXED_SEQUENCES, "one")), show_progress=False)
    return root / "one"


def assert_same_training(run: Path, reference: Path) -> None:
    """Final weights equal to 1e-5 (and every key there), losses step by step to 1e-5, and the steps did something."""
    weights, expected = (load_file(path / "final" / "model.safetensors") for path in (run, reference))
    assert weights.keys() == expected.keys()
    difference = max((weights[k] - expected[k]).abs().max().item() for k in expected)
    assert difference < 1e-5, difference
    losses, expected_losses = ([r["train/loss"] for r in read_metrics(path) if "train/loss" in r]
                               for path in (run, reference))  # fmt: skip
    assert len(losses) == 5 and losses == pytest.approx(expected_losses, rel=1e-5)
    assert losses[-1] < 0.5 * losses[0]


def test_two_processes_take_the_step_of_one_process_with_the_whole_batch(tmp_path, one_process):
    two = launch("torchrun", "-m", "distillrl", "train", str(write_config(tmp_path, FIXED_SEQUENCES, "two")))
    assert two.returncode == 0, two.stderr[-3000:]
    assert_same_training(tmp_path / "two", one_process)


def test_a_sharded_student_trains_as_one_process_and_resumes_from_its_gathered_checkpoints(tmp_path, one_process):
    """FSDP2 over two gloo processes, killed after step 3 and resumed: the weights of the one-process run; the
    checkpoints hold full states (the model loads with from_pretrained)."""
    config = str(write_config(tmp_path, FIXED_SEQUENCES, "sharded"))
    flags = ("--set", "distributed.strategy=fsdp", "--set", "checkpoint.every=1")
    killed = launch("accelerate", str(KILL_AT), "update", "4", "train", config, *flags)
    assert killed.returncode != 0 and "SIGKILL" in killed.stderr, killed.stderr[-3000:]
    checkpoint = tmp_path / "sharded" / "checkpoints" / "step_000003"
    model = AutoModelForCausalLM.from_pretrained(checkpoint / "model")
    assert sum(p.numel() for p in model.parameters()) == 164_160  # the whole student, not a shard

    resumed = launch("torchrun", "-m", "distillrl", "train", config, *flags, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_training(tmp_path / "sharded", one_process)


def test_on_policy_distillation_on_two_processes_learns_and_resumes_after_a_kill(tmp_path):
    config = write_config(tmp_path, ON_POLICY, "opd")
    killed = launch("torchrun", str(KILL_AT), "update", "4", "train", str(config))  # both ranks die at step 4
    assert killed.returncode != 0 and "SIGKILL" in killed.stderr, killed.stderr[-3000:]
    run = tmp_path / "opd"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_000002", "step_000003"]

    resumed = launch("accelerate", "-m", "distillrl", "train", str(config), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "--resume:from" in "".join(resumed.stderr.split()) and "step_000003" in "".join(resumed.stderr.split())
    records = read_metrics(run)
    assert [r["step"] for r in records] == list(range(7))  # one line per step, none lost or repeated
    before, after = records[0]["eval/reverse_kl"], records[-1]["eval/reverse_kl"]
    assert after < 0.5 * before, (before, after)
    train_kl = [r["train/reverse_kl"] for r in records[1:]]
    assert sum(train_kl[-2:]) < sum(train_kl[:2]), train_kl
    state = json.loads((run / "teacher_eval.json").read_text())
    assert state["teacher"]["eval/accuracy_greedy"] > 0

    with pytest.raises(UserError, match=r"written by a run of 2 process\(es\) and this run has 1"):
        train(load_config(config), resume=True, show_progress=False)

    # a sharded student samples the same sequences (generate keeps the ranks in step) and scores them the same
    sharded = launch("torchrun", "-m", "distillrl", "train", str(config), "--set", "distributed.strategy=fsdp",
                     "--set", "optim.steps=1", "--set", f"output_dir={tmp_path / 'sharded'}")  # fmt: skip
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    first_step = read_metrics(tmp_path / "sharded")[1]
    assert first_step["train/response_length"] == records[1]["train/response_length"]
    assert first_step["train/reverse_kl"] == pytest.approx(records[1]["train/reverse_kl"], rel=1e-5)


def test_a_batch_that_does_not_split_over_the_processes_is_refused_before_loading(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ConfigError, match="rollout.prompts_per_step: 8 prompts do not split evenly over the 3"):
        train(load_config(write_config(tmp_path, ON_POLICY, "odd")), show_progress=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="device: cuda:1 would put all 2 processes on one GPU"):
        train(load_config(write_config(tmp_path, ON_POLICY, "odd"), ["device=cuda:1"]), show_progress=False)
    assert not (tmp_path / "odd").exists()


def test_what_a_sharded_student_cannot_do_is_refused_naming_the_field(tmp_path):
    config = write_config(tmp_path, ON_POLICY, "refused")
    for changes, message in [(["student.lora={r: 4}"], "with student.lora use ddp"),
                             (["rollout.engine=static"], "rollout.engine: 'static' is not supported"),
                             (["rollout.source=speculative", "objective.name=forward_kl"],
                              "rollout.source: 'speculative' is not supported")]:  # fmt: skip
        with pytest.raises(ConfigError, match=f"distributed.strategy: .*{message}"):
            load_config(config, ["distributed.strategy=fsdp", *changes])
    with pytest.raises(ConfigError, match="distributed.strategy: fsdp shards the student over the processes"):
        train(load_config(config, ["distributed.strategy=fsdp"]), show_progress=False)  # one process
    assert not (tmp_path / "refused").exists()


def test_a_sigterm_to_one_rank_stops_every_rank_at_the_same_step_and_resume_continues(tmp_path):
    """checkpoint.every 0: the step-3 checkpoint is the one the signal made; rank 1 alone gets the SIGTERM."""
    config = write_config(tmp_path, ON_POLICY, "opd")
    stopped = launch("torchrun", str(KILL_AT), "TERM:update@1", "3", "train", str(config), "--set",
                     "checkpoint.every=0")  # fmt: skip
    assert stopped.returncode != 0, stopped.stderr[-3000:]
    lines = [line for line in stopped.stderr.splitlines() if "distillrl: stopped at step" in line]
    assert len(lines) == 2 and all(line.endswith("stopped at step 3 by SIGTERM; --resume continues") for line in lines), \
        stopped.stderr[-3000:]  # fmt: skip
    run = tmp_path / "opd"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_000003"]
    resumed = launch("torchrun", "-m", "distillrl", "train", str(config), "--resume", "--set", "checkpoint.every=0")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "step_000003" in "".join(resumed.stderr.split())
    assert [r["step"] for r in read_metrics(run)] == list(range(7))


def test_a_rank_that_dies_ends_the_others_at_once(tmp_path):
    """kill -9 of rank 1 after its third optimizer step: torchrun ends rank 0 (blocked in the next collective)
    within seconds, and the checkpoints already written stay whole."""
    config = write_config(tmp_path, ON_POLICY, "opd")
    stamp = tmp_path / "killed_at"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(KILL_AT),
               "update@1", "3", "train", str(config)]  # fmt: skip
    killed = subprocess.run(command, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "KILL_AT_STAMP": str(stamp)})  # fmt: skip
    ended = time.time()
    assert killed.returncode != 0 and "SIGKILL" in killed.stderr, killed.stderr[-3000:]
    seconds = ended - float(stamp.read_text())
    assert seconds < 10, f"the run took {seconds:.1f} s to end after one rank died"
    run = tmp_path / "opd"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_000001", "step_000002"]
