"""User-style models and data (tests/user_models.py): chat templates, BOS, stopping, messages files, datasets
directories, lengths. Each test builds its byte-level BPE models inside the test."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from transformers import GenerationConfig
from user_models import CHATML_TEMPLATE, CORPUS, bpe_tokenizer, save_user_model, user_model

from distillrl.config import TaskConfig, TrainConfig
from distillrl.core.errors import UserError
from distillrl.models.loading import load_causal_lm, load_tokenizer
from distillrl.objectives import build_objective
from distillrl.rollout.engines import HFEngine
from distillrl.rollout.static_engine import StaticCacheEngine
from distillrl.run.trainer import check_before_loading, train
from distillrl.tasks import build_task
from distillrl.tasks.base import Problem
from distillrl.tasks.rewards import AnswerVerifier
from distillrl.text.chat import (
    ChatFormat,
    TemplateMismatch,
    check_end_of_turn,
    end_of_turn_id,
    prompt_text,
    stop_token_ids,
)
from distillrl.text.sequences import encode_pairs, encode_prompts, join_prompts_and_completions

QWEN3_THINKING = (  # the part of Qwen3's template that enable_thinking switches
    CHATML_TEMPLATE.replace("<|im_start|>assistant\n{% endif %}", "<|im_start|>assistant\n{% if enable_thinking is "
                            "defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}")
)


def ids_of(tokenizer, *tokens: str) -> list[int]:
    return [tokenizer.convert_tokens_to_ids(token) for token in tokens]


def test_bos_is_kept_once_whether_or_not_the_template_writes_it():
    adds_bos = bpe_tokenizer(bos=True)
    bos = adds_bos.bos_token_id
    for template in (CHATML_TEMPLATE, "{{ bos_token }}" + CHATML_TEMPLATE, None):
        adds_bos.chat_template = template
        ids, mask = encode_prompts(adds_bos, ["What is 12 plus 30?", "Half of seven?"])
        for row, row_mask in zip(ids, mask):
            kept = row[row_mask.bool()].tolist()
            assert kept[0] == bos and bos not in kept[1:], (template, adds_bos.decode(kept))
    plain = bpe_tokenizer()
    ids, _ = encode_prompts(plain, ["What is 12 plus 30?"])
    assert plain.decode(ids[0]).startswith("<|im_start|>user\nWhat is 12")


def test_messages_and_template_kwargs_render_through_the_students_template():
    tokenizer = bpe_tokenizer()
    tokenizer.chat_template = QWEN3_THINKING
    conversation = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is 7 times 6?"},
                    {"role": "assistant", "content": "#42"}, {"role": "user", "content": "And half of seven?"}]
    text = prompt_text(tokenizer, conversation, ChatFormat({"enable_thinking": False}))
    assert text == ("<|im_start|>system\nAnswer briefly.<|im_end|>\n<|im_start|>user\nWhat is 7 times 6?<|im_end|>\n"
                    "<|im_start|>assistant\n#42<|im_end|>\n<|im_start|>user\nAnd half of seven?<|im_end|>\n"
                    "<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert not prompt_text(tokenizer, conversation).endswith("</think>\n\n")
    config = TrainConfig.model_validate({"task": {"chat_template_kwargs": {"enable_thinking": False}}})
    from distillrl.run.roles import chat_format

    assert chat_format(config).template_kwargs == {"enable_thinking": False}


def test_dataset_completions_end_with_the_end_of_turn_token_not_a_textual_eos():
    tokenizer = bpe_tokenizer()
    tokenizer.eos_token = "<|endoftext|>"  # a base model's tokenizer: EOS is not the chat's end of turn
    im_end, = ids_of(tokenizer, "<|im_end|>")
    assert end_of_turn_id(tokenizer) == im_end and im_end in stop_token_ids(tokenizer)
    sequences = encode_pairs(tokenizer, ["What is 12 plus 30?", [{"role": "user", "content": "Half of seven?"}]],
                             ["#42", "3.5"])  # fmt: skip
    for row in range(2):
        completion = sequences.input_ids[row][sequences.completion_mask[row].bool()].tolist()
        assert completion[-1] == im_end and tokenizer.eos_token_id not in completion  # "\n" after it: masked
    assert sequences.completions == ["#42", "3.5"]


def test_tokens_after_a_stop_id_or_a_stop_string_are_masked_and_unseen_by_the_reward():
    tokenizer = bpe_tokenizer()
    tokenizer.eos_token = "<|endoftext|>"
    answer = tokenizer("The answer is 42. Paris is the capital", add_special_tokens=False)["input_ids"]
    im_end, = ids_of(tokenizer, "<|im_end|>")
    rows = torch.tensor([answer[:3] + [im_end] + answer[3:], answer + [tokenizer.pad_token_id]])
    prompts = torch.ones(2, 1, dtype=torch.long)
    plain = join_prompts_and_completions(tokenizer, prompts, prompts, rows, torch.arange(2), stop_token_ids(tokenizer))
    assert plain.completion_mask[0, 1:].tolist() == [1, 1, 1, 1] + [0] * (len(answer) - 3)
    assert plain.completion_mask[1, 1:].tolist() == [1] * (len(answer) + 1)  # through the EOS, as ever
    assert plain.completions[0] == tokenizer.decode(answer[:3]) and plain.completions[1].endswith("the capital")
    cut = join_prompts_and_completions(tokenizer, prompts, prompts, rows, torch.arange(2), stop_token_ids(tokenizer),
                                       ("42.",))  # fmt: skip
    assert cut.completions[1] == "The answer is "  # the reward reads up to the stop string, not including it
    kept = cut.input_ids[1, 1:][cut.completion_mask[1, 1:].bool()].tolist()
    assert "42." in tokenizer.decode(kept) and "42." not in tokenizer.decode(kept[:-1])  # trained through it
    assert (cut.input_ids[1, 1 + len(kept):] == tokenizer.pad_token_id).all()


def test_the_reward_reads_a_completion_without_its_stop_string():
    """A stop string right after the answer (` END`, `</answer>`) is not part of the answer the verifier reads."""
    tokenizer = bpe_tokenizer()
    prompts = torch.ones(2, 1, dtype=torch.long)
    rows = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in ("#42 END the rest", "<answer>42</answer>")]
    width = max(map(len, rows))
    ids = torch.tensor([row + [tokenizer.pad_token_id] * (width - len(row)) for row in rows])
    stops = (" END", "</answer>")
    sequences = join_prompts_and_completions(tokenizer, prompts, prompts, ids, torch.arange(2),
                                             stop_token_ids(tokenizer), stops)  # fmt: skip
    assert sequences.completions == ["#42", "<answer>42"]
    problem = Problem("What is 6 times 7?", "42")
    assert [AnswerVerifier(form)(problem, text) for form, text in zip(("hash", "tag"), sequences.completions)] == [1.0, 1.0]
    assert sequences.completion_lengths.tolist() == [len(tokenizer(t, add_special_tokens=False)["input_ids"])
                                                     for t in ("#42 END", "<answer>42</answer>")]  # fmt: skip


def test_hf_and_static_engines_stop_at_the_same_stop_string():
    model, tokenizer = user_model(seed=3)
    free = HFEngine(model, tokenizer).generate(["What is 12 plus 30?"], 1, 0.0, 12)
    tokens = free.input_ids[0, free.prompt_width :][free.completion_mask[0, free.prompt_width :].bool()].tolist()
    assert len(tokens) >= 4, "the random model should talk for a few tokens"
    stop = tokenizer.decode(tokens[2:4])
    chat = ChatFormat(stop_strings=(stop,))
    results = [engine.generate(["What is 12 plus 30?"], 1, 0.0, 12) for engine in
               (HFEngine(model, tokenizer, chat=chat), StaticCacheEngine(model, tokenizer, torch.float32, False, chat=chat))]
    for sequences in results:
        assert stop not in sequences.completions[0] and sequences.completion_lengths[0] <= 4  # the reward's text
    kept = [s.input_ids[0, s.prompt_width :][s.completion_mask[0, s.prompt_width :].bool()].tolist() for s in results]
    assert kept[0] == kept[1] == tokens[: len(kept[0])]
    assert results[0].input_ids.shape[1] - results[0].prompt_width == len(kept[0])  # generate stopped there


QUESTIONS_OF_42 = ["What is 40 plus 2?", "What is 6 times 7?", "What is 50 minus 8?", "What is 84 over 2?",
                   "What is 21 plus 21?", "What is 30 plus 12?", "What is 7 times 6?", "What is 45 minus 3?"]


def messages_file(path) -> str:
    """A chat-messages jsonl: a system turn (or an earlier exchange), the question, the assistant's answer."""
    lines = []
    for index, question in enumerate(QUESTIONS_OF_42):
        head = ([{"role": "system", "content": "Answer with #n."}] if index % 2 else
                [{"role": "user", "content": "What is 1 plus 1?"}, {"role": "assistant", "content": "#2"}])  # fmt: skip
        turns = head + [{"role": "user", "content": question}, {"role": "assistant", "content": "#42"}]
        lines.append(json.dumps({"messages": turns, "answer": "42"}))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_a_messages_file_trains_and_the_student_stops_at_its_end_of_turn(tmp_path, monkeypatch):
    """SFT on a chat-messages file moves the held-out accuracy; the learnt <|im_end|> ends every rollout (the
    tokenizer's EOS and the generation config name only <|endoftext|>), nothing after it is trained on."""
    tokenizer = bpe_tokenizer()
    tokenizer.eos_token = "<|endoftext|>"
    student = save_user_model(tmp_path / "student", tokenizer=tokenizer, hidden=64)
    model = load_causal_lm(student)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(student)
    data = messages_file(tmp_path / "chat.jsonl")
    config = TrainConfig.model_validate({
        "output_dir": str(tmp_path / "run"), "student": {"path": student}, "teacher": None, "tensorboard": False,
        "task": {"name": "prompts", "train_path": data, "test_path": data},
        "rollout": {"source": "dataset", "prompts_per_step": 8, "group_size": 1, "max_new_tokens": 16},
        "objective": {"name": "sft"}, "optim": {"steps": 20, "lr": 1e-2, "warmup_steps": 0, "schedule": "constant"},
        "eval": {"every": 0, "num_prompts": 8, "max_new_tokens": 16}, "checkpoint": {"every": 0},
    })  # fmt: skip
    summary = train(config, show_progress=False)
    before, after = summary["before"]["eval/accuracy_greedy"], summary["after"]["eval/accuracy_greedy"]
    assert before == 0.0 and after == 1.0, (before, after)
    assert summary["after"]["eval/response_length"] <= 4  # "#42" and <|im_end|>, not 16 tokens

    trained, im_end = load_causal_lm(f"{tmp_path}/run"), tokenizer.convert_tokens_to_ids("<|im_end|>")
    task = build_task(config.task)
    prompts = [p.prompt for p in task.test_problems(8)]
    for engine in (HFEngine(trained, tokenizer), StaticCacheEngine(trained, tokenizer, torch.float32, False)):
        sequences = engine.generate(prompts, 1, 0.0, 16)
        for row in range(len(prompts)):
            completion = sequences.input_ids[row, sequences.prompt_width :]
            kept = sequences.completion_mask[row, sequences.prompt_width :]
            length = int(kept.sum())
            assert completion[length - 1] == im_end and kept[:length].all() and not kept[length:].any()
            assert (completion[length:] == tokenizer.pad_token_id).all()
    monkeypatch.setattr("distillrl.text.chat.end_of_turn_id", lambda tokenizer: None)  # as before the fix
    unstopped = HFEngine(trained, tokenizer).generate(prompts, 1, 0.0, 16)
    assert unstopped.completion_lengths.tolist() == [16] * len(prompts)  # it would run on past <|im_end|>


