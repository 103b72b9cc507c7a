"""The built-in model zoo: tiny Llama-architecture causal LMs trained from scratch on the CPU.

`build_zoo` initialises each model from a transformers `LlamaConfig` with a fixed seed (or starts from another
zoo model) and trains it with the project's own loop, stage by stage: `sft` on task solutions, or `grpo` on the
task's verifiable reward. The recipes below are the whole story:

- `teacher-base` (4 x 128) learns arith with chain of thought by SFT; `teacher` is teacher-base after GRPO, so
  G-OPD's reward correction has a real pre-RL base.
- `student-base` (3 x 64, 5x smaller) learns to solve step by step and is then tuned to answer without showing
  its steps, like a non-thinking model: on-policy distillation has to bring the teacher's behaviour back.
- `domain-base` (3 x 96) learns both domains (arith and lists) by SFT; `teacher-arith` and `teacher-lists` are
  it after GRPO on one domain each: two same-size domain experts from one base, for multi-teacher fusion.
- The hard bed (tasks at level "hard", distillrl.tasks.levels), where RL has something to find: `hard-base`
  (3 x 96) learns hard arith and lists, then skips its steps on half the problems; `hard-teacher-arith` and
  `hard-teacher-lists` are it after GRPO on one domain each (which brings the steps back: the gains are in each
  model's zoo_eval.json); `hard-student-mid` (3 x 64) learns hard arith with chain of thought and is then tuned
  like hard-base to skip its steps on half the problems: a mid-trained student at about half the arith teacher's
  accuracy whose gap is mostly behaviour, which RL as well as distillation can find.

Each built model gets EVAL_FILE beside it: its held-out accuracy at build time (and its base's), for `zoo list`.

The shipped models live in ZOO_DIR (`zoo:NAME` loads them). The recipes import nothing heavy (the command
line lists their names in its help); torch, transformers and the trainer load when a model is built.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from distillrl.errors import UserError
from distillrl.files import write_text_atomic

ZOO_DIR = Path(__file__).resolve().parent.parent / "zoo" / "checkpoints"
EVAL_FILE = "zoo_eval.json"  # written beside each built model: its held-out accuracy (and its base's)


@dataclass(frozen=True)
class Stage:
    """One training stage of a zoo recipe."""

    steps: int
    lr: float
    objective: str = "sft"  # sft on the task's solutions, or grpo on its verifiable reward
    task: str = "arith"  # arith, lists or mix
    level: str = "standard"  # the task's level (distillrl.tasks.levels): its difficulty and completion length
    cot_fraction: float = 1.0  # sft: share of solutions (arith, lists' sum) that show their steps; the rest answer only
    warmup_steps: int = 50
    schedule: str = "cosine"


@dataclass(frozen=True)
class ZooModel:
    name: str
    description: str
    stages: tuple[Stage, ...]
    seed: int
    hidden_size: int = 0  # shape of a freshly initialised model (unused with init_from)
    num_layers: int = 0
    num_heads: int = 4
    intermediate_size: int = 0
    init_from: str | None = None  # start from this zoo model's weights instead of a fresh initialisation


GRPO_STAGE = dict(objective="grpo", warmup_steps=5, schedule="constant")
HARD_SKIP_STAGE = dict(steps=30, lr=5e-4, level="hard", cot_fraction=0.5, warmup_steps=10, schedule="constant")
"""The hard bed's second SFT stage: half the solutions skip their steps (a model that thinks on part of them)."""
ZOO = {
    "teacher-base": ZooModel(
        "teacher-base", "4 layers x 128: SFT on arith solutions (chain of thought)",
        stages=(Stage(steps=1000, lr=2e-3),), seed=1, hidden_size=128, num_layers=4, intermediate_size=384,
    ),
    "teacher": ZooModel(
        "teacher", "teacher-base after GRPO on the arith verifier (the first bed's RL stage, which finds nothing to "
        "gain: a teacher for the demo and the small-gain end of the ExOPD ablation)",
        stages=(Stage(steps=120, lr=3e-5, **GRPO_STAGE),), seed=1, init_from="teacher-base",
    ),
    "student-base": ZooModel(
        "student-base", "3 layers x 64: SFT with chain of thought, then tuned to answer without steps "
        "(a non-thinking student)",
        stages=(Stage(steps=1400, lr=2e-3), Stage(steps=150, lr=5e-4, cot_fraction=0.0, warmup_steps=10,
                                                  schedule="constant")),
        seed=2, hidden_size=64, num_layers=3, intermediate_size=192,
    ),
    "domain-base": ZooModel(
        "domain-base", "3 layers x 96: SFT on arith and lists (the shared base of the domain teachers)",
        stages=(Stage(steps=600, lr=2e-3, task="mix"),), seed=3, hidden_size=96, num_layers=3, intermediate_size=288,
    ),
    "teacher-arith": ZooModel(
        "teacher-arith", "domain-base after GRPO on arith (first bed: a small RL gain, for the ExOPD ablation)",
        stages=(Stage(steps=150, lr=5e-5, task="arith", **GRPO_STAGE),), seed=4, init_from="domain-base",
    ),
    "teacher-lists": ZooModel(
        "teacher-lists", "domain-base after GRPO on lists (first bed: a small RL gain, for the ExOPD ablation)",
        stages=(Stage(steps=150, lr=5e-5, task="lists", **GRPO_STAGE),), seed=5, init_from="domain-base",
    ),
    # The hard test bed (issue 13): arith and lists at level "hard", where GRPO has something to find.
    "hard-base": ZooModel(
        "hard-base", "3 layers x 96: SFT on hard arith and lists, then tuned to skip the steps (arith's, and the "
        "running sums of lists' sum) on half the problems (a base that does not always think)",
        stages=(Stage(steps=1500, lr=2e-3, task="mix", level="hard"), Stage(task="mix", **HARD_SKIP_STAGE)),
        seed=31, hidden_size=96, num_layers=3, intermediate_size=288,
    ),
    "hard-teacher-arith": ZooModel(
        "hard-teacher-arith", "hard-base after GRPO on hard arith",
        stages=(Stage(steps=20, lr=1e-4, task="arith", level="hard", **GRPO_STAGE),), seed=13, init_from="hard-base",
    ),
    "hard-teacher-lists": ZooModel(
        "hard-teacher-lists", "hard-base after GRPO on hard lists",
        stages=(Stage(steps=20, lr=1e-4, task="lists", level="hard", **GRPO_STAGE),), seed=14, init_from="hard-base",
    ),
    "hard-student-mid": ZooModel(
        "hard-student-mid", "3 layers x 64: SFT on hard arith with chain of thought, then tuned to skip the steps on "
        "half the problems (a mid-trained student at about half the teacher's accuracy, thinking on part of them)",
        stages=(Stage(steps=1400, lr=2e-3, task="arith", level="hard"), Stage(task="arith", **HARD_SKIP_STAGE)),
        seed=12, hidden_size=64, num_layers=3, intermediate_size=192,
    ),
}  # fmt: skip


