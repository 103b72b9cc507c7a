"""`distillrl bench speed`: distillrl's on-policy reverse-KL step against TRL's DistillationTrainer, interleaved.

Both tools train the same saved random-init student against the same teacher, on the same prompts, batch,
lengths, learning rate and precision (see speed_spec). One process runs `rounds` rounds; each round runs
`steps` optimizer steps of distillrl (full-vocabulary reverse KL) and `steps` of TRL, alternating which goes
first, so that drift in the machine's load falls on both. The last round also runs distillrl with the
sampled-token loss (`fidelity: sampled`), for its step time and peak memory against the full-vocabulary loss.

Per tool, over the timed steps (every step but the first of each segment, which warms up):
    s/step            median step seconds
    completion tok/s  median completion tokens per step / median s/step
    phases            median seconds of generation, teacher forward, student step (where the tool reports them)
    generation tok/s  median completion tokens per step / median generation seconds
    peak memory       the largest segment peak (PeakMemory: CUDA allocator peak, or sampled process RSS)
"""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import torch

from distillrl.bench.peak_memory import PeakMemory
from distillrl.bench.speed_distillrl import distillrl_config, run_distillrl_segment
from distillrl.bench.speed_setup import BenchModels, save_bench_models
from distillrl.bench.speed_spec import SETTINGS, TRL_TOOL, Segment, SpeedSetting, distillrl_tool
from distillrl.bench.speed_trl import import_trl, run_trl_segment
from distillrl.config import TrainConfig
from distillrl.core.errors import UserError

DISTILLRL_FULL, DISTILLRL_SAMPLED, TRL = distillrl_tool("full"), distillrl_tool("sampled"), TRL_TOOL
PHASES = ("generation", "teacher", "student")
PROMPT_POOL = 4  # prompts written per step's worth: the pool both tools draw from


class SpeedBenchError(UserError):
    """A setting that cannot run here (no CUDA for `gpu`, a distillrl without device placement)."""


def check_runnable(setting: SpeedSetting, overrides: list[str]) -> None:
    """Refuse what cannot run here before any model is built (a bad `--set` included)."""
    placeholder = BenchModels(student="student", teacher="teacher", prompts="prompts.jsonl", prompt_list=[])
    distillrl_config(setting, placeholder, "full", 2, 0, Path("run"), overrides)
    if setting.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SpeedBenchError(f"--config {setting.name} needs a CUDA GPU; none is visible (try --config cpu)")
        if "device" not in TrainConfig.model_fields:
            raise SpeedBenchError(f"--config {setting.name}: this distillrl has no `device` setting, so its side "
                                  "would run on the CPU")  # fmt: skip


def build_models(setting: SpeedSetting, where: Path) -> BenchModels:
    dtype = torch.bfloat16 if setting.precision == "bf16" else torch.float32
    return save_bench_models(where, architecture=setting.architecture, student=setting.student,
                             teacher=setting.teacher, tokenizer_kind=setting.tokenizer, vocab_size=setting.vocab_size,
                             dtype=dtype, device=setting.device, prompts=setting.prompts * PROMPT_POOL,
                             prompt_tokens=setting.prompt_tokens, extra_config=setting.extra_config)  # fmt: skip