def test_a_teacher_whose_template_renders_other_tokens_is_refused(tmp_path):
    student = save_user_model(tmp_path / "student")
    other = bpe_tokenizer()
    default_system = "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nBe kind.<|im_end|>\n{% endif %}"
    other.chat_template = default_system + CHATML_TEMPLATE
    teacher = save_user_model(tmp_path / "teacher", tokenizer=other, seed=1)
    bare = save_user_model(tmp_path / "bare", tokenizer=bpe_tokenizer(chat_template=False), seed=2)
    same = save_user_model(tmp_path / "same", seed=3)
    data = tmp_path / "p.jsonl"
    data.write_text('{"prompt": "What is 12 plus 30?", "answer": "42"}\n')

    def check(student_path: str, teacher_path: str, **teacher):
        config = TrainConfig.model_validate({
            "student": {"path": student_path}, "teacher": {"path": teacher_path, **teacher},
            "task": {"name": "prompts", "train_path": str(data), "test_path": str(data)},
            "rollout": {"max_new_tokens": 16}, "eval": {"max_new_tokens": 16, "num_prompts": 1}})  # fmt: skip
        check_before_loading(config, build_task(config.task), build_objective(config.objective))

    check(student, same)
    with pytest.raises(TemplateMismatch, match=r"teacher\.path: the chat template of .*teacher renders .*Be kind"):
        check(student, teacher)
    check(student, teacher, chat_template="student")  # the user says the teacher may read the student's rendering
    with pytest.raises(TemplateMismatch, match="has no chat template, so prompts are given raw"):
        check(bare, student)


