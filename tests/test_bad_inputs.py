"""Every bad input through the command line: exit code 2, one `distillrl: error:` line, no traceback, and the
workspace (run directory included) byte for byte as it was: a refused fresh run leaves no half-made directory.

Each case gets a workspace with a finished tiny run in `run/` (2 steps, a checkpoint at each) and returns the
command line. The cases run in-process, most of them without loading a model.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
from filelock import FileLock
from typer.testing import CliRunner

from distillrl.cli import app
from distillrl.models.loading import ZOO_DIR

TINY = """\
output_dir: {out}
rollout: {{prompts_per_step: 4, group_size: 2, max_new_tokens: 16}}
optim: {{steps: 2, lr: 0.002}}
eval: {{every: 0, num_prompts: 4, max_new_tokens: 16}}
checkpoint: {{every: 1, keep: 2}}
tensorboard: false
"""


class Workspace:
    """A case's folder: `run/` (a copy of the finished run) and whatever files the case writes."""

    def __init__(self, root: Path, finished_run: Path, other_teacher: Path, stored_teacher: Path):
        self.root, self.other_teacher, self.stored_teacher = root, str(other_teacher), stored_teacher
        self.run = root / "run"
        shutil.copytree(finished_run, self.run)
        self.new = str(root / "new")  # a fresh run's output_dir: must not exist after a refused run

    def file(self, name: str, content: str | bytes) -> str:
        path = self.root / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return str(path)

    def config(self, extra: str = "", out: str | None = None) -> str:
        return self.file("config.yaml", TINY.format(out=out or self.new) + extra)

    def train(self, *settings: str, extra: str = "") -> list[str]:
        """`train` of the tiny config (into `new/`) with `--set` overrides."""
        return ["train", self.config(extra), *[arg for s in settings for arg in ("--set", s)]]

    def resume(self, *settings: str) -> list[str]:
        """`train --resume` of the finished run's own config.yaml with `--set` overrides."""
        settings = (f"output_dir={self.run}", *settings)
        return ["train", str(self.run / "config.yaml"), "--resume", *[arg for s in settings for arg in ("--set", s)]]

    def model(self, name: str = "student-base") -> Path:
        """A copy of a zoo model to damage."""
        path = self.root / f"model-{name}"
        shutil.copytree(ZOO_DIR / name, path)
        return path

    def prompts(self, name: str, content: str | bytes, *settings: str) -> list[str]:
        """`train` on a prompt file (also the held-out file)."""
        path = self.file(name, content)
        return self.train("task.name=prompts", f"task.train_path={path}", f"task.test_path={path}", *settings)


def teacher_tokenizer(ws: Workspace, edit) -> list[str]:
    """`train` with a copy of zoo:teacher whose tokenizer.json `edit(state)` alters."""
    path = ws.model("teacher")
    state = json.loads((path / "tokenizer.json").read_text())
    edit(state)
    (path / "tokenizer.json").write_text(json.dumps(state))
    return ws.train(f"teacher.path={path}")


def swap_eos_and_unk(state: dict) -> None:
    """Swap the ids of the added tokens `<eos>` (1) and `<unk>` (2)."""
    for token in state["added_tokens"]:
        token["id"] = {1: 2, 2: 1}.get(token["id"], token["id"])
    vocab = state["model"]["vocab"]
    vocab["<eos>"], vocab["<unk>"] = vocab["<unk>"], vocab["<eos>"]


def add_token(state: dict) -> None:
    state["added_tokens"].append({"id": len(state["model"]["vocab"]), "content": "<tool>", "single_word": False,
                                  "lstrip": False, "rstrip": False, "normalized": False, "special": True})  # fmt: skip


def from_damaged_cache(ws: Workspace, damage) -> list[str]:
    """`train` (forward KL at top-k on the dataset's solutions) from a copy of the stored teacher that
    `damage(directory, manifest)` alters; the manifest it returns is written back."""
    cache = ws.root / "cache"
    shutil.copytree(ws.stored_teacher, cache)
    manifest = json.loads((cache / "manifest.json").read_text())
    (cache / "manifest.json").write_text(json.dumps(damage(cache, manifest)))
    data = ws.stored_teacher.parent / "train.jsonl"
    return ws.train("objective.name=forward_kl", "objective.fidelity=topk", "objective.top_k=5",
                    "rollout.source=dataset", "task.name=prompts", f"task.train_path={data}",
                    f"task.test_path={data}", f"teacher.cache={cache}")  # fmt: skip


def shard_as_int64(cache: Path, manifest: dict) -> dict:
    """The first shard rewritten with its top-k ids as int64 (the format stores int32)."""
    from safetensors.torch import load_file, save_file

    path = cache / manifest["shards"][0]
    tensors = load_file(path)
    save_file({**tensors, "topk_ids": tensors["topk_ids"].long()}, path)
    return manifest