def release_memory(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def schedule(rounds: int) -> list[tuple[int, str]]:
    """(round, contestant) in run order: distillrl's full loss and TRL each round, the first of the two
    alternating; the last round adds distillrl's sampled-token loss."""
    order = []
    for index in range(rounds):
        pair = [DISTILLRL_FULL, TRL] if index % 2 == 0 else [TRL, DISTILLRL_FULL]
        order += [(index, tool) for tool in pair + ([DISTILLRL_SAMPLED] if index == rounds - 1 else [])]
    return order


def run_segment(setting: SpeedSetting, models: BenchModels, tool: str, index: int, steps: int, work: Path,
                overrides: list[str]) -> Segment:  # fmt: skip
    if tool == TRL:
        return run_trl_segment(setting, models, steps, index, work / f"trl-{index}", index)
    fidelity = "full" if tool == DISTILLRL_FULL else "sampled"
    return run_distillrl_segment(setting, models, fidelity, steps, index, work / f"distillrl-{fidelity}-{index}",
                                 index, overrides)  # fmt: skip


def run_segments(setting: SpeedSetting, models: BenchModels, rounds: int, steps: int, work: Path,
                 overrides: list[str], on_segment=None) -> list[Segment]:  # fmt: skip
    segments = []
    for index, tool in schedule(rounds):
        segments.append(run_segment(setting, models, tool, index, steps, work, overrides))
        release_memory(setting.device)
        if on_segment is not None:
            on_segment(segments[-1])
    return segments


def median_or_none(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def timed_values(segments: list[Segment], name: str) -> list:
    """A per-step field of every segment, each segment's first (warm-up) step dropped."""
    return [value for segment in segments for value in getattr(segment, name)[1:]]


def summarize_tool(segments: list[Segment]) -> dict:
    """The statistics of one tool over its timed steps."""
    timed = lambda name: timed_values(segments, name)  # noqa: E731
    seconds = statistics.median(timed("step_seconds"))
    tokens = statistics.median(timed("completion_tokens"))
    phases = {name: median_or_none(timed(f"{name}_seconds")) for name in PHASES}
    return {
        "timed_steps": len(timed("step_seconds")),
        "step_seconds": seconds,
        "step_seconds_all": [s.step_seconds for s in segments],
        "completion_tokens_per_step": tokens,
        "completion_tokens_per_second": tokens / seconds,
        "phase_seconds": phases,
        "generation_tokens_per_second": tokens / phases["generation"] if phases["generation"] else None,
        "peak_memory_bytes": max(s.peak_memory_bytes for s in segments),
    }


def per_round_ratios(segments: list[Segment], rounds: int) -> list[float]:
    """Median distillrl (full) s/step over median TRL s/step within each round: pairs run minutes apart, so
    slow drift in the machine's load cancels out of each."""
    def round_median(tool: str, index: int) -> float:
        return statistics.median(timed_values([s for s in segments if s.tool == tool and s.round == index],
                                              "step_seconds"))  # fmt: skip

    return [round_median(DISTILLRL_FULL, index) / round_median(TRL, index) for index in range(rounds)]


def acceptance(setting: SpeedSetting, tools: dict) -> dict:
    """Issue 15's acceptance checks that apply to this setting: name -> (measured, target, passed)."""
    full, trl, sampled = tools[DISTILLRL_FULL], tools[TRL], tools[DISTILLRL_SAMPLED]
    checks = {}
    if setting.name == "cpu":
        ratio = full["step_seconds"] / trl["step_seconds"]
        checks["distillrl / TRL s/step <= 0.5"] = (ratio, 0.5, ratio <= 0.5)
    if setting.name == "gpu":
        checks["distillrl s/step <= 2.0"] = (full["step_seconds"], 2.0, full["step_seconds"] <= 2.0)
        rate = full["generation_tokens_per_second"]
        checks["generation tok/s >= 6000"] = (rate, 6000.0, rate is not None and rate >= 6000)
        memory = full["peak_memory_bytes"] / sampled["peak_memory_bytes"]
        checks["full / sampled peak memory <= 1.1"] = (memory, 1.1, memory <= 1.1)
    return {name: {"measured": m, "target": t, "passed": p} for name, (m, t, p) in checks.items()}


def environment(setting: SpeedSetting) -> dict:
    trl = import_trl()
    import transformers

    return {
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name() if setting.device.startswith("cuda") else None,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def run_speed_bench(name: str, rounds: int | None = None, steps: int | None = None, overrides: list[str] = (),
                    precision: str | None = None, on_segment=None) -> dict:  # fmt: skip
    """Run the named setting (SETTINGS), at `precision` for both tools when given, and return the JSON-ready
    result."""
    setting = SETTINGS[name]
    if precision is not None:
        setting = replace(setting, precision=precision)
    rounds, steps = rounds or setting.rounds, steps or setting.steps
    if steps < 2:
        raise SpeedBenchError("--steps: at least 2 (the first step of every segment is a warm-up)")
    check_runnable(setting, list(overrides))
    result = {"setting": setting.to_json(), "rounds": rounds, "steps": steps, "overrides": list(overrides),
              "environment": environment(setting), "memory_measure": PeakMemory(setting.device).kind,
              "load_average_before": os.getloadavg()}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="distillrl-bench-speed-") as work:
        models = build_models(setting, Path(work) / "models")
        release_memory(setting.device)
        segments = run_segments(setting, models, rounds, steps, Path(work), list(overrides), on_segment)
    result["load_average_after"] = os.getloadavg()
    tools = {tool: summarize_tool([s for s in segments if s.tool == tool]) for tool in (DISTILLRL_FULL, TRL,
                                                                                          DISTILLRL_SAMPLED)}
    result["tools"] = tools
    result["ratios"] = {
        "distillrl_full_over_trl_step_seconds": tools[DISTILLRL_FULL]["step_seconds"] / tools[TRL]["step_seconds"],
        "distillrl_full_over_trl_per_round": per_round_ratios(segments, rounds),
        "full_over_sampled_peak_memory": tools[DISTILLRL_FULL]["peak_memory_bytes"]
        / tools[DISTILLRL_SAMPLED]["peak_memory_bytes"],
    }
    result["acceptance"] = acceptance(setting, tools)
    result["segments"] = [asdict(s) for s in segments]
    return result


def write_result(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
