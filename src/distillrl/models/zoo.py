"""The built-in model zoo: tiny Llama-architecture causal LMs trained from scratch on the CPU.

`build_zoo` initialises each model from a transformers `LlamaConfig` with a fixed seed and trains it with
the project's own loop and `sft` objective on `arith` solutions. The recipes below are the whole story:
the student is a smaller network given a much shorter SFT budget, so it starts far below the teacher.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from distillrl.config import TrainConfig
from distillrl.models.loading import ZOO_DIR
from distillrl.models.tokenizer import build_char_tokenizer


@dataclass(frozen=True)
class ZooModel:
    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    sft_steps: int
    lr: float
    seed: int
    description: str
    overrides: dict = field(default_factory=dict)


ZOO = {
    "teacher": ZooModel("teacher", 128, 4, 4, 384, sft_steps=2500, lr=2e-3, seed=1,
                        description="the teacher: 4 layers x 128, fully SFT-trained on arith"),
    "student-base": ZooModel("student-base", 64, 3, 4, 192, sft_steps=200, lr=2e-3, seed=2,
                             description="the weak student: 3 layers x 64, briefly SFT-trained on arith"),
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


def sft_config(spec: ZooModel, init_path: Path, output_dir: Path) -> TrainConfig:
    """The SFT recipe that trains a zoo model on arith solutions."""
    data = {
        "seed": spec.seed,
        "output_dir": str(output_dir),
        "student": {"path": str(init_path)},
        "teacher": None,
        "rollout": {"source": "dataset", "prompts_per_step": 64},
        "objective": {"name": "sft"},
        "optim": {"steps": spec.sft_steps, "lr": spec.lr, "warmup_steps": 50, "schedule": "cosine",
                  "min_lr_ratio": 0.05, "weight_decay": 0.01},
        "eval": {"every": max(spec.sft_steps // 5, 1), "num_prompts": 200},
        "checkpoint": {"every": 0, "keep": 1},
        "tensorboard": False,
        **spec.overrides,
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
            init_path = work / f"{name}-init"
            init_model(spec, len(tokenizer), tokenizer).save_pretrained(init_path)
            tokenizer.save_pretrained(init_path)
            summary = train(sft_config(spec, init_path, work / f"{name}-run"))
            final = Path(summary["run_dir"]) / "checkpoints" / f"step_{spec.sft_steps:06d}" / "model"
            target = out_dir / name
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(final, target)
            results[name] = summary["after"]
    return results