def test_datasets_directories_load_a_split_with_a_column_mapping(tmp_path):
    import datasets

    folder = tmp_path / "files"
    folder.mkdir()
    for split, pairs in (("train", [(2, 3), (4, 4), (6, 3)]), ("test", [(7, 1), (2, 2)])):
        rows = [{"question": f"What is {a} plus {b}?", "final": a + b} for a, b in pairs]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    task = build_task(TaskConfig(name="prompts", train_path=str(folder), test_path=str(folder),
                                 columns={"prompt": "question", "answer": "final"}))  # fmt: skip
    assert len(task.train) == 3 and task.test_problems(5)[0].prompt == "What is 7 plus 1?"
    assert task.test_where[0] == f"{folder} [test]: row 0"
    saved = tmp_path / "saved"
    datasets.DatasetDict({"train": datasets.Dataset.from_list([{"q": "What is 2 plus 2?", "a": "4"}]),
                          "validation": datasets.Dataset.from_list([{"q": "What is 3 plus 3?", "a": "6"}])}
                         ).save_to_disk(str(saved))  # fmt: skip
    task = build_task(TaskConfig(name="prompts", train_path=str(saved), test_path=str(saved), test_split="validation",
                                 columns={"prompt": "q", "answer": "a"}))  # fmt: skip
    assert [p.answer for p in task.train + task.test] == ["4", "6"]
    with pytest.raises(UserError, match=r"task.test_path: .*no split 'test'"):
        build_task(TaskConfig(name="prompts", train_path=str(saved), test_path=str(saved), columns={"prompt": "q"}))
    with pytest.raises(UserError, match=r"row 0: field `question` \(task.columns.prompt\) must be a non-empty string"):
        build_task(TaskConfig(name="prompts", train_path=str(saved), columns={"prompt": "question"}))


