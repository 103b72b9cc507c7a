"""User-style models (tests/user_models.py: byte-level BPE with a ChatML template, several EOS ids, tiny Qwen3 and
Llama decoders): vocabularies compared by content, padded heads, answers and rewards, bf16, LoRA and export,
sampling truncation, eval options and wandb."""

from __future__ import annotations

import json
import math
import random
import re
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner
from user_models import CORPUS, bpe_tokenizer, save_model, save_user_model, user_model

from distillrl.cli import app
from distillrl.config import TaskConfig, TrainConfig
from distillrl.core.errors import UserError
from distillrl.core.files import current_umask
from distillrl.models.export import export_model
from distillrl.models.loading import ModelLoadError, load_causal_lm, load_tokenizer
from distillrl.models.vocabulary import check_same_vocabulary, vocabulary_difference
from distillrl.report.metrics import read_metrics
from distillrl.rollout.hf_generate import generate
from distillrl.rollout.sampling import Truncation, sample_from_logits, truncate_logits
from distillrl.rollout.static_engine import StaticCacheEngine
from distillrl.run import runtime
from distillrl.run.trainer import train
from distillrl.scoring.forward import completion_logits, output_head
from distillrl.tasks import build_task
from distillrl.tasks.base import Problem, exact_match_reward
from distillrl.tasks.rewards import AnswerVerifier, DataWarning, RewardError

PROMPTS = ["What is 12 plus 30?", "What is the capital of France?", "Half of seven is?", "Simplify x+1.",
           "Compute 7 times 6.", "Let us think step by step.", "Numbers: 0 1 2 3", "The quick brown fox"]  # fmt: skip
ANSWERS = ["42", "Paris", "3.5", "x+1", "\\boxed{42}", "step", "3", "fox"]


