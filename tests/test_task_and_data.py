"""Tokenizer, the arith task and the prompt-file loader."""

import random

import pytest
from transformers import AutoTokenizer

from distillrl.models.tokenizer import build_char_tokenizer
from distillrl.tasks.arith import ArithDifficulty, ArithTask, answer_of
from distillrl.tasks.base import Problem, extract_final_answer, is_test_prompt
from distillrl.tasks.lists import ListsTask
from distillrl.tasks.prompts import DatasetError, PromptsTask, load_problems


def test_char_tokenizer_round_trips_through_save_pretrained(tmp_path):
    tokenizer = build_char_tokenizer()
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "(12*3)-4=12*3=36;36-4=32;#32"
    ids = loaded(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)  # one token per character
    assert loaded.decode(ids) == text
    assert (loaded.eos_token, loaded.pad_token) == ("<eos>", "<pad>")
    chat = [{"role": "user", "content": "1+2="}, {"role": "assistant", "content": "1+2=3;#3"}]
    assert loaded.apply_chat_template(chat, tokenize=False) == "1+2=1+2=3;#3<eos>"
    assert loaded.apply_chat_template(chat[:1], tokenize=False, add_generation_prompt=True) == "1+2="


def test_arith_solutions_are_correct_and_verifiable():
    task, rng = ArithTask(ArithDifficulty(min_ops=1, max_ops=4, max_operand=12)), random.Random(0)
    for _ in range(300):
        problem = task.sample_train(rng)
        assert int(problem.answer) == eval(problem.prompt[:-1])  # noqa: S307 - our own generated expression
        assert task.reward(problem, problem.solution) == 1.0
        assert task.reward(problem, problem.solution + "1") == 0.0
        for step in problem.solution.split(";")[:-1]:  # every chain-of-thought step is true arithmetic
            expression, value = step.rsplit("=", 1)
            assert eval(expression.replace("--", "- -").replace("+-", "+ -").replace("*-", "* -")) == int(value)  # noqa: S307


def test_answer_of_an_arith_prompt_matches_its_generated_answer():
    task = ArithTask()
    for problem in task.test_problems(50):
        assert answer_of(problem.prompt) == problem.answer
    assert answer_of("3+(4*2)=") == "11" and answer_of("(7-9)*3=") == "-6"
    assert answer_of("sort[3,1]=") is None and answer_of("2**3=") is None and answer_of("3+4") is None


def test_train_and_test_splits_are_disjoint():
    task = ArithTask()
    test = {p.prompt for p in task.test_problems(200)}
    assert len(test) == 200 and all(is_test_prompt(p) for p in test)
    rng = random.Random(5)
    train = {task.sample_train(rng).prompt for _ in range(5000)}
    assert not train & test
    assert len(train) > 1000


def test_the_validation_split_is_fixed_training_split_prompts_alternating_domains_in_mix():
    from distillrl.tasks import MixTask

    task = ArithTask(ArithDifficulty(min_ops=3, max_ops=5))
    validation = task.validation_problems(200)
    prompts = [p.prompt for p in validation]
    assert len(set(prompts)) == 200 and not any(is_test_prompt(p) for p in prompts)
    assert prompts == [p.prompt for p in task.validation_problems(200)]  # always the same ones
    assert not set(prompts) & {p.prompt for p in task.test_problems(200)}
    assert all(p.solution.count(";") >= 3 for p in validation)  # whole solutions whatever the cot_fraction
    mix = MixTask([ArithTask(), ListsTask()]).validation_problems(6)
    assert [p.domain for p in mix] == ["arith", "lists"] * 3


def test_eval_split_validation_is_refused_for_prompt_files():
    from distillrl.config import TrainConfig

    with pytest.raises(ValueError, match="eval.split: 'validation' draws from a generated task"):
        TrainConfig.model_validate({"task": {"name": "prompts", "train_path": "p.jsonl"}, "eval": {"split": "validation"},
                                    "objective": {"name": "sft"}, "rollout": {"source": "dataset"}, "teacher": None})


