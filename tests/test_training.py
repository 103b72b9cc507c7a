"""The loop on the shipped zoo: learning, exact resume, checkpoints in HF and PEFT layout."""

import json
import math
import random
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from distillrl.models.loading import ModelLoadError, load_causal_lm, load_tokenizer, resolve_model_path
from distillrl.report.metrics import read_metrics
from distillrl.rollout.hf_generate import generate
from distillrl.run.checkpoint import latest_checkpoint, list_checkpoints, save_checkpoint, save_final_model
from distillrl.run.evaluate import evaluate
from distillrl.run.trainer import lr_multiplier, train
from distillrl.tasks import ArithTask

DISTILLATION_METHODS = {
    "opd_sampled": ({"name": "reverse_kl", "fidelity": "sampled"}, {}),
    "opd_topk": ({"name": "reverse_kl", "fidelity": "topk", "top_k": 8}, {}),
    "opd_full": ({"name": "reverse_kl", "fidelity": "full"}, {}),
    "exopd": ({"name": "gopd", "reward_scale": 1.25}, {}),
    "gkd_mixed": ({"name": "jsd", "beta": 0.5}, {"source": "mixed", "lmbda": 0.5}),
    "skd": ({"name": "forward_kl"}, {"source": "speculative", "speculative_top_k": 5}),
}


@pytest.mark.parametrize("method", list(DISTILLATION_METHODS))
def test_a_few_distillation_steps_lower_the_reverse_kl(tiny_config, method):
    objective, rollout = DISTILLATION_METHODS[method]
    config = tiny_config(
        objective=objective,
        rollout=rollout,
        optim={"steps": 12, "lr": 3e-3},
        eval={"every": 0, "num_prompts": 48},
        checkpoint={"every": 0},
    )
    summary = train(config, show_progress=False)
    before, after = summary["before"]["eval/reverse_kl"], summary["after"]["eval/reverse_kl"]
    assert after < 0.8 * before, (before, after)
    train_kl = [r["train/reverse_kl"] for r in read_metrics(config.output_dir) if "train/reverse_kl" in r]
    if train_kl:  # the sampled estimators log the KL on their own samples as they go
        assert sum(train_kl[-3:]) < sum(train_kl[:3])


class Killed(Exception):
    pass


def test_killed_and_resumed_run_matches_an_uninterrupted_run(tiny_config, tmp_path):
    straight = tiny_config(output_dir=str(tmp_path / "straight"))
    train(straight, show_progress=False)

    interrupted = tiny_config(output_dir=str(tmp_path / "interrupted"))

    def kill_at_step_5(step, record):
        if step == 5:
            raise Killed

    with pytest.raises(Killed):
        train(interrupted, on_step=kill_at_step_5, show_progress=False)
    assert int(latest_checkpoint(interrupted.output_dir).name.split("_")[1]) == 4
    train(interrupted, resume=True, show_progress=False)

    def comparable(run_dir):
        return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in read_metrics(run_dir)]

    assert comparable(interrupted.output_dir) == comparable(straight.output_dir)
    assert [r["step"] for r in read_metrics(interrupted.output_dir)] == list(range(7))
    straight_model = load_causal_lm(str(latest_checkpoint(straight.output_dir) / "model"))
    resumed_model = load_causal_lm(str(latest_checkpoint(interrupted.output_dir) / "model"))
    for (name, a), (_, b) in zip(straight_model.state_dict().items(), resumed_model.state_dict().items()):
        assert torch.equal(a, b), name
    assert len(list_checkpoints(interrupted.output_dir)) == 2  # keep: 2


def test_model_saved_with_save_pretrained_trains_saves_and_reloads(tiny_config, tmp_path):
    source = tmp_path / "my-student"
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path("zoo:student-base"))
    model.save_pretrained(source)
    load_tokenizer("zoo:student-base").save_pretrained(source)
    config = tiny_config(student={"path": str(source)}, optim={"steps": 2}, eval={"every": 0})
    summary = train(config, show_progress=False)
    saved = Path(config.output_dir) / "final"
    assert (saved / "model.safetensors").exists() and (saved / "tokenizer_config.json").exists()
    reloaded = AutoModelForCausalLM.from_pretrained(saved)
    changed = [not torch.equal(a, b) for a, b in zip(model.state_dict().values(), reloaded.state_dict().values())]
    assert any(changed)
    _assert_reload_reproduces_final_eval(config.output_dir, config, summary)  # the run directory: its final/


