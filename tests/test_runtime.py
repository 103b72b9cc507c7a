"""Device and precision selection (run/runtime.py) and the config fields that name devices."""

import pytest
import torch

from distillrl.config import ConfigError, load_config
from distillrl.run import runtime


def test_auto_is_the_cpu_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.resolve_device("auto") == torch.device("cpu")
    assert runtime.resolve_precision("auto", torch.device("cpu")) == "fp32"


def test_auto_is_the_first_gpu_with_bf16_when_there_is_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert runtime.resolve_device("auto") == torch.device("cuda", 0)
    assert runtime.resolve_device("cuda:1") == torch.device("cuda", 1)
    assert runtime.resolve_precision("auto", torch.device("cuda", 0)) == "bf16"
    assert runtime.resolve_precision("fp32", torch.device("cuda", 0)) == "fp32"
    with pytest.raises(runtime.DeviceError, match=r"teacher.device: 'cuda:2' but this machine has 2 CUDA GPU"):
        runtime.resolve_device("cuda:2", "teacher.device")


def test_a_gpu_named_on_a_machine_without_one_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(runtime.DeviceError, match=r"device: 'cuda' but torch sees no CUDA GPU"):
        runtime.resolve_device("cuda")


def test_config_refuses_a_device_that_is_not_one(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("device: gpu0\nteacher:\n  path: zoo:teacher\n  device: tpu\n")
    with pytest.raises(ConfigError) as error:
        load_config(bad)
    assert "bad.yaml:1: device: String should match pattern" in str(error.value)
    assert "bad.yaml:4: teacher.device: String should match pattern" in str(error.value)


def test_frozen_models_are_bf16_under_bf16():
    assert runtime.frozen_dtype("bf16") == torch.bfloat16
    assert runtime.frozen_dtype("fp32") == torch.float32


def test_fork_rng_leaves_the_training_stream_untouched():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    with runtime.fork_rng("cpu", 123):
        inside = torch.rand(3)
    assert torch.equal(torch.rand(3), expected)
    with runtime.fork_rng("cpu", 123):
        assert torch.equal(torch.rand(3), inside)


def test_bf16_first_step_ratio_is_exactly_one(tiny_config):
    """pi_old (scored at rollout) and pi_theta (the update's forward) run under one precision: rho = 1 at step 1."""
    import random

    from distillrl.run.roles import load_models
    from distillrl.run.signals import score_rollout
    from distillrl.run.sources import sample_sequences
    from distillrl.scoring.forward import completion_logits
    from distillrl.tasks import build_task

    config = tiny_config(precision="bf16", device="cpu")
    models = load_models(config, needs_reference=False)
    assert next(models.teacher.parameters()).dtype == torch.bfloat16  # frozen: bf16 weights
    assert next(models.student.parameters()).dtype == torch.float32  # trained: fp32 master weights
    task = build_task(config.task)
    problems = [task.sample_train(random.Random(0)) for _ in range(4)]
    sequences, _ = sample_sequences(config, models, problems, random.Random(0))
    with runtime.autocast(models.precision, models.device):
        batch = score_rollout(models, frozenset({"old_logprobs", "teacher_logprobs"}), sequences, problems, task.reward)
        models.student.train()
        policy = completion_logits(models.student, sequences.input_ids, sequences.attention_mask, sequences.completion_mask)
        policy_logprobs = policy.token_logprobs(batch.target_ids)
    assert torch.equal(policy_logprobs, batch.old_logprobs)


def test_cpu_threads_respect_a_cgroup_quota_and_the_affinity(tmp_path, monkeypatch):
    quota = tmp_path / "cpu.max"
    for text, cpus in [("200000 100000\n", 2), ("150000 100000\n", 2), ("50000 100000\n", 1), ("max 100000\n", None)]:
        quota.write_text(text)
        assert runtime.cpu_quota(quota) == cpus
    assert runtime.cpu_quota(tmp_path / "missing") is None
    monkeypatch.setattr(runtime, "cpu_quota", lambda: 1)
    assert runtime.cpu_threads() == 1
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    threads = torch.get_num_threads()
    try:
        runtime.apply_cpu_threads()
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        torch.set_num_threads(2)
        runtime.apply_cpu_threads()  # the user's choice stands
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
