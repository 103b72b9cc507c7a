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

The shipped models live in ZOO_DIR (models/zoo_paths.py; `zoo:NAME` loads them). This module imports nothing
heavy (the command line lists the names in its help); zoo/build.py trains them with the trainer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

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
