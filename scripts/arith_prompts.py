"""Write N `arith` training problems with their solutions as a prompts file (`prompt`, `completion`, `answer`),
e.g. for `distillrl teacher cache` and `task: {name: prompts}`: python scripts/arith_prompts.py OUT.jsonl [N] [SEED]"""

import json
import random
import sys

from distillrl.tasks import ArithTask

out, n, seed = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1000, int(sys.argv[3]) if len(sys.argv) > 3 else 0
rng = random.Random(seed)
problems = [ArithTask().sample_train(rng) for _ in range(n)]
with open(out, "w") as handle:
    for p in problems:
        handle.write(json.dumps({"prompt": p.prompt, "completion": p.solution, "answer": p.answer}) + "\n")
print(f"wrote {n} problems to {out}")
