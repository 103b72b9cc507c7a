"""`distillrl bench memory`: the peak memory and time of one OPD step as completions grow, each setting in its own
process.

A step here is what the trainer does after sampling: the teacher's frozen pass (run/signals.py score_rollout)
and one optimizer step of the student (run/trainer.py update_policy) on sequences of random tokens: a prompt of
PROMPT_TOKENS tokens then a completion of L tokens, `group` rows per prompt (sampling L tokens on a CPU would
take far longer than the step, and the rollout's KV cache is rollout.max_kv_tokens' business, not measured
here). Student and teacher are random Llama decoders (the same shapes, `layers` deep: deep enough that the
activations, about layers x rows x L x (12 H + 3 I) x 4 bytes in fp32, dominate the weights and AdamW's state).

Peak memory: on the CPU the child process's peak resident set (`getrusage(RUSAGE_SELF).ru_maxrss`, which also
counts Python, torch and the models) and its growth over the resident set just before the step (the step's own
memory); on a GPU `torch.cuda.max_memory_allocated`. Settings: fidelity sampled or full reverse KL, with and
without student.activation_checkpointing, over the lengths; and the token budget (optim.micro_batch_tokens =
one prompt's rows) at one length as the prompts grow 4x.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import psutil
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from distillrl.config import TrainConfig
from distillrl.models.student import enable_activation_checkpointing
from distillrl.objectives import build_objective
from distillrl.report.plots import plt, save_figure
from distillrl.run.roles import Models, Teacher
from distillrl.run.signals import score_rollout
from distillrl.run.trainer import update_policy
from distillrl.scoring.logits import default_chunk_size
from distillrl.text.sequences import Sequences

PROMPT_TOKENS = 16


@dataclass(frozen=True)
class Shape:
    """The random models and the step's rows."""

    layers: int = 8
    hidden: int = 256
    vocab: int = 4096
    group: int = 2  # rows per prompt


SHAPES = {"cpu": Shape(), "tiny": Shape(layers=2, hidden=64, vocab=512),
          "gpu": Shape(layers=28, hidden=1024, vocab=151936, group=4)}  # fmt: skip  # gpu: Qwen3-0.6B's widths


@dataclass(frozen=True)
class Setting:
    name: str
    fidelity: str = "sampled"
    checkpointing: bool = False
    budget: bool = False  # optim.micro_batch_tokens: one prompt's rows


LENGTH_SETTINGS = [Setting("sampled"), Setting("sampled + checkpointing", checkpointing=True), Setting("full", "full"),
                   Setting("full + checkpointing", "full", checkpointing=True)]  # fmt: skip
BUDGET_SETTINGS = [Setting("sampled, grad_accum 1"), Setting("sampled + token budget", budget=True)]


