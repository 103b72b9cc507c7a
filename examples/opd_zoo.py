"""On-policy distillation from Python: the shipped teacher into the shipped student on arith.

    python examples/opd_zoo.py                 # 250 steps, as `distillrl demo` (a few minutes on 2 CPU cores)
    python examples/opd_zoo.py --steps 4 --eval-prompts 16
"""

import argparse

import distillrl

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=250)
parser.add_argument("--eval-prompts", type=int, default=200)
parser.add_argument("--out", default="runs/example-opd")
args = parser.parse_args()

config = distillrl.TrainConfig(
    output_dir=args.out,
    student={"path": "zoo:student-base"},
    teacher={"path": "zoo:teacher"},
    task={"name": "arith"},
    rollout={"source": "student", "prompts_per_step": 32, "group_size": 4, "max_new_tokens": 40},
    objective={"name": "reverse_kl", "fidelity": "sampled"},
    optim={"steps": args.steps, "lr": 1e-3, "warmup_steps": min(10, args.steps), "max_grad_norm": 1.0},
    eval={"every": 0, "num_prompts": args.eval_prompts, "max_new_tokens": 40},
)


def watch(step: int, record: dict) -> None:
    """Called after every step with its metrics record."""
    print(f"step {step}: reverse KL {record['train/reverse_kl']:.4f}")


result = distillrl.train(config, overwrite=True, on_step=watch, progress=False)
before, after = result.metrics[0], result.metrics[-1]
print(f"greedy accuracy {before['eval/accuracy_greedy']:.3f} -> {after['eval/accuracy_greedy']:.3f}; "
      f"trained model in {result.final_model}")