def test_prompt_lengths_are_checked_against_every_models_context(tmp_path):
    student = save_user_model(tmp_path / "student", max_positions=256)
    teacher = save_user_model(tmp_path / "teacher", max_positions=48, seed=1)
    data = tmp_path / "p.jsonl"
    long_prompt = " ".join(["The quick brown fox jumps over the lazy dog."] * 3)
    data.write_text(json.dumps({"prompt": "What is 12 plus 30?", "answer": "42"}) + "\n"
                    + json.dumps({"prompt": long_prompt, "answer": "dog"}) + "\n")  # answers: evaluation needs them

    def config(**task):
        return TrainConfig.model_validate({
            "student": {"path": student}, "teacher": {"path": teacher},
            "task": {"name": "prompts", "train_path": str(data), "test_path": str(data), **task},
            "rollout": {"max_new_tokens": 16}, "eval": {"max_new_tokens": 16, "num_prompts": 2}})  # fmt: skip

    refused = config()
    with pytest.raises(UserError, match=rf"{data}:2: the prompt is \d+ tokens, more than teacher.path .*teacher can take "
                                        r"\(48 tokens of context, 16 of them for the completion\)"):
        check_before_loading(refused, build_task(refused.task), build_objective(refused.objective))
    cut = config(truncate="left")
    check_before_loading(cut, build_task(cut.task), build_objective(cut.objective))
    from distillrl.run.roles import chat_format

    chat = chat_format(cut)
    tokenizer = load_tokenizer(student)
    ids, mask = encode_prompts(tokenizer, [long_prompt, "What is 12 plus 30?"], chat)
    assert chat.max_prompt_tokens == 32 and ids.shape[1] == 32
    assert tokenizer.decode(ids[0]).endswith("lazy dog.<|im_end|>\n<|im_start|>assistant\n")


