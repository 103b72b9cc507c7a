"""distillrl's side of `bench speed`: its real training loop (`trainer.train`) on the bench models.

Step times come from the run's metrics.jsonl (`perf/step_seconds`, which leaves out the evaluations before
the first and after the last step); the phases from `perf/rollout_seconds` (generation), `perf/score_seconds`
(teacher and old-policy scoring) and `perf/update_seconds` (student forward, backward and optimizer step) where
the trainer records them. Evaluation is shrunk to one prompt and one token, checkpointing to the end.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from distillrl.bench.peak_memory import PeakMemory
from distillrl.bench.speed_setup import BenchModels
from distillrl.bench.speed_spec import Segment, SpeedSetting, distillrl_tool
from distillrl.config import ConfigError, TrainConfig, apply_override, format_validation_error
from distillrl.report.metrics import read_metrics

PHASE_METRICS = {"generation": "perf/rollout_seconds", "teacher": "perf/score_seconds",
                 "student": "perf/update_seconds"}  # fmt: skip


def distillrl_config(setting: SpeedSetting, models: BenchModels, fidelity: str, steps: int, seed: int,
                     run_dir: Path, overrides: list[str] = ()) -> TrainConfig:  # fmt: skip
    """The TrainConfig of one segment; `device` is set where this distillrl has that field, then `overrides`
    (`a.b=value`, as `--set`) apply."""
    data = {
        "seed": seed,
        "output_dir": str(run_dir),
        "precision": setting.precision,
        "student": {"path": models.student},
        "teacher": {"path": models.teacher},
        "task": {"name": "prompts", "train_path": models.prompts, "test_path": models.prompts,
                 "answer_format": "last_line"},  # the dummy answers are one token (speed_setup.save_bench_models)
        "rollout": {"source": "student", "prompts_per_step": setting.prompts, "group_size": 1, "temperature": 1.0,
                    "max_new_tokens": setting.new_tokens},
        "objective": {"name": "reverse_kl", "fidelity": fidelity},
        "optim": {"steps": steps, "lr": setting.lr, "schedule": "constant", "grad_accum": 1},
        "eval": {"every": 0, "num_prompts": 1, "max_new_tokens": 1, "batch_size": 1},
        "checkpoint": {"every": 0, "keep": 1},
        "tensorboard": False,
    }  # fmt: skip
    if "device" in TrainConfig.model_fields:
        data["device"] = setting.device
    overridden = {apply_override(data, assignment) for assignment in overrides}
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, "bench speed", None, overridden, TrainConfig)) from None


def run_distillrl_segment(setting: SpeedSetting, models: BenchModels, fidelity: str, steps: int, seed: int,
                          run_dir: Path, round_index: int, overrides: list[str] = ()) -> Segment:  # fmt: skip
    from distillrl.run.trainer import train

    config = distillrl_config(setting, models, fidelity, steps, seed, run_dir, overrides)
    with PeakMemory(setting.device) as peak:
        train(config, show_progress=False)
    records = [r for r in read_metrics(run_dir) if "perf/step_seconds" in r]
    phases = {name: [r.get(key) for r in records] for name, key in PHASE_METRICS.items()}
    return Segment(
        tool=distillrl_tool(fidelity),
        round=round_index,
        step_seconds=[r["perf/step_seconds"] for r in records],
        completion_tokens=[round(r["perf/tokens_per_second"] * r["perf/step_seconds"]) for r in records],
        generation_seconds=phases["generation"],
        teacher_seconds=phases["teacher"],
        student_seconds=phases["student"],
        peak_memory_bytes=peak.bytes,
    )