def one_step(shape: Shape, setting: Setting, length: int, prompts: int, device: str) -> dict:
    """One OPD step in this process: its peak memory (bytes) and seconds."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=shape.vocab, hidden_size=shape.hidden, intermediate_size=3 * shape.hidden,
                         num_hidden_layers=shape.layers, num_attention_heads=max(shape.hidden // 64, 1),
                         num_key_value_heads=max(shape.hidden // 128, 1), head_dim=64,
                         max_position_embeddings=PROMPT_TOKENS + length, tie_word_embeddings=False)  # fmt: skip
    student = AutoModelForCausalLM.from_config(config).to(device).train()
    teacher = AutoModelForCausalLM.from_config(config).to(device).eval().requires_grad_(False)
    if setting.checkpointing:
        enable_activation_checkpointing(student)
    rows, width = prompts * shape.group, PROMPT_TOKENS + length
    completion = torch.zeros(rows, width, dtype=torch.long, device=device)
    completion[:, PROMPT_TOKENS:] = 1
    sequences = Sequences(torch.randint(shape.vocab, (rows, width), device=device), torch.ones_like(completion),
                          completion, torch.arange(prompts, device=device).repeat_interleave(shape.group),
                          [""] * rows, PROMPT_TOKENS)  # fmt: skip
    budget = shape.group * width if setting.budget else None
    train = TrainConfig.model_validate({"objective": {"name": "reverse_kl", "fidelity": setting.fidelity},
                                        "optim": {"micro_batch_tokens": budget}})  # fmt: skip
    objective = build_objective(train.objective)
    models = Models(student, [Teacher("teacher", "random", teacher, None)], None, None, torch.device(device), "fp32",
                    vocab_size=shape.vocab)  # fmt: skip
    parameters = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=1e-5)
    chunk_size = default_chunk_size(shape.vocab)
    problems = [SimpleNamespace(answer=None, domain=None)] * prompts
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = psutil.Process().memory_info().rss
    started = time.perf_counter()
    signals = score_rollout(models, objective.needs, sequences, problems, None, rows_per_pass=rows,
                            chunk_size=chunk_size, tokens_per_pass=budget)  # fmt: skip
    update_policy(train, models, objective, sequences, signals, optimizer, parameters)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        peak, growth = torch.cuda.max_memory_allocated(), None
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
        growth = peak - before
    return {"peak_bytes": peak, "step_bytes": growth, "seconds": time.perf_counter() - started}


def run_child(shape: str, setting: Setting, length: int, prompts: int, device: str, threads: int | None) -> dict:
    """one_step in a fresh Python process (its own peak), as a result row."""
    spec = {"shape": shape, "setting": asdict(setting), "length": length, "prompts": prompts, "device": device,
            "threads": threads}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "distillrl.bench.memory", json.dumps(spec)], capture_output=True,
                          text=True)  # fmt: skip
    if done.returncode != 0:
        return {**spec, "setting": setting.name, "error": done.stderr.strip().splitlines()[-1:]}
    return {**spec, "setting": setting.name, **json.loads(done.stdout.strip().splitlines()[-1])}


def run_memory_bench(shape: str, lengths: list[int], budget_length: int, device: str, threads: int | None,
                     on_row=None) -> list[dict]:  # fmt: skip
    """Every setting at every length (one prompt), then the budget settings at `budget_length` with 1 and 4
    prompts; one child process each."""
    plan = [(s, length, 1) for length in lengths for s in LENGTH_SETTINGS]
    plan += [(s, budget_length, prompts) for prompts in (1, 4) for s in BUDGET_SETTINGS]
    rows = []
    for setting, length, prompts in plan:
        rows.append(run_child(shape, setting, length, prompts, device, threads))
        if on_row is not None:
            on_row(rows[-1])
    return rows


def ratio(rows: list[dict], key: str, setting: str, base: str, **where) -> float | None:
    """rows[setting][key] / rows[base][key] at the same `where` (None when either is missing)."""
    def value(name):
        found = [r.get(key) for r in rows if r["setting"] == name and all(r[k] == v for k, v in where.items())]
        return found[0] if found and found[0] else None
    top, bottom = value(setting), value(base)
    return top / bottom if top and bottom else None


def acceptance(rows: list[dict], lengths: list[int], budget_length: int) -> dict:
    """The issue's three ratios, of peak memory and of the step's own growth: checkpointing / plain at the
    longest length (target <= 0.6), full / sampled at the longest length (<= 1.1), and with a token budget 4
    prompts / 1 prompt (4x the tokens; <= 1.25), with grad_accum 1's for comparison."""
    longest = max(lengths)
    out = {}
    for key in ("peak_bytes", "step_bytes"):
        out[key] = {
            f"checkpointing / plain at {longest}": ratio(rows, key, "sampled + checkpointing", "sampled", length=longest),
            f"full / sampled at {longest}": ratio(rows, key, "full", "sampled", length=longest),
            f"full + ckpt / sampled + ckpt at {longest}": ratio(rows, key, "full + checkpointing",
                                                                 "sampled + checkpointing", length=longest),
        }
        for setting in (s.name for s in BUDGET_SETTINGS):
            value = [r.get(key) for r in rows if r["setting"] == setting and r["length"] == budget_length]
            if len(value) == 2 and all(value):
                out[key][f"{setting}: 4 prompts / 1 at {budget_length}"] = value[1] / value[0]
    return out


def table_lines(rows: list[dict]) -> list[str]:
    """One line per measurement: setting, length, prompts, peak MiB, the step's own MiB, seconds."""
    lines = [f"{'setting':28} {'length':>6} {'prompts':>7} {'peak MiB':>9} {'step MiB':>9} {'s/step':>7}"]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['setting']:28} {r['length']:>6} {r['prompts']:>7} failed: {r['error']}")
            continue
        step = "" if r["step_bytes"] is None else f"{r['step_bytes'] / 2**20:9.0f}"
        lines.append(f"{r['setting']:28} {r['length']:>6} {r['prompts']:>7} {r['peak_bytes'] / 2**20:9.0f} "
                     f"{step:>9} {r['seconds']:7.2f}")  # fmt: skip
    return lines


def plot(rows: list[dict], out: Path) -> None:
    """Peak memory against completion length, one line per setting (the one-prompt measurements)."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for setting in LENGTH_SETTINGS:
        points = sorted((r["length"], r["peak_bytes"] / 2**20) for r in rows
                        if r["setting"] == setting.name and r["prompts"] == 1 and "error" not in r)  # fmt: skip
        if points:
            axis.plot(*zip(*points), marker="o", label=setting.name)
    axis.set_xscale("log", base=2)
    axis.set_xlabel("completion tokens per row")
    axis.set_ylabel("peak memory (MiB)")
    axis.set_title("one OPD step: peak memory against completion length")
    axis.grid(alpha=0.3)
    axis.legend()
    save_figure(figure, out)


def main(spec: dict) -> None:
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    result = one_step(SHAPES[spec["shape"]], Setting(**spec["setting"]), spec["length"], spec["prompts"],
                      spec["device"])  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
