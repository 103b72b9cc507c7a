"""`distillrl inspect` on user-style models (a byte-level BPE with a ChatML template that reads `enable_thinking`):
the prompt rendered through the template and its kwargs, stop strings, decoded text (never `Ġ` pieces), a new page
per call, and a run directory's settings."""

from __future__ import annotations

import html
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner
from user_models import CHATML_TEMPLATE, bpe_tokenizer, save_model, user_model

from distillrl.cli import app
from distillrl.config import TrainConfig
from distillrl.core.files import unused_path
from distillrl.models.loading import load_tokenizer
from distillrl.report.forking import token_texts
from distillrl.run.model_inspect import InspectOptions, inspect_models
from distillrl.run.trainer import train

THINKING = "<think>\n\n</think>\n\n"  # what enable_thinking: false writes after the generation prompt (Qwen3's)
TEMPLATE = CHATML_TEMPLATE.replace(
    "<|im_start|>assistant\n{% endif %}",
    "<|im_start|>assistant\n{% if enable_thinking is defined and not enable_thinking %}" + THINKING
    + "{% endif %}{% endif %}",
)
PROMPTS = ["What is 12 plus 30?", "What is the capital of France?", "Half of seven is?", "Compute 7 times 6."]
NO_THINKING = '{"enable_thinking": false}'


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    """A Qwen3 student and teacher over one byte-level BPE whose template reads enable_thinking; a prompt file."""
    root = tmp_path_factory.mktemp("inspect")
    tokenizer = bpe_tokenizer()
    tokenizer.chat_template = TEMPLATE
    paths = {role: save_model(root / role, user_model("qwen3", tokenizer, seed=seed)[0], tokenizer)
             for role, seed in (("student", 1), ("teacher", 2))}  # fmt: skip
    rows = [{"prompt": PROMPTS[0], "answer": "42"}, {"messages": [{"role": "system", "content": "Be brief."},
                                                                  {"role": "user", "content": PROMPTS[1]}],
                                                     "answer": "Paris"}]  # fmt: skip
    (root / "prompts.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return paths | {"prompts": str(root / "prompts.jsonl"), "root": str(root)}


def invoke(*args: str):
    result = CliRunner().invoke(app, ["inspect", *args])
    assert result.exit_code == 0, result.output
    return result


def page_tokens(page: str) -> list[list[str]]:
    """Each sample's token texts as the page shows them (a line break as a return sign then the break, "" as a dot)."""
    shown = r'<span class="tok" style="[^"]*" title="[^"]*">([^<]*)</span>'
    return [[html.unescape(text).replace("\u21b5\n", "\n").replace("\u00b7", "") for text in re.findall(shown, row)]
            for row in page.split('<div class="sample">')[1:]]  # fmt: skip


def test_the_prompt_goes_through_the_chat_template_and_its_kwargs_and_tokens_show_as_text(models, tmp_path):
    page = tmp_path / "page.html"
    result = invoke("--student", models["student"], "--teacher", models["teacher"], "--prompt", PROMPTS[0],
                    "--chat-template-kwargs", NO_THINKING, "--samples", "3", "--max-new-tokens", "16", "--out",
                    str(page))  # fmt: skip
    rendered = f"<|im_start|>user\n{PROMPTS[0]}<|im_end|>\n<|im_start|>assistant\n{THINKING}"
    text = page.read_text()
    assert html.escape(rendered) in text and rendered.rstrip() in result.output
    samples = page_tokens(text)
    assert len(samples) == 3 and all(samples)
    spaced = {piece for sample in samples for piece in sample if piece.startswith(" ") and piece.isprintable()}
    assert spaced and all(piece in result.output for piece in spaced)  # byte-level pieces decoded: ' the', not 'Ġthe'
    assert not any(mark in text or mark in result.output for mark in ("\u0120", "\u010a"))  # Ġ, Ċ
    plain = invoke("--student", models["student"], "--teacher", models["teacher"], "--prompt", PROMPTS[0],
                   "--samples", "1", "--max-new-tokens", "4", "--out", str(page))  # fmt: skip
    assert "<think>" not in page.read_text() and "<think>" not in plain.output


def test_a_multibyte_character_shows_whole_on_the_token_that_ends_it(models):
    tokenizer = load_tokenizer(models["student"])
    ids = tokenizer("H\u00e9 the\nx<|im_end|>", add_special_tokens=False)["input_ids"]
    texts, alternatives = token_texts(tokenizer, tokenizer("Hi", add_special_tokens=False)["input_ids"], ids, ids)
    assert texts == ["H", "", "\u00e9", " the", "\n", "x", "<|im_end|>"] and alternatives[3:] == texts[3:]


def test_a_stop_string_ends_the_sample(models):
    options = InspectOptions(models["student"], models["teacher"], prompts=(PROMPTS[1],), samples=1, temperature=0.0,
                             max_new_tokens=16)  # fmt: skip
    free = inspect_models(options).views[0]
    texts = [t.text for t in free.tokens]
    stop = next(text.strip() for text in texts[2:] if text.strip())
    ends = next(k for k in range(1, len(texts) + 1) if stop in "".join(texts[:k]))
    assert ends < len(texts)
    stopped = inspect_models(replace(options, stop_strings=(stop,))).views[0]
    assert [t.text for t in stopped.tokens] == texts[:ends] and stop not in stopped.completion
    result = invoke("--student", models["student"], "--teacher", models["teacher"], "--prompt", PROMPTS[1],
                    "--samples", "1", "--temperature", "0", "--max-new-tokens", "16", "--stop-string", stop,
                    "--out", str(Path(models["root"]) / "stopped.html"))  # fmt: skip
    line = stopped.text.replace("\n", "\u23ce")
    assert f" {line}  peak " in result.output


def test_out_defaults_to_a_new_page_per_call(models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ("--student", models["student"], "--teacher", models["teacher"], "--prompts", models["prompts"],
            "--samples", "1", "--max-new-tokens", "4")  # fmt: skip
    outputs = [invoke(*args).output for _ in range(2)]
    pages = sorted((tmp_path / "runs" / "inspect").glob("forking-*.html"))
    assert len(pages) == 2 and all(f"wrote {page.relative_to(tmp_path)}" in "".join(outputs) for page in pages)
    for page in pages:  # the file's two rows: a prompt, and chat messages with a system turn
        text = page.read_text()
        assert text.count('class="sample"') == 2 and "&lt;|im_start|&gt;system\nBe brief." in text
    assert all(re.fullmatch(r"forking-\d{8}-\d{6}(-2)?\.html", page.name) for page in pages)


def test_unused_path_never_names_a_file_that_exists(tmp_path):
    first = tmp_path / "page.html"
    assert unused_path(first) == first
    first.write_text("x")
    assert unused_path(first) == tmp_path / "page-2.html"
    (tmp_path / "page-2.html").write_text("x")
    assert unused_path(first) == tmp_path / "page-3.html"


def test_run_takes_the_student_teacher_rendering_and_prompts_of_a_run(models, tmp_path):
    stop = " "
    config = TrainConfig.model_validate({
        "seed": 0, "output_dir": str(tmp_path / "run"), "device": "cpu", "tensorboard": False,
        "student": {"path": models["student"]}, "teacher": {"path": models["teacher"]},
        "task": {"name": "prompts", "train_path": models["prompts"], "test_path": models["prompts"],
                 "chat_template_kwargs": {"enable_thinking": False}},
        "rollout": {"prompts_per_step": 2, "group_size": 1, "max_new_tokens": 6, "stop_strings": [stop]},
        "optim": {"steps": 1, "lr": 1e-3, "warmup_steps": 0, "schedule": "constant"},
        "eval": {"every": 0, "num_prompts": 2, "max_new_tokens": 10}, "checkpoint": {"every": 0},
    })  # fmt: skip
    train(config, show_progress=False)
    run = str(tmp_path / "run")
    inspection = inspect_models(InspectOptions(run=run, samples=4))
    assert (inspection.student, inspection.teacher) == (run, models["teacher"])
    assert inspection.setup.chat.stop_strings == (stop,) and inspection.setup.max_new_tokens == 10
    views = inspection.views
    assert len(views) == 8 and all(THINKING in v.prompt for v in views)
    assert PROMPTS[0] in views[0].prompt and PROMPTS[1] in views[-1].prompt and "Be brief." in views[-1].prompt
    assert all(len(v.tokens) <= 10 and stop not in "".join(t.text for t in v.tokens[:-1]) for v in views)
    assert any(stop in v.tokens[-1].text for v in views)  # the run's stop string ended a sample
    page = tmp_path / "run.html"
    result = invoke("--run", run, "--n", "1", "--samples", "1", "--out", str(page))
    assert f"Forking tokens: {run} vs {models['teacher']}" in page.read_text() and THINKING.strip() in result.output
    refused = CliRunner().invoke(app, ["inspect", "--run", run, "--student", models["student"]])
    assert refused.exit_code == 2 and "give one" in refused.stderr