def damaged_student(ws: Workspace, damage) -> list[str]:
    path = ws.model()
    damage(path)
    return ws.train(f"student.path={path}")


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def damage_all_checkpoints(ws: Workspace) -> list[str]:
    for state in ws.run.glob("checkpoints/step_*/trainer_state.pt"):
        truncate(state)
    return ws.resume()


def corrupt_middle_metrics_line(ws: Workspace) -> list[str]:
    lines = (ws.run / "metrics.jsonl").read_text().splitlines(keepends=True)
    lines[1] = '{"step": 1, "train/loss": 0.5\n'
    (ws.run / "metrics.jsonl").write_text("".join(lines))
    return ws.resume()


def resume_with_teacher_eval(ws: Workspace, text: str) -> list[str]:
    (ws.run / "teacher_eval.json").write_text(text)
    return ws.resume()


def resume_without_stored_config(ws: Workspace) -> list[str]:
    (ws.run / "config.yaml").unlink()
    return ["train", ws.config(out=str(ws.run)), "--resume"]


def resume_with_damaged_stored_config(ws: Workspace) -> list[str]:
    (ws.run / "config.yaml").write_text("optim: {steps: [\n")
    return ["train", ws.config(out=str(ws.run)), "--resume"]


CARTPOLE_TEACHER = Path(__file__).resolve().parents[1] / "src/distillrl/control/teachers/CartPole-v1.zip"


def td3_teacher(ws: Workspace) -> Path:
    """A TD3 model on Pendulum-v1 (10 random steps: deterministic, no distribution, whatever it learnt)."""
    from distillrl.control.teachers import train_teacher

    return train_teacher("Pendulum-v1", ws.root / "td3.zip", 10, 0, "td3", continuous=True)


def control_config(ws: Workspace, text: str) -> list[str]:
    return ["control", "distill", ws.file("control.yaml", f"output_dir: {ws.root / 'control'}\n{text}")]


def teacher_with(ws: Workspace, change, *settings: str) -> list[str]:
    """`train` with a copy of zoo:teacher that `change(path)` alters (its template, its context)."""
    path = ws.model("teacher")
    change(path)
    return ws.train(f"teacher.path={path}", *settings)


def set_context(path: Path, positions: int) -> None:
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "max_position_embeddings": positions}))


def student_without_template(ws: Workspace) -> Path:
    """A copy of zoo:student-base without its chat template (as a base model may come)."""
    path = ws.model("student-base")
    (path / "chat_template.jinja").unlink()
    return path


def student_with_template(ws: Workspace, template: str) -> str:
    """A copy of zoo:student-base with another chat template."""
    path = ws.model("student-base")
    (path / "chat_template.jinja").write_text(template)
    return str(path)


ZOO_TEMPLATE = ("{% for message in messages %}{% if message['role'] == 'assistant' %}{{ message['content'] }}"
                "{{ eos_token }}{% else %}{{ message['content'] }}{% endif %}{% endfor %}")  # fmt: skip
KNOWN_ROLES = ("{% for message in messages %}{% if message['role'] not in ['system', 'user', 'assistant'] %}"
               "{{ raise_exception('unknown role ' + message['role']) }}{% endif %}{% endfor %}" + ZOO_TEMPLATE)
NO_ASSISTANT = ("{% for message in messages %}{% if message['role'] == 'assistant' %}"
                "{{ raise_exception('assistant turns are not supported') }}{% endif %}{% endfor %}" + ZOO_TEMPLATE)
TOOL_ROW = '{"messages": [{"role": "tool", "content": "1+1="}], "answer": "2"}\n'
ANSWERED = '{"prompt": "1+1=", "answer": "2"}\n'


def dataset_directory(ws: Workspace, *settings: str) -> list[str]:
    """`train` on a directory that holds only a train split."""
    folder = ws.root / "data"
    folder.mkdir()
    (folder / "train.jsonl").write_text('{"question": "1+1=", "answer": "2"}\n')
    return ws.train("task.name=prompts", f"task.train_path={folder}", f"task.test_path={folder}", *settings)


