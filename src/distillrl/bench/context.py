"""What every benchmark experiment shares: its seeds, full or quick scale, and one way to run a training run.

A run is named (e.g. `opd`); two experiments that ask for the same name and seed share it, so the OPD run of
"OPD vs SFT vs GRPO" is also the OPD row of "strong -> weak". Each run's per-step metrics are copied to
`raw/EXPERIMENT/NAME-seedS.jsonl` beside the report.
"""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from distillrl.config import TrainConfig
from distillrl.core.errors import UserError
from distillrl.report.metrics import read_metrics
from distillrl.tasks.levels import MAX_NEW_TOKENS, level_task

QUICK_STEPS = 2  # --quick: every run takes this many optimizer steps
QUICK_EVAL_PROMPTS = 16  # --quick: held-out (or validation) prompts per evaluation
QUICK_PROMPTS_PER_STEP, QUICK_GROUP_SIZE = 4, 4  # --quick: at most this many prompts per step, samples per prompt


def merged(base: dict, changes: dict) -> dict:
    """`base` with `changes` applied recursively (a nested dict merges, anything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


BASE_RUN = {
    "student": {"path": "zoo:student-base"},
    "teacher": {"path": "zoo:teacher"},
    "task": {"name": "arith"},
    "rollout": {"source": "student", "prompts_per_step": 32, "group_size": 4, "temperature": 1.0, "max_new_tokens": 40},
    "objective": {"name": "reverse_kl", "fidelity": "sampled"},
    "optim": {"lr": 1e-3, "warmup_steps": 10, "schedule": "cosine", "min_lr_ratio": 0.1, "max_grad_norm": 1.0},
    "eval": {"every": 0, "num_prompts": 200, "temperature": 1.0, "max_new_tokens": 40},
    "checkpoint": {"every": 0, "keep": 1},
    "tensorboard": False,
}  # fmt: skip
"""The first test bed (round one, level standard): these settings, then the run's own (same decoding and 200
held-out prompts for all)."""

HARD_LEVEL = "hard"
HARD_RUN = merged(BASE_RUN, {
    "student": {"path": "zoo:hard-student-mid"},
    "teacher": {"path": "zoo:hard-teacher-arith"},
    "task": level_task("arith", HARD_LEVEL),
    "rollout": {"max_new_tokens": MAX_NEW_TOKENS[HARD_LEVEL]},
    "optim": {"schedule": "constant"},
    "eval": {"max_new_tokens": MAX_NEW_TOKENS[HARD_LEVEL], "at": [2, 4, 6, 8, 12, 16]},
})  # fmt: skip
"""The hard test bed (round two, docs/results/TESTBED.md): the mid-trained student (it skips its steps on half the
problems), the hard arith teacher (+0.235 over its pre-RL base zoo:hard-base at build), hard arith, 64-token
completions, a constant lr after the warm-up; 200 held-out prompts, greedy and sampled, evaluated densely early
(eval.at) where the curves move fastest."""

BEDS = {"standard": BASE_RUN, HARD_LEVEL: HARD_RUN}
"""Each task level's base run (its evaluation settings serve `BenchContext.evaluate`)."""


@dataclass
class Run:
    """One finished training run: its per-step records, teachers' and final evaluations, training seconds."""

    name: str
    seed: int
    records: list[dict]
    teachers: dict[str, dict]
    after: dict
    train_seconds: float  # optimizer steps only (sampling, scoring, update), evaluation excluded
    checkpoint: Path  # the final model
    metrics: Path  # the run's metrics.jsonl

    @property
    def evals(self) -> list[dict]:
        return [r for r in self.records if "eval/accuracy_greedy" in r]

    @property
    def teacher(self) -> dict:
        return next(iter(self.teachers.values()))