def test_lists_cot_fraction_makes_that_share_of_training_sums_answer_only():
    from distillrl.tasks.lists import ListsDifficulty

    task = ListsTask(ListsDifficulty(min_length=4, max_length=8, operations=["sum", "sort"]), cot_fraction=0.5)
    rng = random.Random(3)
    train = [task.sample_train(rng) for _ in range(2000)]
    sums = [p for p in train if p.prompt.startswith("sum")]
    answer_only = [p for p in sums if p.solution == f"#{p.answer}"]
    assert 0.45 < len(answer_only) / len(sums) < 0.55
    assert all(p.solution.count(";") >= 3 for p in sums if p not in answer_only)  # 4+ values: 3+ running sums
    assert all(p.solution == f"#{p.answer}" for p in train if p.prompt.startswith("sort"))  # no steps to skip
    assert all(p.solution.count(";") >= 3 for p in task.test_problems(50) if p.prompt.startswith("sum"))
    whole, a, b = ListsTask(task.difficulty), random.Random(9), random.Random(9)  # cot_fraction 1 draws nothing
    assert [whole.sample_train(a) for _ in range(20)] == [whole._sample(b, test=False) for _ in range(20)]  # extra


def test_difficulty_knob_changes_problems():
    easy = ArithTask(ArithDifficulty(min_ops=1, max_ops=1, max_operand=5)).test_problems(10)
    hard = ArithTask(ArithDifficulty(min_ops=4, max_ops=4, max_operand=50)).test_problems(10)
    assert all(p.solution.count(";") == 1 for p in easy)
    assert all(p.solution.count(";") == 4 for p in hard)
    with pytest.raises(ValueError, match="too small"):
        ArithTask(ArithDifficulty(min_ops=1, max_ops=1, max_operand=2)).test_problems(200)


def test_final_answer_extraction():
    assert extract_final_answer("1+2=3;#3") == "3"
    assert extract_final_answer("#4;#-12") == "-12"
    assert extract_final_answer("no answer") is None
    with pytest.raises(ValueError, match="no reference answer"):
        ArithTask().reward(Problem("1+1="), "#2")


def test_jsonl_loader_reads_rows_and_names_a_bad_line(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text('{"prompt": "1+1=", "answer": 2}\n\n{"prompt": "2*3=", "domain": "arith"}\n')
    problems, _ = load_problems(good)
    assert [p.prompt for p in problems] == ["1+1=", "2*3="] and problems[0].answer == "2"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "1+1="}\n{"prompt": "2+2="}\n{"prompt": "3+3=", oops}\n')
    with pytest.raises(DatasetError, match=r"bad\.jsonl:3: invalid JSON"):
        load_problems(bad)
    missing = tmp_path / "missing.jsonl"
    missing.write_text('{"prompt": "1+1="}\n{"question": "2+2="}\n')
    with pytest.raises(DatasetError, match=r"missing\.jsonl:2: field `prompt` must be a non-empty string"):
        load_problems(missing)


def test_parquet_loader_names_a_bad_row(tmp_path):
    import datasets

    path = tmp_path / "prompts.parquet"
    datasets.Dataset.from_list([{"prompt": "1+1=", "answer": "2"}, {"prompt": "", "answer": "0"}]).to_parquet(path)
    with pytest.raises(DatasetError, match=r"prompts\.parquet: row 1: field `prompt`"):
        load_problems(path)
    good = tmp_path / "good.parquet"
    datasets.Dataset.from_list([{"prompt": "1+1=", "answer": "2"}]).to_parquet(good)
    task = PromptsTask(str(good), str(good))
    assert task.reward(task.test_problems(1)[0], "1+1=2;#2") == 1.0


def test_unsupported_file_is_refused(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_text("prompt\n1+1=\n")
    with pytest.raises(DatasetError, match="unsupported format"):
        load_problems(path)