def init_model(spec: ZooModel, vocab_size: int, tokenizer):
    """A freshly initialised Llama causal LM of the spec's shape (seeded)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(spec.seed)
    return LlamaForCausalLM(config)


def stage_config(spec: ZooModel, stage: Stage, init_path: Path, output_dir: Path):
    """The training run (a TrainConfig) of one stage of a zoo recipe: SFT on solutions, or GRPO (8 samples per
    prompt)."""
    from distillrl.config import TrainConfig
    from distillrl.tasks.levels import MAX_NEW_TOKENS, level_task

    max_new_tokens = MAX_NEW_TOKENS[stage.level]
    if stage.objective == "sft":
        rollout = {"source": "dataset", "prompts_per_step": 64}
    else:
        rollout = {"source": "student", "prompts_per_step": 32, "group_size": 8, "max_new_tokens": max_new_tokens}
    data = {
        "seed": spec.seed,
        "output_dir": str(output_dir),
        "student": {"path": str(init_path)},
        "teacher": None,
        "task": level_task(stage.task, stage.level, cot_fraction=stage.cot_fraction),
        "rollout": rollout,
        "objective": {"name": stage.objective},
        "optim": {"steps": stage.steps, "lr": stage.lr, "warmup_steps": stage.warmup_steps,
                  "schedule": stage.schedule, "min_lr_ratio": 0.05, "weight_decay": 0.01},
        "eval": {"every": max(stage.steps // 5, 1), "num_prompts": 200, "max_new_tokens": max_new_tokens},
        "checkpoint": {"every": 0, "keep": 1},
        "tensorboard": False,
    }  # fmt: skip
    return TrainConfig.model_validate(data)


def base_model_path(spec: ZooModel, out_dir: Path) -> Path:
    """Where a model that starts from another zoo model finds it: built into out_dir (this build or an earlier
    one), else the shipped one."""
    for folder in (out_dir, ZOO_DIR):
        if (folder / spec.init_from / "config.json").exists():
            return folder / spec.init_from
    raise FileNotFoundError(f"zoo: {spec.name} starts from {spec.init_from}, which is neither in {out_dir} nor "
                            f"shipped in {ZOO_DIR}; build it first (--only {spec.init_from})")  # fmt: skip


def build_zoo(out_dir: str | Path, names: list[str] | None = None, work_dir: str | Path | None = None) -> dict:
    """Train the zoo models (in ZOO order, so a base is built before the models that start from it) and save
    them (HF layout, safetensors, with the tokenizer) under out_dir/NAME. Returns each model's final evaluation
    and what it started from (`init`: a fresh initialisation or a base model's path)."""
    from distillrl.models.tokenizer import build_char_tokenizer
    from distillrl.trainer import train

    out_dir = Path(out_dir)
    tokenizer = build_char_tokenizer()
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(work_dir) if work_dir else Path(scratch)
        for name in [n for n in ZOO if names is None or n in names]:
            spec = ZOO[name]
            if spec.init_from is not None:
                model_path = start = base_model_path(spec, out_dir)
            else:
                model_path, start = work / f"{name}-init", "a fresh initialisation"
                init_model(spec, len(tokenizer), tokenizer).save_pretrained(model_path)
                tokenizer.save_pretrained(model_path)
            summaries = []
            for index, stage in enumerate(spec.stages):
                summaries.append(train(stage_config(spec, stage, model_path, work / f"{name}-stage{index}")))
                model_path = Path(summaries[-1]["run_dir"]) / "final"
            target = out_dir / name
            if target.exists() and not (target / EVAL_FILE).exists():
                raise UserError(f"--out {out_dir}: {target} exists and is not a zoo model (no {EVAL_FILE}); choose "
                                "another --out")  # fmt: skip
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(model_path, target)
            write_text_atomic(target / EVAL_FILE, json.dumps(build_record(spec, summaries), indent=1) + "\n")
            results[name] = {**summaries[-1]["after"], "init": str(start)}
    return results


def build_record(spec: ZooModel, summaries: list[dict]) -> dict:
    """What a build measured (saved beside the model as EVAL_FILE): the held-out greedy accuracy after the last
    stage on its task and level; for a model that starts from a base, also the base's accuracy there (before the
    first stage), so an RL stage's gain reads off the record."""
    last = spec.stages[-1]
    record = {"task": last.task, "level": last.level, "accuracy_greedy": summaries[-1]["after"]["eval/accuracy_greedy"]}
    if spec.init_from is not None:
        first = spec.stages[0]
        record |= {"base": spec.init_from, "base_task": first.task, "base_level": first.level,
                   "base_accuracy_greedy": summaries[0]["before"]["eval/accuracy_greedy"]}
    return record


def read_build_record(path: Path) -> dict | None:
    """The EVAL_FILE of a built model folder, or None when it has none (models shipped before it existed)."""
    file = path / EVAL_FILE
    return json.loads(file.read_text()) if file.exists() else None


def describe_build_record(record: dict | None) -> str:
    """One line for `zoo list`: `0.620 (arith, hard); base hard-base 0.450 (+0.170 of +0.550 possible)`, or `-`
    without a record. The headroom, 1 - the base's accuracy, says what an RL stage could have gained at most."""
    if record is None:
        return "-"
    line = f"{record['accuracy_greedy']:.3f} ({record['task']}, {record['level']})"
    if "base" in record:
        base = record["base_accuracy_greedy"]
        gain = record["accuracy_greedy"] - base
        line += f"; base {record['base']} {base:.3f} ({gain:+.3f} of {1 - base:+.3f} possible)"
    return line