def test_lora_student_trains_saves_adapter_and_reloads(tiny_config):
    config = tiny_config(student={"path": "zoo:student-base", "lora": {"r": 4, "alpha": 8}}, optim={"steps": 2}, eval={"every": 0})
    summary = train(config, show_progress=False)
    saved = Path(config.output_dir) / "final"
    adapter = json.loads((saved / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "zoo:student-base" and adapter["r"] == 4
    assert not (saved / "model.safetensors").exists()  # only the adapter is written
    reloaded = load_causal_lm(str(saved))
    assert hasattr(reloaded, "peft_config")
    _assert_reload_reproduces_final_eval(config.output_dir, config, summary)


def test_a_run_directory_loads_as_its_final_model_and_an_unfinished_one_names_its_checkpoint(tmp_path):
    run = tmp_path / "run"
    model, tokenizer = load_causal_lm("zoo:student-base"), load_tokenizer("zoo:student-base")
    save_checkpoint(run, 1, model, tokenizer, {}, keep=1)
    with pytest.raises(ModelLoadError, match=r"no final/ model yet .*checkpoints/step_000001/model"):
        resolve_model_path(str(run))
    save_final_model(run, model, tokenizer)
    save_final_model(run, model, tokenizer)  # a second save replaces the first whole
    assert resolve_model_path(str(run)) == str(run / "final")
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "final"]  # no temporary folder left


def _assert_reload_reproduces_final_eval(saved, config, summary):
    task = ArithTask(config.task.difficulty)
    metrics = evaluate(load_causal_lm(str(saved)), load_tokenizer(str(saved)), task,
                       task.test_problems(config.eval.num_prompts), max_new_tokens=config.eval.max_new_tokens)  # fmt: skip
    for name in ("eval/accuracy_greedy", "eval/accuracy_sampled", "eval/response_length"):
        assert metrics[name] == pytest.approx(summary["after"][name], abs=1e-6), name


def test_generated_sequences_are_masked_at_eos():
    model, tokenizer = load_causal_lm("zoo:teacher"), load_tokenizer("zoo:teacher")
    torch.manual_seed(0)
    sequences = generate(model, tokenizer, ["1+2=", "(3*4)-5="], num_samples=3, temperature=1.0, max_new_tokens=40)
    assert sequences.prompt_index.tolist() == [0, 0, 0, 1, 1, 1]
    for row in range(len(sequences)):
        completion = sequences.input_ids[row][sequences.completion_mask[row].bool()]
        eos = (completion == tokenizer.eos_token_id).nonzero()
        if len(eos):  # the completion ends at its first EOS, which is included
            assert eos[0].item() == len(completion) - 1
        assert tokenizer.decode(completion, skip_special_tokens=True) == sequences.completions[row]
    assert sequences.target_ids.numel() == sequences.completion_mask.sum()


def test_bf16_autocast_trains(tiny_config):
    config = tiny_config(precision="bf16", optim={"steps": 3}, eval={"every": 0}, checkpoint={"every": 0})
    summary = train(config, show_progress=False)
    losses = [r["train/loss"] for r in read_metrics(config.output_dir) if "train/loss" in r]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
    assert 0 <= summary["after"]["eval/accuracy_greedy"] <= 1


def test_lr_schedule_warms_up_then_decays():
    assert lr_multiplier(0, 10, 110, "cosine", 0.0) == pytest.approx(0.1)
    assert lr_multiplier(9, 10, 110, "cosine", 0.0) == pytest.approx(1.0)
    assert lr_multiplier(60, 10, 110, "cosine", 0.0) == pytest.approx(0.5)
    assert lr_multiplier(60, 10, 110, "linear", 0.2) == pytest.approx(0.6)
    assert lr_multiplier(110, 10, 110, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_multiplier(50, 0, 110, "constant", 0.0) == 1.0


class RecordingOptimizer:
    """Stands in for AdamW: records the accumulated gradient at each step instead of moving the weights."""

    def __init__(self, parameters):
        self.parameters, self.gradients = list(parameters), []

    def step(self):
        self.gradients.append([p.grad.clone() for p in self.parameters])

    def zero_grad(self, set_to_none=True):
        for p in self.parameters:
            p.grad = None


@pytest.mark.parametrize(
    "objective",
    [{"name": "reverse_kl", "fidelity": f} for f in ("sampled", "topk", "full")] + [{"name": "grpo", "kl_coef": 0.1}],
)
def test_gradient_accumulation_matches_one_big_batch(tiny_config, objective):
    """Micro-batches normalised by the step's total token count give the full batch's gradient."""
    from distillrl.objectives import build_objective
    from distillrl.run.signals import score_rollout
    from distillrl.run.sources import sample_sequences
    from distillrl.run.trainer import load_models, update_policy
    from distillrl.tasks import build_task

    config = tiny_config(objective=objective, rollout={"group_size": 4})
    built = build_objective(config.objective)
    models = load_models(config, "reference_logprobs" in built.needs)
    task = build_task(config.task)
    torch.manual_seed(0)
    rng = random.Random(0)
    problems = [task.sample_train(rng) for _ in range(6)]
    sequences, _ = sample_sequences(config, models, problems, rng)
    signals = score_rollout(models, built.needs, sequences, problems, task.reward)
    assert signals.rewards is not None and 0 < signals.rewards.mean() < 1
    runs = []
    for grad_accum in (1, 3):
        config.optim.grad_accum = grad_accum
        optimizer = RecordingOptimizer(models.student.parameters())
        metrics = update_policy(config, models, built, sequences, signals, optimizer, optimizer.parameters)
        runs.append((optimizer.gradients[0], metrics["loss"]))
    for one, three in zip(runs[0][0], runs[1][0]):
        torch.testing.assert_close(one, three, atol=1e-5, rtol=1e-4)
    assert runs[0][1] == pytest.approx(runs[1][1], rel=1e-5)


def test_eval_at_adds_evaluations_on_the_validation_split(tiny_config):
    """Evaluations before, at `eval.every`, at each `eval.at` step and after; `split: validation` scores a fixed set of
    training-split prompts, not the held-out ones (other accuracy, same decoding)."""
    from distillrl.report.metrics import read_metrics

    config = tiny_config(optim={"steps": 5}, eval={"every": 4, "at": [1, 2], "split": "validation"}, checkpoint={"every": 0})
    summary = train(config, show_progress=False)
    evals = [r["step"] for r in read_metrics(Path(config.output_dir)) if "eval/accuracy_greedy" in r]
    assert evals == [0, 1, 2, 4, 5]
    test = tiny_config(optim={"steps": 1}, eval={"every": 0}, checkpoint={"every": 0}, output_dir=config.output_dir + "-test")
    assert train(test, show_progress=False)["before"] != summary["before"]  # the same model on 16 other prompts


def test_a_run_reads_each_models_tokenizer_once(tiny_config, monkeypatch):
    """The checks before loading resolve the student's and the teacher's tokenizers once and hand them on to the
    run (before the Preflight, the student's was read 3 times and the teacher's twice)."""
    from transformers import AutoTokenizer

    read = []
    real = AutoTokenizer.from_pretrained.__func__
    monkeypatch.setattr(AutoTokenizer, "from_pretrained",
                        classmethod(lambda cls, path, *a, **k: read.append(Path(path).name) or real(cls, path, *a, **k)))
    train(tiny_config(optim={"steps": 1}, eval={"every": 0, "num_prompts": 4}, checkpoint={"every": 0}),
          show_progress=False)  # fmt: skip
    assert sorted(read) == ["student-base", "teacher"]
