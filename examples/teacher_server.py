"""Distil from a teacher behind `distillrl serve-teacher` (here started as a child process on a free port).

    python examples/teacher_server.py --steps 4
"""

import argparse
import subprocess
import sys

import distillrl

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=50)
parser.add_argument("--eval-prompts", type=int, default=64)
parser.add_argument("--out", default="runs/example-server")
args = parser.parse_args()

server = subprocess.Popen([sys.executable, "-m", "distillrl.cli", "serve-teacher", "--model", "zoo:teacher",
                           "--port", "0", "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)  # fmt: skip
line = server.stdout.readline()
while line and "http://" not in line:  # "loading ...", "loaded ... in N s", then "serving ... at URL"
    line = server.stdout.readline()
if not line:
    sys.exit("serve-teacher did not start")
url = line.split(" at ")[1].split()[0]
print(f"teacher served at {url}")
try:
    config = distillrl.TrainConfig(
        output_dir=args.out,
        student={"path": "zoo:student-base"},
        teacher={"path": "zoo:teacher", "server": url},
        rollout={"source": "student", "prompts_per_step": 16, "group_size": 4, "max_new_tokens": 40},
        objective={"name": "reverse_kl", "fidelity": "sampled"},
        optim={"steps": args.steps, "lr": 1e-3, "warmup_steps": 0},
        eval={"every": 0, "num_prompts": args.eval_prompts, "max_new_tokens": 40},
    )
    result = distillrl.train(config, overwrite=True, progress=False)
    kls = [record["train/reverse_kl"] for record in result.metrics if "train/reverse_kl" in record]
    print(f"reverse KL to the served teacher: first step {kls[0]:.4f}, last step {kls[-1]:.4f}")
finally:
    server.terminate()
    server.wait()