def test_the_readme_walkthrough_config_validates():
    from pathlib import Path

    import yaml

    readme = (Path(__file__).resolve().parent.parent / "docs" / "your-own-models.md").read_text()
    section = readme.split("# Your own models", 1)[1].split("\n## ", 1)[0]
    config = TrainConfig.model_validate(yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0]))
    assert config.task.chat_template_kwargs == {"enable_thinking": False} and config.rollout.stop_strings == ["</answer>"]


def test_eval_renders_as_the_run_trained_unless_told_otherwise(tmp_path):
    """`distillrl eval` takes a run directory's chat_template_kwargs and stop strings; options override them."""
    from typer.testing import CliRunner

    from distillrl.cli import app
    from distillrl.run.eval_setup import EvalOptions, eval_setup

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("task: {chat_template_kwargs: {enable_thinking: false}}\n"
                                     "rollout: {stop_strings: ['</answer>']}\n")  # fmt: skip
    assert eval_setup(str(run), EvalOptions(), None).chat == ChatFormat({"enable_thinking": False}, ("</answer>",))
    told = EvalOptions(chat_template_kwargs='{"enable_thinking": true}', stop_strings=["\n"])
    assert eval_setup(str(run), told, None).chat == ChatFormat({"enable_thinking": True}, ("\n",))
    assert eval_setup("zoo:student-base", EvalOptions(), None).chat == ChatFormat()

    student = save_user_model(tmp_path / "student")
    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"What is {i} plus 30?", "answer": str(i + 30)}) + "\n" for i in range(4)))
    greedy = HFEngine(load_causal_lm(student), load_tokenizer(student)).generate(
        [f"What is {i} plus 30?" for i in range(4)], 1, 0.0, 12)
    stop = greedy.completions[0].strip()[:1]  # a character the untrained model writes in its first completion
    args = ["eval", "--model", student, "--task", str(data), "--n", "4", "--max-new-tokens", "12", "--temperature", "0"]
    unstopped, stopped = CliRunner().invoke(app, args), CliRunner().invoke(app, [*args, "--stop-string", stop])
    assert unstopped.exit_code == 0 and stopped.exit_code == 0, unstopped.output + stopped.output

    def length(output: str) -> float:
        return float(next(line for line in output.splitlines() if "eval/response_length" in line).split()[-2])

    assert stop and length(stopped.output) < length(unstopped.output) == greedy.completion_lengths.float().mean().item()


