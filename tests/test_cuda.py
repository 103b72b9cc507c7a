"""Checks that need a CUDA GPU (skipped elsewhere); scripts/gpu_check.sh runs them with `bench speed --config gpu`."""

import random

import pytest
import torch
from user_models import tiny_decoder

from distillrl.models.loading import load_causal_lm, load_tokenizer
from distillrl.rollout.engines import HFEngine
from distillrl.rollout.static_engine import StaticCacheEngine
from distillrl.scoring.forward import completion_logits
from distillrl.text.sequences import encode_pairs

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

PROMPTS = [f"{a}+{b}*{c}=" for a in range(5) for b in range(4) for c in (2, 7)]


@pytest.fixture(autouse=True)
def exact_fp32():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def test_compiled_static_greedy_equals_generate_and_reuses_its_graph():
    from torch._dynamo.utils import counters

    tokenizer = load_tokenizer("zoo:teacher")
    teacher = load_causal_lm("zoo:teacher").cuda()
    hf = HFEngine(teacher, tokenizer).generate(PROMPTS, 1, 0.0, 40)
    engine = StaticCacheEngine(teacher, tokenizer, torch.float32, compile=True)
    static = engine.generate(PROMPTS, 1, 0.0, 40)
    agree = sum(a == b for a, b in zip(static.completions, hf.completions)) / len(PROMPTS)
    assert agree >= 0.95, (agree, static.completions[:4], hf.completions[:4])
    graphs = counters["stats"]["unique_graphs"]
    again = engine.generate(list(reversed(PROMPTS)), 1, 0.0, 40)  # same shapes: no recompilation
    assert counters["stats"]["unique_graphs"] == graphs
    assert again.completions == list(reversed(static.completions))


def test_compiled_sampling_follows_the_model():
    model, tokenizer = tiny_decoder("qwen3", hidden=32)
    model = model.cuda()
    with torch.no_grad():
        ids = tokenizer(["7*8="], return_tensors="pt", add_special_tokens=False)["input_ids"].cuda()
        exact = torch.softmax(model(ids).logits[0, -1].float(), -1)
    torch.manual_seed(0)
    sequences = StaticCacheEngine(model, tokenizer, torch.float32, compile=True).generate(["7*8="], 4000, 1.0, 2)
    first = sequences.input_ids[:, sequences.prompt_width]
    frequencies = torch.bincount(first, minlength=exact.shape[0]).float() / len(first)
    assert (frequencies - exact).abs().sum() / 2 < 0.06


@pytest.mark.parametrize("kind", ["llama", "qwen3"])
def test_packed_equals_padded_on_the_gpu(kind):
    model, tokenizer = tiny_decoder(kind)
    model = model.cuda()
    sequences = encode_pairs(tokenizer, ["3+4=", "12*3-7=", "1="], ["3+4=7;#7", "1", "1;#1 and more"]).to("cuda")
    args = (sequences.input_ids, sequences.attention_mask, sequences.completion_mask)
    with torch.no_grad():
        padded = completion_logits(model, *args, packed=False).token_logprobs(sequences.target_ids)
        packed = completion_logits(model, *args, packed=True).token_logprobs(sequences.target_ids)
    assert torch.allclose(packed, padded, atol=1e-5)


@pytest.mark.parametrize("teacher_device", ["cuda", "cpu"])
def test_opd_trains_on_the_gpu(tiny_config, teacher_device):
    """The CPU test's OPD run (test_training: 12 steps at lr 3e-3) on the GPU in bf16 with the static engine, the
    teacher on the GPU or on the CPU, for three seeds: most of them lower the held-out reverse KL below 0.8x.

    One seed in three is allowed to end on a late spike: measured on an H200 (scripts in the closing note of
    issue 15), seeds 0-2 ended at 7.68 / 3.07 / 1.81 (teacher on the CPU) and 2.32 / 8.21 / 1.50 (on the GPU)
    from 7.30, and the CPU's own bf16 run spikes the same way (9.09 at step 8, then 1.45)."""
    from distillrl.run.trainer import train

    results = []
    for seed in range(3):
        config = tiny_config(seed=seed, device="cuda", teacher={"path": "zoo:teacher", "device": teacher_device},
                             optim={"steps": 12, "lr": 3e-3}, eval={"every": 0, "num_prompts": 48},
                             checkpoint={"every": 0}, output_dir=f"{tiny_config().output_dir}-{seed}")  # fmt: skip
        summary = train(config, show_progress=False)
        results.append((summary["before"]["eval/reverse_kl"], summary["after"]["eval/reverse_kl"]))
    assert sum(after < 0.8 * before for before, after in results) >= 2, results


def test_bf16_first_step_ratio_is_exactly_one_on_the_gpu(tiny_config):
    from distillrl.run import runtime
    from distillrl.run.roles import load_models
    from distillrl.run.signals import score_rollout
    from distillrl.run.sources import sample_sequences
    from distillrl.tasks import build_task

    config = tiny_config(device="cuda")  # precision auto: bf16 on a GPU
    models = load_models(config, needs_reference=False)
    assert models.precision == "bf16" and models.device.type == "cuda"
    task = build_task(config.task)
    problems = [task.sample_train(random.Random(0)) for _ in range(8)]
    sequences, _ = sample_sequences(config, models, problems, random.Random(0))
    assert sequences.input_ids.device.type == "cuda"
    with runtime.autocast(models.precision, models.device):
        batch = score_rollout(models, frozenset({"old_logprobs"}), sequences, problems, task.reward)
        models.student.train()
        policy = completion_logits(models.student, sequences.input_ids, sequences.attention_mask, sequences.completion_mask)
        ratio = torch.exp(policy.token_logprobs(batch.target_ids) - batch.old_logprobs)
    assert torch.equal(ratio, torch.ones_like(ratio))


def test_group_advantages_stay_on_the_gpu():
    """GRPO and RLAD on a GPU: the group sums are built on the rewards' device (they were on the CPU, a crash)."""
    from distillrl.objectives.policy_gradient import group_advantages

    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0], device="cuda")
    advantages = group_advantages(rewards, torch.tensor([0, 0, 0, 1, 1, 1], device="cuda"))
    assert advantages.device.type == "cuda"
    torch.testing.assert_close(advantages.cpu(), torch.tensor([2 / 3 / 0.57735, -1 / 3 / 0.57735, -1 / 3 / 0.57735,
                                                               0.0, 0.0, 0.0]), atol=1e-4, rtol=0)  # fmt: skip
