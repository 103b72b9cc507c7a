"""GRPO lr sweep from one base model, each run a zoo GRPO stage (zoo/recipes.py's settings): the table of
docs/results/TESTBED.md ("Why the first zoo's GRPO gave +0.01").

    python scripts/grpo_lr_sweep.py --base runs/zoo/hard-base --task arith --level hard --lr 3e-5 --lr 1e-4 \
        --lr 3e-4 --lr 1e-3 --steps 150 --out runs/grpo-sweep [--jobs 4]

Runs go in parallel processes (`--jobs`, 2 threads each); each prints its train reward over the first and last 15
steps and its held-out greedy and sampled accuracy at the start and end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path


def build_one(out: Path, base: Path, task: str, level: str, lr: float, steps: int, seed: int) -> None:
    """One GRPO stage from `base` (copied into `out` as the zoo base), through build_zoo."""
    from distillrl.zoo import recipes as zoo
    from distillrl.zoo.build import build_zoo
    from distillrl.zoo.recipes import GRPO_STAGE, Stage, ZooModel

    name = f"grpo-{task}-{level}-lr{lr:g}"
    if not (out / "base" / "config.json").exists():
        shutil.copytree(base, out / "base", dirs_exist_ok=True)
    stage = Stage(steps=steps, lr=lr, task=task, level=level, **GRPO_STAGE)
    zoo.ZOO = {name: ZooModel(name, "sweep", stages=(stage,), seed=seed, init_from="base")}
    build_zoo(out, [name], work_dir=out / "work" / name)


def summary(out: Path, lr: float, task: str, level: str) -> str:
    """One table row: train reward early and late, held-out accuracies at start and end."""
    metrics = next((out / "work" / f"grpo-{task}-{level}-lr{lr:g}").glob("*/metrics.jsonl"))
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    train = [r["train/reward"] for r in records if "train/reward" in r]
    evals = [r for r in records if "eval/accuracy_greedy" in r]
    first, last = evals[0], evals[-1]
    return (f"| lr {lr:g} | {statistics.mean(train[:15]):.3f} | {statistics.mean(train[-15:]):.3f} | "
            f"{first['eval/accuracy_greedy']:.3f} -> {last['eval/accuracy_greedy']:.3f} | "
            f"{first['eval/accuracy_sampled']:.3f} -> {last['eval/accuracy_sampled']:.3f} | "
            f"{min(r['eval/accuracy_greedy'] for r in evals):.3f} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="the model to start from (a model folder)")
    parser.add_argument("--task", default="arith", help="arith, lists or mix")
    parser.add_argument("--level", default="hard", help="standard or hard (distillrl.tasks.levels)")
    parser.add_argument("--lr", type=float, action="append", required=True, help="repeatable")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, default=Path("runs/grpo-sweep"))
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--one", type=float, help=argparse.SUPPRESS)  # a worker: run this lr only
    args = parser.parse_args()
    if args.one is not None:
        build_one(args.out, args.base, args.task, args.level, args.one, args.steps, args.seed)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    pending, running = list(args.lr), []
    while pending or running:
        while pending and len(running) < args.jobs:
            lr = pending.pop(0)
            command = [sys.executable, __file__, *sys.argv[1:], "--one", str(lr)]
            running.append(subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL))
        running[0].wait()
        if running.pop(0).returncode:
            sys.exit("a sweep run failed")
    print("| run | train reward, first 15 steps | last 15 steps | greedy accuracy | sampled accuracy | lowest greedy |")
    print("|---|---|---|---|---|---|")
    for lr in args.lr:
        print(summary(args.out, lr, args.task, args.level))


if __name__ == "__main__":
    main()