SYSTEM_REQUIRED = ("{% if messages[0]['role'] != 'system' %}{{ raise_exception('a system message is required') }}"
                   "{% endif %}" + CHATML_TEMPLATE)  # fmt: skip


def test_a_template_that_requires_a_system_turn_keeps_its_end_of_turn_stop():
    tokenizer = bpe_tokenizer()
    tokenizer.eos_token = "<|endoftext|>"  # only the template's end of turn can stop at <|im_end|>
    tokenizer.chat_template = SYSTEM_REQUIRED
    im_end, = ids_of(tokenizer, "<|im_end|>")
    assert end_of_turn_id(tokenizer) == im_end and im_end in stop_token_ids(tokenizer)
    answer = tokenizer("<answer>42</answer>", add_special_tokens=False)["input_ids"]
    rows = torch.tensor([answer + [im_end] + answer * 4])  # a model that answers, ends its turn, then runs on
    prompts = torch.ones(1, 1, dtype=torch.long)
    sequences = join_prompts_and_completions(tokenizer, prompts, prompts, rows, torch.arange(1), stop_token_ids(tokenizer))
    assert sequences.completion_lengths.tolist() == [len(answer) + 1] and sequences.completions == ["<answer>42</answer>"]
    tokenizer.chat_template = "{{ raise_exception('this template renders nothing') }}"
    with pytest.raises(UserError, match=r"^--model M: the chat template renders no assistant turn, .*a user turn: this "
                                        r"template renders nothing; a system and a user turn: this template"):
        check_end_of_turn(tokenizer, "--model M")


def test_tag_and_regex_formats_read_the_last_answer_and_auto_reads_tags():
    problem = Problem("q", "42")
    text = "<think>#41 or \\boxed{40}?</think> <answer>41</answer> no: <answer> 42 </answer>"
    assert [AnswerVerifier(f)(problem, text) for f in ("auto", "tag", "hash", "boxed")] == [1.0, 1.0, 0.0, 0.0]
    assert AnswerVerifier("tag")(problem, "<answer>42") == 1.0  # left open: the stop string `</answer>` cut it
    assert AnswerVerifier("tag", answer_tag="final")(problem, "<final>42</final> <answer>7</answer>") == 1.0
    assert AnswerVerifier("tag")(problem, "42") == 0.0
    regex = AnswerVerifier("regex:answer is (-?\\d+)")
    assert [regex(problem, t) for t in ("the answer is 41, no, the answer is 42", "answer is 41", "42")] == [1.0, 0.0, 0.0]
    assert AnswerVerifier("regex:\\d+")(problem, "7 times 6 = 42") == 1.0  # no group: the whole last match
    assert TaskConfig(name="prompts", train_path="p.jsonl", answer_format="regex:=(\\d+)").answer_format == "regex:=(\\d+)"
    for fields, message in (({"answer_format": "regex:(["}, r"answer_format: 'regex:\(\[' is not a valid regular "
                                                            r"expression \(unterminated"),
                            ({"answer_format": "xml"}, r"answer_format: unknown format 'xml' \(use auto, hash"),
                            ({"answer_format": "tag", "answer_tag": "<answer>"}, r"answer_tag: '<answer>' is not a tag"),
                            ({"answer_format": "hash", "answer_tag": "final"}, "answer_tag: only answer_format tag or auto")):
        with pytest.raises(ValueError, match=message):
            TaskConfig(name="prompts", train_path="p.jsonl", **fields)