def other_merges(path: Path) -> str:
    """A copy of the checkpoint at `path` whose tokenizer has the same tokens, ids and size but its merges in
    reverse order: the same vocabulary list, another tokenization."""
    other = path.parent / f"{path.name}-other-merges"
    shutil.copytree(path, other)
    state = json.loads((other / "tokenizer.json").read_text())
    state["model"]["merges"] = state["model"]["merges"][::-1]
    (other / "tokenizer.json").write_text(json.dumps(state))
    return str(other)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> dict[str, str]:
    """A Qwen3 student, a larger Llama teacher padded by 64 rows (same tokenizer), its copy with other merges, a
    prompt file with answers."""
    root = tmp_path_factory.mktemp("user-models")
    teacher, tokenizer = user_model("llama", hidden=96, seed=2, padded_rows=64)
    with torch.no_grad():
        teacher.get_output_embeddings().weight.mul_(8)  # a confident teacher: a KL worth closing
    teacher.save_pretrained(root / "teacher")
    tokenizer.save_pretrained(root / "teacher")
    paths = {"student": save_user_model(root / "student", "qwen3", seed=1), "teacher": str(root / "teacher")}
    paths["other"] = other_merges(Path(paths["teacher"]))
    rows = [{"prompt": p, "answer": a} for p, a in zip(PROMPTS, ANSWERS)]
    (root / "prompts.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    paths["prompts"] = str(root / "prompts.jsonl")
    return paths


def config(models_dir, out: Path, **sections) -> TrainConfig:
    data = {
        "seed": 0, "output_dir": str(out), "device": "cpu", "tensorboard": False,
        "student": {"path": models_dir["student"]}, "teacher": {"path": models_dir["teacher"]},
        "task": {"name": "prompts", "train_path": models_dir["prompts"], "test_path": models_dir["prompts"]},
        "rollout": {"prompts_per_step": 4, "group_size": 2, "max_new_tokens": 12},
        "optim": {"steps": 2, "lr": 3e-3, "warmup_steps": 0, "schedule": "constant"},
        "eval": {"every": 0, "num_prompts": 8, "max_new_tokens": 12},
        "checkpoint": {"every": 0},
    }  # fmt: skip
    for name, values in sections.items():
        data[name] = {**data[name], **values} if isinstance(data.get(name), dict) and values is not None else values
    return TrainConfig.model_validate(data)


# --- vocabularies --------------------------------------------------------------------------------------------------


def test_tokenizers_are_compared_by_content_not_size(models_dir):
    student, teacher, other = (load_tokenizer(models_dir[k]) for k in ("student", "teacher", "other"))
    assert len(other) == len(student) and other.get_vocab() == student.get_vocab()  # same size, same token list
    assert vocabulary_difference(teacher, student, "teacher.path") is None
    assert "other merges: merge 0 is" in vocabulary_difference(other, student, "teacher.path")
    assert other("then")["input_ids"] != student("then")["input_ids"]  # t+he+n vs th+en
    another_corpus = bpe_tokenizer(corpus=CORPUS[::-1])
    assert len(another_corpus) == len(student)
    difference = vocabulary_difference(another_corpus, student, "t")
    assert difference == "id 259 is 'eh' in t and 'he' in the student (320 vs 320 tokens)"
    check_same_vocabulary(models_dir["student"], models_dir["teacher"], "teacher.path")  # padded: allowed
    with pytest.raises(ModelLoadError, match="teacher.path .* other merges"):
        check_same_vocabulary(models_dir["student"], models_dir["other"], "teacher.path")


def base_tokenizer(pad: bool = True):
    """The user tokenizer as a base model has it: the same ids, EOS `<|endoftext|>` (the instruct one's is
    `<|im_end|>`), optionally no pad token."""
    tokenizer = bpe_tokenizer()
    tokenizer.eos_token = "<|endoftext|>"
    if not pad:
        tokenizer.pad_token = None
    return tokenizer


def edited_tokenizer(edit) -> object:
    """The user tokenizer with `edit(state)` applied to its tokenizer.json."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    state = json.loads(bpe_tokenizer().backend_tokenizer.to_str())
    edit(state)
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(state)), eos_token="<|im_end|>")


def swap_a_and_b(state):
    vocab = state["model"]["vocab"]
    vocab["a"], vocab["b"] = vocab["b"], vocab["a"]


def another_first_merge(state):
    state["model"]["merges"] = state["model"]["merges"][::-1]


def lower_case(state):
    state["normalizer"] = {"type": "Lowercase"}


def added_in_another_order(tokens):
    tokenizer = bpe_tokenizer()
    tokenizer.add_tokens(tokens)
    return tokenizer


def test_which_token_is_eos_or_pad_is_not_a_vocabulary_difference():
    instruct = bpe_tokenizer()
    for student in (base_tokenizer(), base_tokenizer(pad=False)):
        assert student.eos_token == "<|endoftext|>" and instruct.eos_token == "<|im_end|>"
        assert vocabulary_difference(instruct, student, "teacher.path") is None
    no_pad = bpe_tokenizer()
    no_pad.pad_token = None
    assert vocabulary_difference(instruct, no_pad, "teacher.path") is None


@pytest.mark.parametrize("teacher, student, message", [
    (lambda: edited_tokenizer(swap_a_and_b), bpe_tokenizer, "id 67 is 'b' in teacher.path and 'a' in the student"),
    (lambda: edited_tokenizer(another_first_merge), bpe_tokenizer,
     "other merges: merge 0 is 'a z' in teacher.path and 'h e' in the student"),
    (lambda: added_in_another_order(["<tool>", "<think>"]), lambda: added_in_another_order(["<think>", "<tool>"]),
     "id 320 is '<tool>' in teacher.path and '<think>' in the student"),
    (lambda: added_in_another_order(["<tool>"]), bpe_tokenizer, "id 320 is '<tool>' in teacher.path and no token in"),
    (lambda: edited_tokenizer(lower_case), bpe_tokenizer, "another normalizer \\(Lowercase in teacher.path, none in"),
])  # fmt: skip
def test_a_real_tokenizer_difference_is_refused_naming_the_token(teacher, student, message):
    assert re.search(message, vocabulary_difference(teacher(), student(), "teacher.path"))


def test_a_base_student_and_an_instruct_teacher_of_one_tokenizer_train(models_dir, tmp_path):
    """Qwen3-8B-Base <- Qwen3-32B: the student stops at `<|endoftext|>` and has no pad token, the teacher stops at
    `<|im_end|>`; the vocabulary check passes and the default objective trains."""
    student = save_model(tmp_path / "base", user_model("qwen3", seed=1)[0], base_tokenizer(pad=False))
    check_same_vocabulary(student, models_dir["teacher"], "teacher.path")
    summary = train(config(models_dir, tmp_path / "run", student={"path": student}, optim={"steps": 1}),
                    show_progress=False)  # fmt: skip
    assert summary["after"]["step"] == 1 and math.isfinite(summary["after"]["eval/reverse_kl"])


@pytest.mark.parametrize("command", ["train", "eval", "inspect"])
def test_a_teacher_with_other_merges_is_refused(models_dir, tmp_path, command):
    if command == "train":
        path = tmp_path / "c.yaml"
        path.write_text(json.dumps(config(models_dir, tmp_path / "run", teacher={"path": models_dir["other"]})
                                   .model_dump(mode="json")))  # fmt: skip
        argv = ["train", str(path)]
    elif command == "eval":
        argv = ["eval", "--model", models_dir["student"], "--task", models_dir["prompts"],
                "--teacher", models_dir["other"]]  # fmt: skip
    else:
        argv = ["inspect", "--student", models_dir["student"], "--teacher", models_dir["other"], "--prompt", "What is"]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert "other merges" in result.stderr and "distillrl: error:" in result.stderr
    assert not (tmp_path / "run").exists()


def test_padding_rows_are_never_sampled_nor_scored(models_dir):
    """The teacher's 64 padding rows get logits far above every token's: no engine samples them, scoring has
    exactly the tokenizer's ids."""
    tokenizer = load_tokenizer(models_dir["teacher"])
    teacher = load_causal_lm(models_dir["teacher"])
    vocab = len(tokenizer)
    with torch.no_grad():
        head = teacher.get_output_embeddings().weight
        head[vocab:] = head[:vocab].abs().max() * 50 * torch.sign(torch.randn(1, head.shape[1]))
    prompts = PROMPTS[:4]
    hf = generate(teacher, tokenizer, prompts, num_samples=4, temperature=1.0, max_new_tokens=10)
    static = StaticCacheEngine(teacher, tokenizer, torch.float32, compile=False).generate(prompts, 4, 1.0, 10)
    for sequences in (hf, static):
        assert sequences.target_ids.max() < vocab
        logits = completion_logits(teacher, sequences.input_ids, sequences.attention_mask, sequences.completion_mask,
                                   vocab_size=vocab)  # fmt: skip
        assert logits.vocab_size == vocab
        assert torch.isfinite(logits.token_logprobs(sequences.target_ids)).all()


def test_a_padded_teacher_trains_the_student(models_dir, tmp_path):
    """OPD (full-vocabulary forward KL) from a teacher with 64 more rows than the student: the KL to it falls."""
    run = config(models_dir, tmp_path / "run", objective={"name": "forward_kl"},
                 optim={"steps": 8, "lr": 1e-2}, rollout={"prompts_per_step": 8, "group_size": 2})  # fmt: skip
    summary = train(run, show_progress=False)
    before, after = summary["before"]["eval/reverse_kl"], summary["after"]["eval/reverse_kl"]
    assert after < 0.7 * before, (before, after)


# --- answers and rewards -------------------------------------------------------------------------------------------

RIGHT_AND_WRONG = [  # answer, a right completion, a wrong one
    ("Paris", "The capital of France.\nParis", "London"),
    ("Paris", "#paris", "#Lyon"),
    ("3.5", "Half of seven is #3.50", "#3.6"),
    ("x+1", "so \\boxed{x + 1}", "\\boxed{x+2}"),
    ("\\boxed{42}", "7 times 6 is \\boxed{42}.", "\\boxed{24}"),
    ("42", "The answer is: 42.", "The answer is: 43."),
    ("2", "#2.00", "#20"),
    ("2.0", "#2", "#2.1"),
]


@pytest.mark.parametrize("answer, right, wrong", RIGHT_AND_WRONG)
def test_answers_score_one_when_right_and_zero_when_wrong(answer, right, wrong):
    problem = Problem("q", answer)
    for verifier in (AnswerVerifier(), AnswerVerifier(answer_match="math")):
        assert (verifier(problem, right), verifier(problem, wrong)) == (1.0, 0.0)


def test_answer_formats_read_their_own_place_and_math_matches_equivalent_forms():
    problem = Problem("q", "42")
    text = "#41 first guess, then \\boxed{42}\n43"
    assert [AnswerVerifier(f)(problem, text) for f in ("auto", "hash", "boxed", "last_line")] == [1.0, 0.0, 1.0, 0.0]
    math = AnswerVerifier(answer_match="math")
    assert math(Problem("q", "1/2"), "\\boxed{0.5}") == 1.0
    assert AnswerVerifier()(Problem("q", "1/2"), "\\boxed{0.5}") == 0.0  # normalized: text or numbers only
    assert math(Problem("q", "x+1"), "#1+x") == 1.0


def test_the_zoo_tasks_keep_their_verifier_and_its_rewards(tmp_path):
    """arith and lists keep exact_match_reward; the generic `hash` verifier gives the same rewards on real zoo
    completions (integers and lists after `#`)."""
    from distillrl.tasks import ArithTask, ListsTask

    model, tokenizer = load_causal_lm("zoo:domain-base"), load_tokenizer("zoo:domain-base")  # knows both tasks
    for name in ("arith", "lists", "mix"):
        assert build_task(TaskConfig(name=name)).reward is exact_match_reward
    torch.manual_seed(0)
    for task in (ArithTask(), ListsTask()):
        problems = task.test_problems(12)
        completions = generate(model, tokenizer, [p.prompt for p in problems], 2, 1.0, 40).completions
        pairs = [(problems[i // 2], c) for i, c in enumerate(completions)]
        old = [exact_match_reward(p, c) for p, c in pairs]
        assert [AnswerVerifier("hash")(p, c) for p, c in pairs] == old and 0 < sum(old) < len(old)


def test_a_numeric_answer_column_is_compared_by_value_with_a_warning(tmp_path):
    import pyarrow
    import pyarrow.parquet

    path = tmp_path / "p.parquet"
    pyarrow.parquet.write_table(pyarrow.table({"prompt": ["1+1=", "2+2="], "answer": [2.0, 4.0]}), path)
    task = build_task(TaskConfig(name="prompts", train_path=str(path), test_path=str(path)))
    problem = task.test_problems(1)[0]
    assert problem.answer == "2.0" and task.reward(problem, "#2") == 1.0
    from distillrl.tasks.rewards import check_task_answers

    with pytest.warns(DataWarning, match=r"p.parquet: row 0: field `answer` is a number \(2 rows\)"):
        check_task_answers(task, bpe_tokenizer())


def test_a_file_of_answers_no_extractor_can_match_is_refused_at_load(models_dir, tmp_path):
    from distillrl.tasks.rewards import check_task_answers

    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a", "answer": "two\\nlines"}\n{"prompt": "b", "answer": "x\\ny"}\n')
    task = build_task(TaskConfig(name="prompts", train_path=str(path), answer_format="hash"))
    with pytest.raises(UserError, match=r"p.jsonl:1: task.answer_format 'hash' does not read answer 'two\\nlines'"):
        check_task_answers(task, load_tokenizer(models_dir["student"]))
    with pytest.warns(DataWarning, match="p.jsonl:1: .*none of the 2|2 of 2 answers can never score 1"):
        check_task_answers(task, load_tokenizer(models_dir["student"]), trained=False)  # accuracy only: a warning
    path.write_text('{"prompt": "a", "answer": "7"}\n{"prompt": "b", "answer": "Ünïcode"}\n')  # zoo: no upper case
    task = build_task(TaskConfig(name="prompts", train_path=str(path)))
    with pytest.warns(DataWarning, match="p.jsonl:2: .*1 of 2 answers can never score 1"):
        check_task_answers(task, load_tokenizer("zoo:student-base"))


REWARD_MODULE = '''
def length_reward(prompt, completion, row):
    return float(row["answer"] in completion) + len(prompt) / 1000

not_callable = 3

def two_arguments(prompt, completion):
    return 1.0
'''


def test_a_custom_reward_is_called_with_prompt_completion_and_row(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(REWARD_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    data = tmp_path / "p.jsonl"
    data.write_text('{"prompt": "abcd", "answer": "Paris", "difficulty": 3}\n')
    for spec in ("my_rewards:length_reward", f"{tmp_path / 'my_rewards.py'}:length_reward"):
        task = build_task(TaskConfig(name="prompts", train_path=str(data), reward=spec))
        problem = task.sample_train(random.Random(0))
        assert problem.row["difficulty"] == 3
        assert task.reward(problem, "it is Paris") == pytest.approx(1.004)
        assert task.reward(problem, "it is Rome") == pytest.approx(0.004)
    errors = {"no_such_module:f": "cannot import 'no_such_module'", "my_rewards:missing": "has no 'missing'",
              "my_rewards:not_callable": "is a int, not a function", "my_rewards": "is not `module:function`",
              "my_rewards:two_arguments": "must take \\(prompt, completion, row\\)",
              f"{tmp_path}/none.py:f": "none.py: no such file"}  # fmt: skip
    for spec, message in errors.items():
        with pytest.raises(RewardError, match=f"task.reward: .*{message}"):
            build_task(TaskConfig(name="prompts", train_path=str(data), reward=spec))


def test_groups_with_signal_counts_the_groups_of_unequal_rewards():
    from distillrl.objectives.policy_gradient import group_advantages, groups_with_signal

    rewards, groups = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.5, 0.5]), torch.tensor([4, 4, 7, 7, 9, 9])
    assert groups_with_signal(rewards, groups) == 1  # group 7 only
    assert group_advantages(rewards, groups)[[0, 1, 4, 5]].abs().max() == 0
    assert groups_with_signal(torch.zeros(6), groups) == 0


FLAT_REWARDS = """
def constant(prompt, completion, row):
    return 1.0

def length(prompt, completion, row):
    return float(len(completion))
"""


@pytest.mark.parametrize("reward", ["constant", "length"])
def test_grpo_warns_once_when_every_group_has_equal_rewards(models_dir, tmp_path, capsys, reward):
    """A reward that never varies within a group: advantages, loss and gradient are 0 at every step, and one
    warning line says so; a reward that varies trains without it."""
    (tmp_path / "flat_rewards.py").write_text(FLAT_REWARDS)
    run = config(models_dir, tmp_path / "run", teacher=None, objective={"name": "grpo"}, optim={"steps": 2},
                 task={"reward": f"{tmp_path / 'flat_rewards.py'}:{reward}"})  # fmt: skip
    train(run, show_progress=False)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "every group has equal rewards" in line]
    records = [r for r in read_metrics(tmp_path / "run") if "train/loss" in r]
    if reward == "constant":
        assert len(warnings) == 1 and warnings[0].startswith("warning: step 1: ") and "mean reward 1.000" in warnings[0]
        assert "policy gradient is zero" in warnings[0] and "task.answer_format" in warnings[0]
        assert [(r["train/loss"], r["train/grad_norm"]) for r in records] == [(0.0, 0.0), (0.0, 0.0)]
    else:
        assert warnings == [] and all(r["train/grad_norm"] > 0 for r in records)


# --- precision -----------------------------------------------------------------------------------------------------


def test_bf16_loads_frozen_models_in_bf16_and_the_first_ratio_is_exactly_one(models_dir, tmp_path):
    from distillrl.run.roles import load_models
    from distillrl.run.signals import score_rollout
    from distillrl.run.sources import sample_sequences

    run = config(models_dir, tmp_path / "run", precision="bf16", objective={"name": "gopd"})
    models = load_models(run, needs_reference=True)
    assert {p.dtype for p in models.teacher.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in models.reference.model.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in models.student.parameters()} == {torch.float32}  # fp32 master weights
    task = build_task(run.task)
    problems = [task.sample_train(random.Random(i)) for i in range(4)]
    sequences, _ = sample_sequences(run, models, problems, random.Random(0))
    with runtime.autocast(models.precision, models.device):
        batch = score_rollout(models, frozenset({"old_logprobs", "teacher_logprobs", "reference_logprobs"}),
                              sequences, problems, task.reward)  # fmt: skip
        models.student.train()
        policy = completion_logits(models.student, sequences.input_ids, sequences.attention_mask,
                                   sequences.completion_mask, vocab_size=models.vocab_size)  # fmt: skip
        ratio = torch.exp(policy.token_logprobs(batch.target_ids) - batch.old_logprobs)
    assert torch.equal(ratio, torch.ones_like(ratio))
    assert batch.teacher_logprobs.shape == batch.old_logprobs.shape and torch.isfinite(batch.teacher_logprobs).all()


# --- LoRA and export -----------------------------------------------------------------------------------------------


def test_lora_on_lm_head_trains_loads_elsewhere_and_exports_merged(models_dir, tmp_path, monkeypatch):
    lora = {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj", "lm_head", "embed_tokens"]}
    # a relative student path, as a user in their project directory types it
    monkeypatch.chdir(Path(models_dir["student"]).parent)
    run = config(models_dir, tmp_path / "run", student={"path": "./student", "lora": lora},
                 optim={"steps": 3, "lr": 2e-2})  # fmt: skip
    train(run, show_progress=False)
    adapter = tmp_path / "run" / "final"
    base = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert base == str(Path(models_dir["student"]).resolve())

    elsewhere = tmp_path / "somewhere" / "else"
    shutil.copytree(adapter, elsewhere / "adapter")
    monkeypatch.chdir(elsewhere)
    model = load_causal_lm("adapter")
    head = model.get_output_embeddings()
    assert head.lora_B["default"].weight.abs().max() > 0  # lm_head's adapter was trained (B starts at 0)
    assert model.get_input_embeddings().lora_embedding_B["default"].abs().max() > 0  # and the embedding's
    ids = load_tokenizer("adapter")(PROMPTS[:2], return_tensors="pt", padding=True)
    with torch.no_grad():
        forward = model(**ids).logits
        weight, _ = output_head(model)
        scored = model.get_decoder()(**ids).last_hidden_state @ weight.T  # what completion_logits projects with
        assert torch.allclose(scored, forward, atol=1e-5)  # scoring applies lm_head's LoRA, as forward does
        assert not torch.allclose(weight, head.base_layer.weight)
        with model.disable_adapter():
            assert torch.equal(output_head(model)[0], head.base_layer.weight)

    result = CliRunner().invoke(app, ["export", str(tmp_path / "run"), "--out", str(tmp_path / "merged"), "--merge"])
    assert result.exit_code == 0, result.output
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    assert merged.generation_config.eos_token_id == model.generation_config.eos_token_id
    with torch.no_grad():
        assert (merged(**ids).logits - forward).abs().max() < 1e-5
    refused = CliRunner().invoke(app, ["export", str(tmp_path / "run"), "--out", str(tmp_path / "m2")])
    assert refused.exit_code == 2 and "pass --merge" in refused.stderr


@pytest.mark.parametrize("tied", [True, False])
def test_a_merged_lm_head_adapter_computes_base_plus_adapter_on_a_tied_student(tmp_path, tied):
    """Qwen3-0.6B ties lm_head to embed_tokens: a LoRA on lm_head trains without moving the input embeddings, and
    its merged export is untied (own head, tie_word_embeddings false) with the adapter's logits to 1e-5 (merged
    into the shared matrix they were off by about 3.5 here, the embeddings by 0.2)."""
    from distillrl.config import LoraSettings
    from distillrl.models.student import load_student

    model, tokenizer = user_model("qwen3", seed=3)
    model.config.tie_word_embeddings = tied
    model = AutoModelForCausalLM.from_config(model.config)
    base = save_model(tmp_path / "base", model, tokenizer)
    embeddings = model.get_input_embeddings().weight.detach().clone()
    lora = LoraSettings(r=4, alpha=8, target_modules=["q_proj", "lm_head"])
    student = load_student(base, lora)
    torch.manual_seed(0)
    for name, parameter in student.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.1)
    ids = tokenizer(PROMPTS[:3], return_tensors="pt", padding=True)
    optimizer = torch.optim.SGD([p for p in student.parameters() if p.requires_grad], lr=1.0)
    student(**ids, labels=ids["input_ids"]).loss.backward()
    optimizer.step()  # a training step: the head's adapter moves, the (tied) input embeddings do not
    assert torch.equal(student.get_input_embeddings().weight, embeddings)
    student.eval()
    with torch.no_grad():
        adapted = student(**ids).logits
    student.save_pretrained(tmp_path / "adapter")
    export_model(str(tmp_path / "adapter"), tmp_path / "merged", merge=True)
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert json.loads((tmp_path / "merged" / "config.json").read_text())["tie_word_embeddings"] is False
    assert torch.equal(merged.get_input_embeddings().weight, embeddings)
    with torch.no_grad():
        assert (merged(**ids).logits - adapted).abs().max() < 1e-5
    modes = {oct(path.stat().st_mode & 0o777) for path in (tmp_path / "merged").iterdir()}
    assert modes == {oct(0o666 & ~current_umask())}  # readable by others as the umask allows, not 0600


# --- generation settings -------------------------------------------------------------------------------------------


def brute_force_truncated(probs: list[float], top_k: int, top_p: float, min_p: float) -> list[float]:
    """The truncated distribution, token by token: top-k, then top-p (smallest most-probable set with mass >= p),
    then min-p on what is left, renormalised."""
    order = sorted(range(len(probs)), key=lambda v: -probs[v])
    kept = set(order[:top_k] if top_k else order)
    mass, nucleus = 0.0, set()
    total = sum(probs[v] for v in kept)
    for v in order:
        if v in kept and mass < top_p:
            nucleus.add(v)
            mass += probs[v] / total
    left = {v: probs[v] for v in nucleus}
    peak = max(left.values()) / sum(left.values())
    left = {v: p for v, p in left.items() if p / sum(left.values()) >= min_p * peak}
    return [left.get(v, 0.0) / sum(left.values()) for v in range(len(probs))]


@pytest.mark.parametrize("top_k, top_p, min_p", [(3, 1.0, 0.0), (0, 0.8, 0.0), (0, 1.0, 0.2), (5, 0.9, 0.1),
                                                 (0, 0.3, 0.0), (1, 1.0, 0.0)])  # fmt: skip
def test_truncation_matches_a_brute_force_distribution_and_the_sampler_follows_it(top_k, top_p, min_p):
    generator = torch.Generator().manual_seed(top_k + int(top_p * 10) + int(min_p * 10))
    logits = torch.randn(6, 12, generator=generator) * 2
    truncation = Truncation(top_k, top_p, min_p)
    got = torch.softmax(truncate_logits(logits, truncation), -1)
    expected = torch.tensor([brute_force_truncated(row.softmax(-1).tolist(), top_k, top_p, min_p) for row in logits])
    assert torch.allclose(got, expected, atol=1e-6)
    torch.manual_seed(0)
    draws = sample_from_logits(logits.repeat(4000, 1), 1.0, truncation).view(4000, 6)
    frequency = torch.nn.functional.one_hot(draws, 12).float().mean(0)
    assert (frequency[expected == 0] == 0).all()
    assert (frequency - expected).abs().max() < 0.035


def test_rollout_truncation_reaches_both_engines(models_dir, tmp_path):
    """top_k = 1 at temperature 1 samples the argmax: both engines then give the greedy completions."""
    model, tokenizer = load_causal_lm(models_dir["student"]), load_tokenizer(models_dir["student"])
    greedy = generate(model, tokenizer, PROMPTS, 1, 0.0, 10)
    top1 = Truncation(top_k=1)
    torch.manual_seed(0)
    assert generate(model, tokenizer, PROMPTS, 1, 1.0, 10, truncation=top1).completions == greedy.completions
    static = StaticCacheEngine(model, tokenizer, torch.float32, compile=False)
    assert static.generate(PROMPTS, 1, 1.0, 10, top1).completions == greedy.completions
    assert static.generate(PROMPTS, 1, 1.0, 10).completions != greedy.completions  # without it: samples
    run = config(models_dir, tmp_path / "run", rollout={"top_k": 1, "top_p": 0.5, "min_p": 0.1})
    assert run.rollout.top_k == 1
    with pytest.raises(Exception, match="top_p"):
        config(models_dir, tmp_path / "run", rollout={"top_p": 0})


def test_eval_and_inspect_take_a_padded_teacher_and_eval_its_options(models_dir):
    result = CliRunner().invoke(app, ["eval", "--model", models_dir["student"], "--task", models_dir["prompts"],
                                      "--teacher", models_dir["teacher"], "--n", "4", "--max-new-tokens", "6",
                                      "--precision", "bf16", "--batch-size", "2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "eval/reverse_kl" in result.output and "eval/response_length" in result.output
    assert "eval/response_length │ 6.0000" in result.output or "6.0000" in result.output
    page = Path(models_dir["prompts"]).parent / "forking.html"
    inspected = CliRunner().invoke(app, ["inspect", "--student", models_dir["student"], "--teacher",
                                         models_dir["teacher"], "--prompt", "What is", "--samples", "2",
                                         "--max-new-tokens", "6", "--out", str(page)])  # fmt: skip
    assert inspected.exit_code == 0 and page.read_text().count('class="sample"') == 2, inspected.output
    bad = CliRunner().invoke(app, ["eval", "--model", models_dir["student"], "--precision", "fp16"])
    assert bad.exit_code == 2 and "--precision fp16" in bad.stderr


def test_wandb_logs_offline(models_dir, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = config(models_dir, tmp_path / "run", wandb={"project": "test", "mode": "offline"},
                 optim={"steps": 2})  # fmt: skip
    train(run, show_progress=False)
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    assert (tmp_path / "run" / "wandb-id.txt").read_text() in runs[0].name
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [0, 1, 2]