@dataclass
class BenchContext:
    seeds: list[int]
    quick: bool
    out_dir: Path  # docs/results: REPORT.md, plots, raw/
    work_dir: Path  # run directories (checkpoints), scratch
    lrs: dict[str, float] = field(default_factory=dict)  # each method's lr, chosen by the lr sweep (bench/sweep.py)
    eval_cache: dict = field(default_factory=dict)
    runs: dict = field(default_factory=dict)

    def steps(self, full: int) -> int:
        return QUICK_STEPS if self.quick else full

    def lr(self, method: str) -> float:
        """The learning rate the sweep chose for `method` (a key of sweep.GRIDS), the same for every seed."""
        if method not in self.lrs:
            raise UserError(f"bench: no lr for {method!r} from the lr sweep (have: {', '.join(self.lrs) or 'none'})")
        return self.lrs[method]

    def scaled(self, settings: dict, steps: int, eval_every: int = 0) -> dict:
        """`settings` for a run of `steps` optimizer steps, evaluated every N steps (--quick: QUICK_STEPS, evaluated
        before and after only)."""
        return merged(settings, {"optim": {"steps": self.steps(steps)}, "eval": {"every": 0 if self.quick else eval_every}})

    def train(self, experiment: str, name: str, seed: int, settings: dict, base: dict = BASE_RUN) -> Run:
        """Run `base` (BASE_RUN or HARD_RUN) + `settings` with this seed (once per name and seed in this process)."""
        from distillrl.run.trainer import train

        data = merged(base, settings)
        if self.quick:  # a smoke test: small batches and evaluations
            rollout = data["rollout"]
            data = merged(data, {"rollout": {"prompts_per_step": min(rollout["prompts_per_step"], QUICK_PROMPTS_PER_STEP),
                                             "group_size": min(rollout["group_size"], QUICK_GROUP_SIZE)},
                                 "eval": {"num_prompts": QUICK_EVAL_PROMPTS}})  # fmt: skip
        data["seed"] = seed
        data["output_dir"] = str(self.work_dir / f"{name}-seed{seed}")
        key = (name, seed)
        if key in self.runs:
            if self.runs[key][0] != data:
                raise ValueError(f"bench: run {name!r} is defined twice with different settings")
            run = self.runs[key][1]
        else:
            config = TrainConfig.model_validate(data)
            run_dir = Path(config.output_dir)
            summary = train(config, overwrite=run_dir.exists(), show_progress=not self.quick, eval_cache=self.eval_cache)
            records = read_metrics(run_dir)
            run = Run(
                name=name, seed=seed, records=records, teachers=summary["teachers"], after=summary["after"],
                train_seconds=sum(r.get("perf/step_seconds", 0.0) for r in records),
                checkpoint=run_dir / "checkpoints" / f"step_{config.optim.steps:06d}" / "model",
                metrics=run_dir / "metrics.jsonl",
            )  # fmt: skip
            self.runs[key] = (data, run)
        raw = self.out_dir / "raw" / experiment / f"{name}-seed{seed}.jsonl"
        raw.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run.metrics, raw)
        return run

    def evaluate(self, model_path: str | Path, task_name: str, level: str = "standard") -> dict:
        """A checkpoint's held-out metrics on a built-in task at a level (same prompts and decoding as the runs)."""
        from distillrl.config import TaskConfig
        from distillrl.models.loading import load_causal_lm, load_tokenizer
        from distillrl.run.evaluate import evaluate
        from distillrl.tasks import build_task

        key = json.dumps(["evaluate", str(model_path), task_name, level, self.quick])
        if key not in self.eval_cache:
            settings = BEDS[level]["eval"]
            task = build_task(TaskConfig.model_validate(level_task(task_name, level)))
            problems = task.test_problems(QUICK_EVAL_PROMPTS if self.quick else settings["num_prompts"])
            self.eval_cache[key] = evaluate(load_causal_lm(str(model_path)), load_tokenizer(str(model_path)), task,
                                            problems, None, settings["temperature"], settings["max_new_tokens"])  # fmt: skip
        return dict(self.eval_cache[key])