def test_the_reachability_check_scores_the_datasets_own_completions(tmp_path):
    from distillrl.tasks.rewards import DataWarning, check_task_answers

    data = tmp_path / "p.jsonl"
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "<answer>42</answer>"}],
             "answer": "42"} for q in QUESTIONS_OF_42[:3]] + [{"prompt": "What is 1 plus 1?", "answer": "2"}]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    tokenizer = bpe_tokenizer()
    for answer_format in ("tag", None):  # auto reads the tags
        task = build_task(TaskConfig(name="prompts", train_path=str(data), answer_format=answer_format))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            check_task_answers(task, tokenizer, stop_strings=("</answer>",))
    task = build_task(TaskConfig(name="prompts", train_path=str(data), answer_format="last_line"))
    with pytest.warns(DataWarning, match=rf"^{data}:1: task.answer_format 'last_line' reads '<answer>42</answer>' from "
                                         r"the row's own completion .*not its answer '42'; 3 of the 3 dataset "
                                         r"completions score 0") as caught:  # fmt: skip
        check_task_answers(task, tokenizer)
    assert len(caught) == 1  # one line; row 4 (no completion) is checked as before: `42`-style answers reachable
    task = build_task(TaskConfig(name="prompts", train_path=str(data), answer_format="hash"))
    with pytest.warns(DataWarning, match="3 of the 3 dataset completions score 0"):
        check_task_answers(task, tokenizer)  # before: `#42` was tested, and it passed
    with pytest.warns(DataWarning, match=r"reads '' from the row's own completion '<answer>'"):
        check_task_answers(build_task(TaskConfig(name="prompts", train_path=str(data), answer_format="tag")), tokenizer,
                           stop_strings=("42",))  # a stop string that cuts the answer off  # fmt: skip


def readme_example() -> tuple[dict, dict]:
    """The config and the data row of the "Your own models" page's example (docs/your-own-models.md)."""
    from pathlib import Path

    import yaml

    readme = (Path(__file__).resolve().parent.parent / "docs" / "your-own-models.md").read_text()
    section = readme.split("# Your own models", 1)[1].split("\n## ", 1)[0]
    config = yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])
    return config, json.loads(section.split("```json\n", 1)[1].split("```", 1)[0])


def test_the_readme_example_scores_its_own_answers_trains_and_evaluates_from_the_cli(tmp_path):
    """README's example (`<answer>` completions, answer_format tag, stop string `</answer>`) with a user-style
    student whose template requires a system turn: the rows' own completions score 1; SFT on them learns to answer;
    `distillrl eval` of the run directory uses the run's task (its test file, 8 prompts, its verifier), and of the
    model with the flags stops at <|im_end|> after the answer (7 tokens, not 48)."""
    from typer.testing import CliRunner

    from distillrl.cli import app
    from distillrl.tasks.rewards import check_task_answers

    config, row = readme_example()
    tokenizer = bpe_tokenizer(corpus=CORPUS + " Answer in <answer>42</answer>.")
    tokenizer.eos_token = "<|endoftext|>"  # the end-of-turn stop comes from the template alone
    tokenizer.chat_template = SYSTEM_REQUIRED
    student = save_user_model(tmp_path / "student", tokenizer=tokenizer, hidden=64)
    model = load_causal_lm(student)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(student)
    system, _, answer = row["messages"]
    rows = [{"messages": [system, {"role": "user", "content": q}, answer], "answer": row["answer"]} for q in QUESTIONS_OF_42]
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config.update(output_dir=str(tmp_path / "run"), student={"path": student}, teacher=None, tensorboard=False,
                  objective={"name": "sft"}, optim={"steps": 40, "lr": 1e-2, "warmup_steps": 0, "schedule": "constant"},
                  eval={"every": 0, "num_prompts": 8, "max_new_tokens": 16}, checkpoint={"every": 0})  # fmt: skip
    config["task"].update(train_path=str(data), test_path=str(data))
    config["rollout"].update(source="dataset", prompts_per_step=8, group_size=1, max_new_tokens=16)
    config = TrainConfig.model_validate(config)
    task = build_task(config.task)
    assert [task.reward(p, p.solution) for p in task.train] == [1.0] * 8
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no row's own completion is misread
        check_task_answers(task, tokenizer, stop_strings=tuple(config.rollout.stop_strings))
    summary = train(config, show_progress=False)
    assert summary["after"]["eval/accuracy_greedy"] == 1.0

    def metrics(*args: str) -> tuple[dict[str, float], str]:
        result = CliRunner().invoke(app, ["eval", "--temperature", "0", *args])
        assert result.exit_code == 0, result.output
        values = {line.split()[1]: float(line.split()[-2]) for line in result.output.splitlines() if "eval/" in line}
        return values, "".join(result.output.split())  # the title, wrapped to the terminal, without white space

    from_run, output = metrics("--model", str(tmp_path / "run"))
    assert "".join(f"on {data} (the run's task, {tmp_path / 'run' / 'config.yaml'}) (8 prompts)".split()) in output
    length = len(tokenizer("<answer>42</answer>", add_special_tokens=False)["input_ids"])
    assert from_run["eval/accuracy_greedy"] == 1.0 and from_run["eval/response_length"] == length  # to `</answer>`
    flags, _ = metrics("--model", str(tmp_path / "run" / "final"), "--task", str(data), "--answer-format", "tag")
    assert flags["eval/accuracy_greedy"] == 1.0 and flags["eval/response_length"] == length + 1 < 48  # <|im_end|>
    regex, _ = metrics("--model", str(tmp_path / "run" / "final"), "--task", str(data), "--answer-format",
                       "regex:<answer>(\\d+)</answer>", "--n", "3")  # fmt: skip
    assert regex["eval/accuracy_greedy"] == 1.0


