"""Rollout engines side by side: transformers' generate (`hf`) against the static engine, on a `bench speed`
setting's student (random init, built here), the same prompts and lengths, in one run.

    python scripts/bench_engines.py [--config cpu|gpu] [--repeats 3]

Prints, per engine, the first call (compilation included for `static` on a GPU), the median of the repeats,
completion tokens per second, and the static / hf ratio. This is the measurement behind `rollout.engine: auto`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from distillrl.bench.speed_setup import save_bench_models
from distillrl.bench.speed_spec import SETTINGS
from distillrl.models.loading import load_causal_lm, load_tokenizer
from distillrl.rollout.engines import build_engine
from distillrl.run.runtime import synchronize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="gpu", choices=sorted(SETTINGS))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    setting = SETTINGS[args.config]
    device = torch.device(setting.device)
    dtype = torch.bfloat16 if setting.precision == "bf16" else torch.float32
    with tempfile.TemporaryDirectory() as where:
        models = save_bench_models(Path(where), architecture=setting.architecture, student=setting.student,
                                   teacher=setting.teacher, tokenizer_kind=setting.tokenizer,
                                   vocab_size=setting.vocab_size, dtype=dtype, device=setting.device,
                                   prompts=setting.prompts, prompt_tokens=setting.prompt_tokens,
                                   extra_config=setting.extra_config)  # fmt: skip
        student = load_causal_lm(models.student).to(device)  # fp32 master weights, as the trainer holds them
        tokenizer = load_tokenizer(models.student)
    rows = []
    for name in ("hf", "static"):
        engine = build_engine(name, student, tokenizer, setting.precision)
        seconds, tokens = [], 0
        for repeat in range(args.repeats + 1):
            started = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=setting.precision == "bf16"):
                sequences = engine.generate(models.prompt_list, 1, 1.0, setting.new_tokens)
            synchronize(device)
            seconds.append(time.perf_counter() - started)
            tokens = int(sequences.completion_mask.sum())
        median = statistics.median(seconds[1:])
        rows.append((name, seconds[0], median, tokens / median))
        print(f"{name:7s} first call {seconds[0]:7.2f} s | median {median:6.3f} s | {tokens:,} completion tokens | "
              f"{tokens / median:,.0f} tokens/s", flush=True)
    print(f"static / hf seconds: {rows[1][2] / rows[0][2]:.2f}x  ({setting.name}: {setting.description}; "
          f"{torch.cuda.get_device_name(0) if device.type == 'cuda' else f'{torch.get_num_threads()} CPU threads'})")


if __name__ == "__main__":
    main()