def foreign_folder(ws: Workspace, git: bool = False) -> Path:
    """A folder of the user's own files that no run wrote: notes, a `.tmp-mine/`, a config.yaml that is not a
    run's, and with `git` a `.git/` (a checkout)."""
    folder = ws.root / "mine"
    (folder / ".tmp-mine").mkdir(parents=True)
    (folder / ".tmp-mine" / "draft.txt").write_text("keep me\n")
    (folder / "notes.txt").write_text("my notes\n")
    (folder / "config.yaml").write_text("colour: blue\n")
    if git:
        (folder / ".git").mkdir()
        (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return folder


class RunsCode:
    """Unpickled by a full unpickler, it creates `code-ran` beside the run (the test would see it in the snapshot)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def overwrite_run_in_git_work_tree(ws: Workspace) -> list[str]:
    (ws.run / ".git").mkdir()
    return ["train", str(ws.run / "config.yaml"), "--set", f"output_dir={ws.run}", "--overwrite"]


def crafted_trainer_states(ws: Workspace) -> None:
    for state in ws.run.glob("checkpoints/step_*/trainer_state.pt"):
        with state.open("wb") as handle:
            pickle.dump({"optimizer": {}, "scheduler": {}, "rng": [], "step": 1, "x": RunsCode(ws.root / "code-ran")},
                        handle)  # fmt: skip


GARBAGE = b"\x00\x01garbage" * 10
LONG_ROW = '{"prompt": "1+2+3+4+5+6+7+8+9+1+2+3+4+5+6="}\n'  # 29 characters, 29 tokens
DOMAIN_FILE = '{"prompt": "1+1=", "answer": "2", "domain": "arith"}\n{"prompt": "2+2=", "answer": "4", "domain": "code"}\n'

CASES = {
    # the config file and --set
    "config file missing": lambda ws: ["train", str(ws.root / "nope.yaml")],
    "config file is a directory": lambda ws: ["train", str(ws.root)],
    "config not UTF-8": lambda ws: ["train", ws.file("c.yaml", b"seed: 0\noptim:\n  lr: \xff\xfe\n")],
    "config invalid YAML": lambda ws: ["train", ws.file("c.yaml", "optim: {steps: [1\n")],
    "config not a mapping": lambda ws: ["train", ws.file("c.yaml", "- optim\n- eval\n")],
    "config two YAML documents": lambda ws: ["train", ws.file("c.yaml", "seed: 0\n---\nseed: 1\n")],
    "unknown top-level key": lambda ws: ws.train(extra="learning_rate: 3\n"),
    "unknown nested key": lambda ws: ws.train("objective.fidelty=full"),
    "wrong type": lambda ws: ws.train("optim.lr=abc"),
    "negative steps": lambda ws: ws.train("optim.steps=-1"),
    "AdamW beta out of range": lambda ws: ws.train("optim.betas=[1.5,0.999]"),
    "AdamW betas not a pair": lambda ws: ws.train("optim.betas=[0.9]"),
    "a GPU this machine lacks": lambda ws: ws.train("device=cuda:99"),
    "a teacher on a GPU this machine lacks": lambda ws: ws.train("teacher.device=cuda:99"),
    "device not a device": lambda ws: ws.train("device=gpu"),
    "negative skip_nonfinite_steps": lambda ws: ws.train("optim.skip_nonfinite_steps=-1"),
    "rlad without a teacher": lambda ws: ws.train("objective.name=rlad", "teacher=null"),
    "grpo with group_size 1": lambda ws: ws.train("objective.name=grpo", "rollout.group_size=1"),
    "top_k larger than the vocabulary": lambda ws: ws.train("objective.fidelity=topk", "objective.top_k=1000"),
    "unknown LoRA target": lambda ws: ws.train("student.lora.target_modules=[q_proj,nope_proj]"),
    "LoRA rank 0": lambda ws: ws.train("student.lora.r=0"),
    "--set without =": lambda ws: ws.train("optim.lr"),
    "--set value not YAML": lambda ws: ws.train("optim.lr=[1"),
    "--set into a value": lambda ws: ws.train("seed.x=1"),
    "--set bad choice": lambda ws: ws.train("precision=fp8"),
    "prompts task without train_path": lambda ws: ws.train("task.name=prompts"),
    "arith min_ops > max_ops": lambda ws: ws.train("task.difficulty.min_ops=4", "task.difficulty.max_ops=2"),
    "arith difficulty with no held-out problem": lambda ws: ws.train(
        "task.difficulty.max_ops=1", "task.difficulty.max_operand=1", "task.difficulty.operators=+"),
    "arith difficulty too small for eval": lambda ws: ws.train(
        "task.difficulty.max_ops=1", "task.difficulty.max_operand=3", "task.difficulty.operators=+",
        "eval.num_prompts=50"),
    "lists difficulty too small for eval": lambda ws: ws.train(
        "task.name=lists", "task.lists.min_length=1", "task.lists.max_length=1", "task.lists.max_value=2", "task.lists.operations=[max]",
        "eval.num_prompts=10"),
    "max_new_tokens beyond the context": lambda ws: ws.train("rollout.max_new_tokens=300"),
    # models
    "student directory missing": lambda ws: ws.train("student.path=/nonexistent/model"),
    "unknown zoo model": lambda ws: ws.train("student.path=zoo:nope"),
    "student directory without config.json": lambda ws: ws.train(f"student.path={ws.root}"),
    "student weights garbage": lambda ws: damaged_student(ws, lambda p: (p / "model.safetensors").write_bytes(GARBAGE)),
    "student weights truncated": lambda ws: damaged_student(ws, lambda p: truncate(p / "model.safetensors")),
    "student weights missing": lambda ws: damaged_student(ws, lambda p: (p / "model.safetensors").unlink()),
    "student config.json corrupt": lambda ws: damaged_student(ws, lambda p: (p / "config.json").write_text("{")),
    "student tokenizer missing": lambda ws: damaged_student(ws, lambda p: (p / "tokenizer.json").unlink()),
    "teacher directory missing": lambda ws: ws.train("teacher.path=/nonexistent/teacher"),
    "teacher with another tokenizer of the same size": lambda ws: ws.train(f"teacher.path={ws.other_teacher}"),
    "teacher with the ids of two added tokens swapped": lambda ws: teacher_tokenizer(ws, swap_eos_and_unk),
    "teacher with an added token the student lacks": lambda ws: teacher_tokenizer(ws, add_token),
    "teacher with a lower-casing normalizer": lambda ws: teacher_tokenizer(
        ws, lambda state: state.update(normalizer={"type": "Lowercase"})),
    "teacher with another pre-tokenizer": lambda ws: teacher_tokenizer(
        ws, lambda state: state.update(pre_tokenizer={"type": "Whitespace"})),
    "reference directory missing": lambda ws: ws.train("objective.name=gopd", "teacher.reference=/nonexistent/ref"),
    "teacher cache manifest with more rows than its shards": lambda ws: from_damaged_cache(
        ws, lambda cache, m: {**m, "rows": m["rows"] + 5}),
    "teacher cache manifest with more tokens than its shards": lambda ws: from_damaged_cache(
        ws, lambda cache, m: {**m, "tokens": m["tokens"] + 1}),
    "teacher cache manifest with more shards than exist": lambda ws: from_damaged_cache(
        ws, lambda cache, m: {**m, "shards": [*m["shards"], "shard-00001.safetensors"]}),
    "teacher cache manifest with a larger top_k than stored": lambda ws: from_damaged_cache(
        ws, lambda cache, m: {**m, "top_k": m["top_k"] + 3}),
    "teacher cache manifest with top_k not a number": lambda ws: from_damaged_cache(
        ws, lambda cache, m: {**m, "top_k": "five"}),
    "teacher cache shard truncated": lambda ws: from_damaged_cache(
        ws, lambda cache, m: truncate(cache / m["shards"][0]) or m),
    "teacher cache shard of another dtype": lambda ws: from_damaged_cache(ws, shard_as_int64),
    # the output directory
    "output_dir is a file": lambda ws: ws.train(f"output_dir={ws.file('afile', 'x')}"),
    "output_dir under a file": lambda ws: ws.train(f"output_dir={ws.file('afile', 'x')}/run"),
    "output_dir not writable": lambda ws: ws.train("output_dir=/proc/distillrl-run"),
    "existing run without --resume": lambda ws: ["train", str(ws.run / "config.yaml"), "--set", f"output_dir={ws.run}"],
    "--resume with --overwrite": lambda ws: [*ws.resume(), "--overwrite"],
    "--resume with a changed lr": lambda ws: ws.resume("optim.lr=0.01"),
    "--resume with a changed objective": lambda ws: ws.resume("objective.name=forward_kl"),
    "--resume with a changed seed": lambda ws: ws.resume("seed=7"),
    "--resume with a changed student": lambda ws: ws.resume("student.path=zoo:teacher-base"),
    "--resume with fewer steps than the checkpoint": lambda ws: ws.resume("optim.steps=1"),
    "--resume with every trainer state truncated": damage_all_checkpoints,
    "--resume with a broken metrics line": corrupt_middle_metrics_line,
    "--resume with a garbled teacher_eval.json": lambda ws: resume_with_teacher_eval(ws, '{"zoo:teacher": {"eval/ac'),
    "--resume with an empty teacher_eval.json": lambda ws: resume_with_teacher_eval(ws, ""),
    "--resume with a teacher_eval.json of another shape": lambda ws: resume_with_teacher_eval(
        ws, '{"zoo:teacher": 0.5}'),
    "--resume without the stored config": resume_without_stored_config,
    "--resume with a damaged stored config": resume_with_damaged_stored_config,
    "second run into a locked directory": lambda ws: ws.resume(),  # the test holds run/.lock
    "--overwrite of a copy of a checkout": lambda ws: [*ws.train(f"output_dir={foreign_folder(ws, git=True)}"),
                                                      "--overwrite"],
    "--overwrite of a folder of the user's": lambda ws: [*ws.train(f"output_dir={foreign_folder(ws)}"), "--overwrite"],
    "--resume into a folder of the user's": lambda ws: [*ws.train(f"output_dir={foreign_folder(ws)}"), "--resume"],
    "a new run into a folder of the user's": lambda ws: ws.train(f"output_dir={foreign_folder(ws)}"),
    "--overwrite of the filesystem root": lambda ws: [*ws.train("output_dir=/"), "--overwrite"],
    "--resume into the filesystem root": lambda ws: [*ws.train("output_dir=/"), "--resume"],
    "--overwrite of a run in a git work tree": overwrite_run_in_git_work_tree,
    "--resume of a finished run whose checkpoints are gone": lambda ws: shutil.rmtree(ws.run / "checkpoints") or ws.resume(),
    "--resume with a crafted pickle as trainer state": lambda ws: crafted_trainer_states(ws) or ws.resume("optim.steps=3"),
    "config is /dev/zero": lambda ws: ["train", "/dev/zero"],
    "config is 17 MiB": lambda ws: ["train", ws.file("big.yaml", "# " + "x" * (17 << 20) + "\n")],
    # prompt files
    "prompt file missing": lambda ws: ws.train("task.name=prompts", f"task.train_path={ws.root}/none.jsonl"),
    "prompt file empty jsonl": lambda ws: ws.prompts("p.jsonl", ""),
    "prompt file blank lines only": lambda ws: ws.prompts("p.jsonl", "\n \n"),
    "prompt file garbage parquet": lambda ws: ws.prompts("p.parquet", GARBAGE),
    "prompt file empty parquet": lambda ws: ws.prompts("p.parquet", b""),
    "prompt file not UTF-8": lambda ws: ws.prompts("p.jsonl", b'{"prompt": "1+1=\xff"}\n'),
    "prompt file invalid JSON line": lambda ws: ws.prompts("p.jsonl", '{"prompt": "1+1="}\n{"prompt": \n'),
    "prompt row without prompt": lambda ws: ws.prompts("p.jsonl", '{"question": "1+1="}\n'),
    "prompt row not an object": lambda ws: ws.prompts("p.jsonl", '["1+1="]\n'),
    "prompt answer of a wrong type": lambda ws: ws.prompts("p.jsonl", '{"prompt": "1+1=", "answer": [2]}\n'),
    "prompt file of an unknown format": lambda ws: ws.prompts("p.csv", "prompt\n1+1=\n"),
    "20 MB prompt": lambda ws: ws.prompts("p.jsonl", '{"prompt": "' + "1+" * 10_000_000 + '1="}\n'),
    "prompt longer than the context": lambda ws: ws.prompts("p.jsonl", '{"prompt": "' + "1+" * 150 + '1="}\n'),
    "prompt character outside the vocabulary": lambda ws: ws.prompts("p.jsonl", '{"prompt": "1+1=\\u00e9"}\n'),
    "prompt upper case outside the vocabulary": lambda ws: ws.prompts("p.jsonl", '{"prompt": "What is 1+1?"}\n'),
    "prompts without answers for grpo": lambda ws: ws.prompts(
        "p.jsonl", '{"prompt": "1+1="}\n', "objective.name=grpo", "teacher=null"),
    "prompts without completions for sft": lambda ws: ws.prompts(
        "p.jsonl", '{"prompt": "1+1=", "answer": "2"}\n', "objective.name=sft", "rollout.source=dataset", "teacher=null"),
    "prompt domain without a teacher": lambda ws: ws.prompts(
        "p.jsonl", DOMAIN_FILE, "teacher=null", "teachers=[{name: arith, path: 'zoo:teacher'}]"),
    "custom reward module missing": lambda ws: ws.prompts(
        "p.jsonl", '{"prompt": "1+1=", "answer": "2"}\n', "task.reward=no_such_module:score"),
    "custom reward file missing": lambda ws: ws.prompts(
        "p.jsonl", '{"prompt": "1+1=", "answer": "2"}\n', f"task.reward={ws.root}/none.py:score"),
    "answers no completion can state, for grpo": lambda ws: ws.prompts(
        "p.jsonl", '{"prompt": "1+1=", "answer": "Two"}\n', "objective.name=grpo", "teacher=null"),
    "answer_format unknown": lambda ws: ws.prompts("p.jsonl", '{"prompt": "1+1=", "answer": "2"}\n',
                                                   "task.answer_format=xml"),
    "answer_format regex that does not compile": lambda ws: ws.prompts("p.jsonl", ANSWERED, "task.answer_format=regex:(["),
    "answer_tag not a tag name": lambda ws: ws.prompts("p.jsonl", ANSWERED, "task.answer_format=tag",
                                                       "task.answer_tag=<answer>"),
    "answer_tag with a format that reads no tag": lambda ws: ws.prompts("p.jsonl", ANSWERED, "task.answer_format=hash",
                                                                        "task.answer_tag=final"),
    "held-out rows without answers": lambda ws: ws.prompts("p.jsonl", '{"prompt": "1+1="}\n'),
    "messages role the template rejects": lambda ws: ws.prompts(
        "p.jsonl", TOOL_ROW, f"student.path={student_with_template(ws, KNOWN_ROLES)}"),
    "template that renders no assistant turn": lambda ws: ws.prompts(
        "p.jsonl", ANSWERED, f"student.path={student_with_template(ws, NO_ASSISTANT)}"),
    "rollout.top_p 0": lambda ws: ws.train("rollout.top_p=0"),
    "rollout.min_p 1": lambda ws: ws.train("rollout.min_p=1"),
    "prompt row with both prompt and messages": lambda ws: ws.prompts(
        "p.jsonl", '{"prompt": "1+1=", "messages": [{"role": "user", "content": "1+1="}]}\n'),
    "messages turn without content": lambda ws: ws.prompts("p.jsonl", '{"messages": [{"role": "user"}]}\n'),
    "messages not a list": lambda ws: ws.prompts("p.jsonl", '{"messages": "1+1="}\n'),
    "messages holding only the answer": lambda ws: ws.prompts(
        "p.jsonl", '{"messages": [{"role": "assistant", "content": "2"}]}\n'),
    "prompt column mapped to a missing column": lambda ws: ws.prompts(
        "p.jsonl", '{"prompt": "1+1="}\n', "task.columns={prompt: question}"),
    "columns for both prompt and messages": lambda ws: ws.prompts(
        "p.jsonl", '{"prompt": "1+1="}\n', "task.columns={prompt: q, messages: m}"),
    "columns on a generated task": lambda ws: ws.train("task.columns={prompt: q}"),
    "columns naming an unknown field": lambda ws: ws.prompts("p.jsonl", '{"prompt": "1+1="}\n', "task.columns={query: q}"),
    "dataset directory without the test split": lambda ws: dataset_directory(ws, "task.columns={prompt: question}"),
    "dataset directory without the prompt column": lambda ws: dataset_directory(ws),
    "empty stop string": lambda ws: ws.train("rollout.stop_strings=['']"),
    "unknown truncation side": lambda ws: ws.train("task.truncate=middle"),
    "chat_template_kwargs not a mapping": lambda ws: ws.train("task.chat_template_kwargs=[enable_thinking]"),
    "teacher with another chat template": lambda ws: teacher_with(
        ws, lambda p: (p / "chat_template.jinja").write_text("Q: {{ messages[-1]['content'] }} A:")),
    "student without a chat template, teacher with one": lambda ws: teacher_with(
        ws, lambda p: (p / "chat_template.jinja").write_text("Q: {{ messages[-1]['content'] }} A:"),
        f"student.path={student_without_template(ws)}"),
    "prompt longer than the teacher's context": lambda ws: teacher_with(
        ws, lambda p: set_context(p, 40), "task.name=prompts", f"task.train_path={ws.file('p.jsonl', LONG_ROW)}",
        f"task.test_path={ws.root / 'p.jsonl'}"),
    # training that diverges
    "diverging run (lr 1e9)": lambda ws: ws.train("optim.lr=1e9", "checkpoint.every=0"),
    # eval
    "eval --n 0": lambda ws: ["eval", "--model", "zoo:student-base", "--n", "0"],
    "eval --n -5": lambda ws: ["eval", "--model", "zoo:student-base", "--n", "-5"],
    "eval --n not a number": lambda ws: ["eval", "--model", "zoo:student-base", "--n", "abc"],
    "eval missing model": lambda ws: ["eval", "--model", "/nonexistent/model", "--n", "4"],
    "eval missing task file": lambda ws: ["eval", "--model", "zoo:student-base", "--task", f"{ws.root}/none.jsonl"],
    "eval teacher with another tokenizer": lambda ws: [
        "eval", "--model", "zoo:student-base", "--teacher", ws.other_teacher, "--n", "4"],
    "eval prompt outside the vocabulary": lambda ws: [
        "eval", "--model", "zoo:student-base", "--task", ws.file("t.jsonl", '{"prompt": "1+1=\\u00e9", "answer": "2"}\n')],
    "eval --temperature -1": lambda ws: ["eval", "--model", "zoo:student-base", "--temperature", "-1"],
    "eval --precision fp16": lambda ws: ["eval", "--model", "zoo:student-base", "--precision", "fp16"],
    "eval --answer-format unknown": lambda ws: ["eval", "--model", "zoo:student-base", "--answer-format", "xml"],
    "eval --chat-template-kwargs not JSON": lambda ws: [
        "eval", "--model", "zoo:student-base", "--chat-template-kwargs", "{enable_thinking: false"],
    "eval --chat-template-kwargs a list": lambda ws: [
        "eval", "--model", "zoo:student-base", "--chat-template-kwargs", "[1]"],
    "eval --stop-string empty": lambda ws: ["eval", "--model", "zoo:student-base", "--stop-string", ""],
    "eval --batch-size 0": lambda ws: ["eval", "--model", "zoo:student-base", "--batch-size", "0"],
    "eval file without answers": lambda ws: ["eval", "--model", "zoo:student-base", "--task",
                                             ws.file("t.jsonl", '{"prompt": "1+1="}\n')],
    "eval --columns not a mapping": lambda ws: ["eval", "--model", "zoo:student-base", "--task",
                                                ws.file("t.jsonl", ANSWERED), "--columns", "[prompt]"],
    "eval --columns naming an unknown field": lambda ws: ["eval", "--model", "zoo:student-base", "--task",
                                                          ws.file("t.jsonl", ANSWERED), "--columns", "{query: q}"],
    "eval --columns not YAML": lambda ws: ["eval", "--model", "zoo:student-base", "--task",
                                           ws.file("t.jsonl", ANSWERED), "--columns", "{prompt: [q"],
    "eval --reward module missing": lambda ws: ["eval", "--model", "zoo:student-base", "--task",
                                                ws.file("t.jsonl", ANSWERED), "--reward", "no_such_module:score"],
    "eval --answer-format regex that does not compile": lambda ws: [
        "eval", "--model", "zoo:student-base", "--task", ws.file("t.jsonl", ANSWERED), "--answer-format", "regex:(["],
    "eval --answer-tag not a tag name": lambda ws: [
        "eval", "--model", "zoo:student-base", "--task", ws.file("t.jsonl", ANSWERED), "--answer-format", "tag",
        "--answer-tag", "<answer>"],
    "eval --answer-match unknown": lambda ws: ["eval", "--model", "zoo:student-base", "--answer-match", "fuzzy"],
    "eval --level unknown": lambda ws: ["eval", "--model", "zoo:student-base", "--level", "extreme"],
    "eval messages role the template rejects": lambda ws: [
        "eval", "--model", student_with_template(ws, KNOWN_ROLES), "--task", ws.file("t.jsonl", TOOL_ROW)],
    # export
    "export into a non-empty directory": lambda ws: ["export", str(ws.run), "--out", str(ws.run)],
    "export a missing model": lambda ws: ["export", "/nonexistent/run", "--out", f"{ws.root}/out"],
    "export under a file": lambda ws: ["export", str(ws.run), "--out", f"{ws.file('plain.txt', 'x')}/out"],
    # inspect
    "inspect --prompt empty": lambda ws: ["inspect", "--student", "zoo:student-base", "--teacher", "zoo:teacher",
                                          "--prompt", ""],
    "inspect --samples 0": lambda ws: ["inspect", "--student", "zoo:student-base", "--teacher", "zoo:teacher",
                                       "--prompt", "1+1=", "--samples", "0"],
    "inspect missing student": lambda ws: ["inspect", "--student", "/nonexistent/s", "--teacher", "zoo:teacher",
                                           "--prompt", "1+1="],
    "inspect --out under a file": lambda ws: ["inspect", "--student", "zoo:student-base", "--teacher", "zoo:teacher",
                                              "--prompt", "1+1=", "--out", f"{ws.file('plain.txt', 'x')}/x.html"],
    "inspect prompt outside the vocabulary": lambda ws: ["inspect", "--student", "zoo:student-base", "--teacher",
                                                         "zoo:teacher", "--prompt", "1+1=\u00e9"],
    "inspect teacher with another tokenizer": lambda ws: ["inspect", "--student", "zoo:student-base", "--teacher",
                                                          ws.other_teacher, "--prompt", "1+1="],
    # control
    "control teacher unknown env": lambda ws: ["control", "teacher", "--env", "NoSuchEnv-v0", "--out", f"{ws.root}/t.zip"],
    "control teacher sac on discrete actions": lambda ws: ["control", "teacher", "--env", "CartPole-v1", "--algo", "sac",
                                                           "--out", f"{ws.root}/t.zip"],
    "control teacher unknown algo": lambda ws: ["control", "teacher", "--env", "Pendulum-v1", "--algo", "ddpg", "--out",
                                                f"{ws.root}/t.zip"],
    "control teacher tuple observation space": lambda ws: ["control", "teacher", "--env", "Blackjack-v1", "--out",
                                                     f"{ws.root}/t.zip"],
    "control distill forward_kl with a TD3 teacher": lambda ws: control_config(
        ws, f"env: Pendulum-v1\nteacher: {{path: {td3_teacher(ws)}}}\nmethods: [{{name: forward_kl}}]\n"),
    "control distill hybrid with a TD3 teacher": lambda ws: control_config(
        ws, f"env: Pendulum-v1\nteacher: {{path: {td3_teacher(ws)}}}\nmethods: [{{name: hybrid, loss: mse}}]\n"),
    "control distill unknown student head": lambda ws: control_config(ws, "env: Pendulum-v1\nstudent: {head: beta}\n"),
    "control distill polynomial degree out of range": lambda ws: control_config(
        ws, "env: Pendulum-v1\nmethods: [{name: polynomial, degree: 5}]\n"),
    "control distill mse on discrete actions": lambda ws: control_config(ws, "methods: [{name: mse}]\n"),
    "control distill a discrete teacher on a Box env": lambda ws: control_config(
        ws, "env: Pendulum-v1\nteacher: {path: builtin:weak}\n".replace("builtin:weak", str(CARTPOLE_TEACHER))),
    "control distill vecnormalize file missing": lambda ws: control_config(
        ws, f"env: Pendulum-v1\nteacher: {{vecnormalize: {ws.root}/none.pkl}}\n"),
    "control distill config missing": lambda ws: ["control", "distill", f"{ws.root}/none.yaml"],
    "control distill unknown env": lambda ws: control_config(ws, "env: NoSuchEnv-v0\n"),
    "control distill teacher file missing": lambda ws: control_config(ws, f"teacher: {{path: {ws.root}/none.zip}}\n"),
    "control distill teacher file garbage": lambda ws: control_config(
        ws, f"teacher: {{path: {ws.file('t.zip', GARBAGE)}}}\n"),
    # the others
    "zoo build --only unknown": lambda ws: ["zoo", "build", "--only", "nope", "--out", f"{ws.root}/zoo"],
    "bench repro --only unknown": lambda ws: ["bench", "repro", "--only", "nope", "--out", f"{ws.root}/b",
                                              "--work", f"{ws.root}/w"],
    "demo --out a file": lambda ws: ["demo", "--out", ws.file("afile", "x")],
    "demo --out an existing run": lambda ws: ["demo", "--out", str(ws.run)],
}
PRINTS_BEFORE_FAILING = {"diverging run (lr 1e9)"}  # a run that starts, then stops: its progress comes first
SAYS = {  # what the error line of a case says (where the exit code alone would not tell the right error)
    "answer_format regex that does not compile": "task.answer_format: 'regex:([' is not a valid regular expression",
    "answer_tag not a tag name": "task.answer_tag: '<answer>' is not a tag name",
    "answer_tag with a format that reads no tag": "task.answer_tag: only answer_format tag or auto reads a tag",
    "held-out rows without answers": "p.jsonl:1: accuracy compares each held-out completion with its row's `answer`",
    "messages role the template rejects": "p.jsonl:1: the chat template of student.path ",
    "template that renders no assistant turn": "the chat template renders no assistant turn",
    "eval file without answers": "t.jsonl:1: accuracy compares each held-out completion with its row's `answer`",
    "eval --columns not a mapping": "--columns: must be a mapping",
    "eval --columns naming an unknown field": "--columns: Input should be 'prompt'",
    "eval --columns not YAML": "--columns: not JSON or YAML",
    "eval --reward module missing": "--reward: cannot import 'no_such_module'",
    "eval --answer-format regex that does not compile": "--answer-format: 'regex:([' is not a valid regular expression",
    "eval --answer-tag not a tag name": "--answer-tag: '<answer>' is not a tag name",
    "eval --answer-match unknown": "--answer-match: Input should be 'normalized' or 'math'",
    "eval --level unknown": "--level: unknown level 'extreme'",
    "eval messages role the template rejects": "t.jsonl:1: the chat template of --model ",
}  # a run that starts, then stops: its progress comes first


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every folder (None) under root."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes() for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("finished")
    config = root / "config.yaml"
    config.write_text(TINY.format(out=root / "run"))
    result = CliRunner().invoke(app, ["train", str(config)])
    assert result.exit_code == 0, result.output
    return root / "run"


@pytest.fixture(scope="module")
def stored_teacher(tmp_path_factory) -> Path:
    """zoo:teacher's scores (top 5) of four arith problems with their solutions: a `distillrl teacher cache`."""
    import random

    from distillrl.run.teacher_cache import write_teacher_cache
    from distillrl.tasks import ArithTask

    root = tmp_path_factory.mktemp("stored")
    rng = random.Random(0)
    rows = [ArithTask().sample_train(rng) for _ in range(4)]
    (root / "train.jsonl").write_text("".join(json.dumps({"prompt": p.prompt, "completion": p.solution,
                                                          "answer": p.answer}) + "\n" for p in rows))  # fmt: skip
    write_teacher_cache("zoo:teacher", str(root / "train.jsonl"), 5, root / "cache", device="cpu")
    return root / "cache"


@pytest.fixture(scope="module")
def other_teacher(tmp_path_factory) -> Path:
    """zoo:teacher with a tokenizer of the same size whose ids of `a` and `b` are swapped: another vocabulary."""
    import json

    path = tmp_path_factory.mktemp("other") / "teacher"
    shutil.copytree(ZOO_DIR / "teacher", path)
    state = json.loads((path / "tokenizer.json").read_text())
    vocab = state["model"]["vocab"]
    vocab["a"], vocab["b"] = vocab["b"], vocab["a"]
    (path / "tokenizer.json").write_text(json.dumps(state))
    return path


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 60


@pytest.mark.parametrize("case", CASES)
def test_a_bad_input_gives_one_line_exit_2_and_changes_nothing(case, tmp_path, finished_run, other_teacher,
                                                                stored_teacher):  # fmt: skip
    ws = Workspace(tmp_path, finished_run, other_teacher, stored_teacher)
    argv = CASES[case](ws)
    before = snapshot(tmp_path)
    lock = FileLock(ws.run / ".lock", timeout=0)
    if case == "second run into a locked directory":
        lock.acquire()
    try:
        result = CliRunner().invoke(app, argv)
    finally:
        lock.release()
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit), result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("distillrl: error: ")]
    assert len(errors) == 1 and result.stderr.splitlines()[-1] == errors[0], result.stderr
    assert SAYS.get(case, "") in errors[0], errors[0]
    if case not in PRINTS_BEFORE_FAILING:
        assert result.stderr == errors[0] + "\n" and result.stdout == "", result.output
    assert snapshot(tmp_path) == before


def test_debug_shows_the_traceback_instead(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("optim: {lr: abc}\n")
    result = CliRunner().invoke(app, ["--debug", "train", str(config)])
    assert result.exit_code == 1 and "distillrl: error" not in result.output
    assert type(result.exception).__name__ == "ConfigError"