def test_eval_of_a_run_directory_takes_its_task_lengths_and_verifier_unless_told_otherwise(tmp_path):
    from distillrl.run.eval_setup import EvalOptions, eval_setup

    data = tmp_path / "test.jsonl"
    data.write_text('{"question": "What is 6 times 7?", "final": "42"}\n')
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(
        f"task: {{name: prompts, train_path: {tmp_path}/train.jsonl, test_path: {data}, answer_format: 'regex:is (\\d+)',"
        " columns: {prompt: question, answer: final}, truncate: left}\n"
        "eval: {num_prompts: 5, max_new_tokens: 12}\nrollout: {stop_strings: ['</answer>']}\n")  # fmt: skip
    setup = eval_setup(str(run), EvalOptions(), 64)
    assert (setup.task.name, setup.task.train_path, setup.task.test_path) == ("prompts", str(data), str(data))
    assert setup.task.answer_format == "regex:is (\\d+)" and setup.task.columns == {"prompt": "question", "answer": "final"}
    assert (setup.num_prompts, setup.max_new_tokens, setup.chat.max_prompt_tokens) == (5, 12, 52)
    assert setup.source == f"{data} (the run's task, {run / 'config.yaml'})"
    told = eval_setup(str(run), EvalOptions(n=2, max_new_tokens=20, answer_format="tag", answer_match="math"), None)
    assert (told.num_prompts, told.max_new_tokens, told.task.answer_format, told.task.answer_match) == (2, 20, "tag", "math")
    other = eval_setup(str(run), EvalOptions(task="arith", level="hard"), None)
    assert other.source == "arith" and other.task.answer_format is None and other.task.difficulty.min_ops == 3
    arith_run = tmp_path / "arith"
    arith_run.mkdir()
    (arith_run / "config.yaml").write_text("task: {name: arith, difficulty: {min_ops: 2, max_ops: 2}}\n")
    setup = eval_setup(str(arith_run), EvalOptions(), None)
    assert setup.task.difficulty.max_ops == 2 and (setup.num_prompts, setup.max_new_tokens) == (200, 48)
    assert eval_setup(str(arith_run), EvalOptions(level="hard"), None).task.difficulty.max_ops == 5
