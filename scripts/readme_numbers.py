"""Regenerate every measured number in README.md and the docs pages from the commands that print them.

    python scripts/readme_numbers.py              # runs `distillrl demo` (about 3 minutes) and `distillrl inspect`
    python scripts/readme_numbers.py --reuse      # reuse runs/readme-demo/summary.json when it is there
    python scripts/readme_numbers.py --check      # exit 1 when a page is not what the commands give
    python scripts/readme_numbers.py --blocks inspect,bench   # only these blocks (no demo run)

Each generated block sits between `<!-- readme:NAME -->` and `<!-- /readme:NAME -->` and is rewritten whole, in
every page of PAGES that holds it (each block must be in at least one):
- `demo`: the before/after table, from the `summary.json` that `distillrl demo` writes, and the parameter counts
  that `distillrl zoo list` prints (README.md and docs/getting-started.md);
- `inspect`: the `distillrl inspect` example and what it prints (docs/reproducing-papers.md);
- `bench`: the wall time of the committed reproduction report (docs/results, written by `distillrl bench repro
  --out docs/results`; docs/reproducing-papers.md).
Wall times depend on the machine and its load; the table's accuracies, KL and lengths do not.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, ROOT / "docs" / "getting-started.md", ROOT / "docs" / "reproducing-papers.md"]
DEMO_DIR = ROOT / "runs" / "readme-demo"
INSPECT = ["distillrl", "inspect", "--student", "zoo:student-base", "--teacher", "zoo:teacher",
           "--prompt", "3+(4*2)=", "--samples", "3"]  # fmt: skip


def run(command: list[str]) -> str:
    """Run a documented command from the repository root; its standard output, without colour codes."""
    done = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    return re.sub(r"\x1b\[[0-9;]*m", "", done.stdout)


def parameters(name: str) -> int:
    """A zoo model's parameter count, as `distillrl zoo list` prints it."""
    from distillrl.models.loading import count_parameters, load_causal_lm

    return count_parameters(load_causal_lm(name))


def demo_block(summary: dict) -> str:
    evaluations = summary["evaluations"]
    rows = [(f"teacher (`zoo:teacher`, {parameters('zoo:teacher') / 1000:.0f}k parameters)", evaluations["teacher"]),
            (f"student before (`zoo:student-base`, {parameters('zoo:student-base') / 1000:.0f}k)",
             evaluations["student_before"]),
            ("student after OPD", evaluations["student_after"])]  # fmt: skip
    lines = [f"`distillrl demo --out runs/demo` ({summary['steps']} steps; {summary['eval_prompts']} held-out prompts, "
             f"greedy, verifier-scored; {summary['wall_seconds']:.0f} s wall on a shared 2-core CPU machine) writes "
             "this table to `summary.json` and prints it:",
             "",
             "| model | accuracy (greedy) | reverse KL to teacher (nats/token) | response length |",
             "|---|---|---|---|"]  # fmt: skip
    for label, metrics in rows:
        kl = metrics.get("eval/reverse_kl")
        lines.append(f"| {label} | {metrics['eval/accuracy_greedy']:.3f} | {'-' if kl is None else f'{kl:.4f}'} | "
                     f"{metrics['eval/response_length']:.1f} |")  # fmt: skip
    return "\n".join(lines)


def inspect_block() -> str:
    printed = run(INSPECT).rstrip()
    command = " ".join(f'"{arg}"' if "(" in arg else arg for arg in INSPECT)
    return "\n".join(["```", f"$ {command}", printed, "```"])


def bench_block() -> str:
    """The committed report's size and wall time: the experiments' (as run, in one process or `--workers N`), and
    the lr sweep's with where it ran; their sum when both ran on this 2-core machine."""
    from distillrl.bench.report import PARALLEL_FILE
    from distillrl.bench.sweep import FILE as SWEEP_FILE

    bench = ROOT / "docs" / "results" / "bench"
    results = [json.loads(path.read_text()) for path in sorted(bench.glob("*.json"))
               if path.name not in (SWEEP_FILE, PARALLEL_FILE)]  # fmt: skip
    seeds = max(len(r["seeds"]) for r in results)
    command, how = "distillrl bench repro", ""
    if (bench / PARALLEL_FILE).exists():
        data = json.loads((bench / PARALLEL_FILE).read_text())
        minutes, workers = data["wall_seconds"] / 60, len(data["groups"])
        command, how = f"{command} --workers {workers}", f" as {workers} one-thread processes"
    else:
        minutes = sum(r["wall_seconds"] for r in results) / 60
    sweep = json.loads((bench / SWEEP_FILE).read_text()) if (bench / SWEEP_FILE).exists() else None
    if sweep is None:
        run = f"{minutes:.0f} minutes on 2 CPU cores{how}"
    elif sweep.get("machine", "").startswith("2 CPU cores"):
        sweep_minutes = sweep["wall_seconds"] / 60
        run = (f"{minutes + sweep_minutes:.0f} minutes in all on 2 CPU cores{how}: the lr sweep {sweep_minutes:.0f}, "
               f"the experiments {minutes:.0f}")
    else:
        run = (f"the lr sweep {sweep['wall_seconds'] / 60:.0f} minutes on {sweep.get('machine', 'another machine')}, "
               f"the experiments {minutes:.0f} minutes on 2 CPU cores{how}")
    return f"`{command} --out docs/results` runs the lr sweep and {len(results)} experiments on the zoo ({seeds} seeds; {run})"


def block_pattern(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- readme:{name} -->\n).*?(\n<!-- /readme:{name} -->)", re.S)


def replace_block(texts: dict[Path, str], name: str, body: str) -> None:
    """Rewrite block `name` in every page that holds it; none holding it is an error."""
    pattern = block_pattern(name)
    holders = [path for path, text in texts.items() if pattern.search(text)]
    if not holders:
        raise SystemExit(f"no <!-- readme:{name} --> ... <!-- /readme:{name} --> block in "
                         + ", ".join(str(path.relative_to(ROOT)) for path in texts))  # fmt: skip
    for path in holders:
        texts[path] = pattern.sub(lambda m: m[1] + body + m[2], texts[path])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reuse", action="store_true", help="reuse the last demo run when it is there")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a page differs")
    parser.add_argument("--blocks", default="demo,inspect,bench", help="comma-separated blocks to regenerate")
    args = parser.parse_args()
    blocks = args.blocks.split(",")
    texts = {path: path.read_text() for path in PAGES}
    updated = dict(texts)
    if "demo" in blocks:
        summary_path = DEMO_DIR / "summary.json"
        if not (args.reuse and summary_path.exists()):
            shutil.rmtree(DEMO_DIR, ignore_errors=True)  # a fresh run, every time
            run(["distillrl", "demo", "--out", str(DEMO_DIR.relative_to(ROOT))])
        replace_block(updated, "demo", demo_block(json.loads(summary_path.read_text())))
    if "inspect" in blocks:
        replace_block(updated, "inspect", inspect_block())
    if "bench" in blocks:
        replace_block(updated, "bench", bench_block())
    differ = [path for path in PAGES if updated[path] != texts[path]]
    if args.check:
        for path in differ:
            print(f"{path.relative_to(ROOT)} differs from what the commands give")
        if not differ:
            print("README.md and the docs pages are up to date")
        return 1 if differ else 0
    for path in differ:
        path.write_text(updated[path])
        print(f"rewrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
