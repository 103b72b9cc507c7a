"""Building the zoo: each recipe of zoo/recipes.py trained with the project's own loop, stage by stage, and saved
under OUT/NAME with its build record (EVAL_FILE)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from distillrl.config import TrainConfig
from distillrl.core.errors import UserError
from distillrl.core.files import write_text_atomic
from distillrl.models import zoo_paths
from distillrl.models.tokenizer import build_char_tokenizer
from distillrl.run.trainer import train
from distillrl.tasks.levels import MAX_NEW_TOKENS, level_task
from distillrl.zoo import recipes
from distillrl.zoo.recipes import EVAL_FILE, Stage, ZooModel


def init_model(spec: ZooModel, vocab_size: int, tokenizer):
    """A freshly initialised Llama causal LM of the spec's shape (seeded)."""
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
    for folder in (out_dir, zoo_paths.ZOO_DIR):
        if (folder / spec.init_from / "config.json").exists():
            return folder / spec.init_from
    raise FileNotFoundError(f"zoo: {spec.name} starts from {spec.init_from}, which is neither in {out_dir} nor "
                            f"shipped in {zoo_paths.ZOO_DIR}; build it first (--only {spec.init_from})")  # fmt: skip


def build_zoo(out_dir: str | Path, names: list[str] | None = None, work_dir: str | Path | None = None) -> dict:
    """Train the zoo models (in ZOO order, so a base is built before the models that start from it) and save
    them (HF layout, safetensors, with the tokenizer) under out_dir/NAME. Returns each model's final evaluation
    and what it started from (`init`: a fresh initialisation or a base model's path)."""
    out_dir = Path(out_dir)
    tokenizer = build_char_tokenizer()
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(work_dir) if work_dir else Path(scratch)
        for name in [n for n in recipes.ZOO if names is None or n in names]:
            spec = recipes.ZOO[name]
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
