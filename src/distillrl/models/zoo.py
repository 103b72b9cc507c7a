"""The built-in model zoo: tiny Llama-architecture causal LMs trained from scratch on the CPU.

`build_zoo` initialises each model from a transformers `LlamaConfig` with a fixed seed and trains it with
the project's own loop and `sft` objective on `arith` solutions, stage by stage. The recipes below are the
whole story. The student is a 5x smaller network that learns to solve step by step and is then tuned to
answer without showing its steps, like a non-thinking model: it starts far below the teacher, and
on-policy distillation has to bring the teacher's step-by-step behaviour (and accuracy) back.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from distillrl.config import TrainConfig
from distillrl.models.loading import ZOO_DIR
from distillrl.models.tokenizer import build_char_tokenizer


@dataclass(frozen=True)
class SFTStage:
    """One supervised stage of a zoo recipe, on `arith` solutions."""

    steps: int
    lr: float
    cot_fraction: float = 1.0  # share of solutions that show their steps; the rest are answer-only
    warmup_steps: int = 50
    schedule: str = "cosine"


@dataclass(frozen=True)
class ZooModel:
    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    seed: int
    description: str
    stages: tuple[SFTStage, ...]


ZOO = {
    "teacher": ZooModel(
        "teacher", 128, 4, 4, 384, seed=1,
        description="4 layers x 128: SFT on arith solutions (chain of thought)",
        stages=(SFTStage(steps=1000, lr=2e-3),),
    ),
    "student-base": ZooModel(
        "student-base", 64, 3, 4, 192, seed=2,
        description="3 layers x 64: SFT with chain of thought, then tuned to answer without steps "
        "(a non-thinking student)",
        stages=(SFTStage(steps=1400, lr=2e-3), SFTStage(steps=150, lr=5e-4, cot_fraction=0.0, warmup_steps=10,
                                                          schedule="constant")),
    ),
}  # fmt: skip


def init_model(spec: ZooModel, vocab_size: int, tokenizer) -> LlamaForCausalLM:
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


def sft_config(spec: ZooModel, stage: SFTStage, init_path: Path, output_dir: Path) -> TrainConfig:
    """The SFT run of one stage of a zoo recipe."""
    data = {
        "seed": spec.seed,
        "output_dir": str(output_dir),
        "student": {"path": str(init_path)},
        "teacher": None,
        "task": {"name": "arith", "cot_fraction": stage.cot_fraction},
        "rollout": {"source": "dataset", "prompts_per_step": 64},
        "objective": {"name": "sft"},
        "optim": {"steps": stage.steps, "lr": stage.lr, "warmup_steps": stage.warmup_steps,
                  "schedule": stage.schedule, "min_lr_ratio": 0.05, "weight_decay": 0.01},
        "eval": {"every": max(stage.steps // 5, 1), "num_prompts": 200},
        "checkpoint": {"every": 0, "keep": 1},
        "tensorboard": False,
    }  # fmt: skip
    return TrainConfig.model_validate(data)


def build_zoo(out_dir: str | Path = ZOO_DIR, names: list[str] | None = None, work_dir: str | Path | None = None) -> dict:
    """Train the zoo models and save them (HF layout, safetensors, with the tokenizer) under out_dir/NAME."""
    from distillrl.trainer import train

    out_dir = Path(out_dir)
    tokenizer = build_char_tokenizer()
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(work_dir) if work_dir else Path(scratch)
        for name in names or list(ZOO):
            spec = ZOO[name]
            model_path = work / f"{name}-init"
            init_model(spec, len(tokenizer), tokenizer).save_pretrained(model_path)
            tokenizer.save_pretrained(model_path)
            for index, stage in enumerate(spec.stages):
                summary = train(sft_config(spec, stage, model_path, work / f"{name}-stage{index}"))
                model_path = Path(summary["run_dir"]) / "checkpoints" / f"step_{stage.steps:06d}" / "model"
            target = out_dir / name
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(model_path, target)
            results[name] = summary["after"]
    return results
