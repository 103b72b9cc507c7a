"""GRPO with a reward written in Python, on rows held in memory (a list of dicts, or a `datasets.Dataset`).

    python examples/custom_reward.py --steps 30
"""

import argparse
import random
import re

import distillrl
from distillrl.tasks import ArithTask

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=30)
parser.add_argument("--eval-prompts", type=int, default=64)
parser.add_argument("--out", default="runs/example-reward")
args = parser.parse_args()

rng = random.Random(0)
problems = [ArithTask().sample_train(rng) for _ in range(256)]
rows = [{"prompt": p.prompt, "answer": p.answer} for p in problems]  # any rows: prompt (or messages) and answer


def last_number_reward(prompt: str, completion: str, row: dict) -> float:
    """1 when the completion's last number is the row's answer, else 0."""
    numbers = re.findall(r"-?\d+", completion)
    return float(bool(numbers) and numbers[-1] == row["answer"])


config = distillrl.TrainConfig(
    output_dir=args.out,
    student={"path": "zoo:student-base"},
    teacher=None,
    rollout={"source": "student", "prompts_per_step": 16, "group_size": 4, "max_new_tokens": 40},
    objective={"name": "grpo"},
    optim={"steps": args.steps, "lr": 3e-4, "warmup_steps": 0, "schedule": "constant"},
    eval={"every": 0, "num_prompts": args.eval_prompts, "max_new_tokens": 40},
)
result = distillrl.train(config, train_data=rows[:192], test_data=rows[192:], reward=last_number_reward,
                         overwrite=True, progress=False)
rewards = [record["train/reward"] for record in result.metrics if "train/reward" in record]
print(f"mean reward, first step {rewards[0]:.3f}, last step {rewards[-1]:.3f}; "
      f"held-out greedy accuracy {result.metrics[-1]['eval/accuracy_greedy']:.3f}")
