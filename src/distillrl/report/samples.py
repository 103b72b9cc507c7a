"""Samples: what the model wrote, kept beside the numbers.

`RUN/samples/step_NNNNNN.jsonl` holds, one JSON object a line, the completions of that step: every held-out
prompt's greedy and sampled completion at an evaluation (`decoding` greedy / sampled) and a few of the step's
rollouts (`rollout`). Each row: step, decoding, prompt, completion, answer, reward, length (completion tokens),
stopped (ended before max_new_tokens), tokens (each completion token decoded on its own) and, where a teacher
scored them, reverse_kl (nats per token) and token_reverse_kl (per token, as tokens). The file of a step is
written once, atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

from distillrl.core.files import read_json_lines, write_text_atomic

SAMPLES_DIR = "samples"


def samples_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / SAMPLES_DIR / f"step_{step:06d}.jsonl"


def write_samples(path: str | Path, rows: list[dict], step: int | None = None) -> Path:
    """The rows as JSON lines in `path` (each with `step` first when given), written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"step": step, **row} if step is not None else row, ensure_ascii=False) for row in rows]
    write_text_atomic(path, "".join(line + "\n" for line in lines))
    return path


def read_samples(path: str | Path) -> list[dict]:
    """The rows of a samples file, without a last line that a kill cut short; a broken line before it is a
    UserError naming the file and line."""
    return read_json_lines(path, "sample", lambda row: isinstance(row.get("completion"), str),
                           "sample (no `completion` string)")  # fmt: skip


def prompt_text(prompt: str | list[dict]) -> str:
    """A prompt on one line: a string as it is, chat turns as `role: content | ...`."""
    if isinstance(prompt, str):
        return prompt
    return " | ".join(f"{turn['role']}: {turn['content']}" for turn in prompt)


def sample_lines(rows: list[dict], n: int, width: int = 100) -> list[str]:
    """The first `n` greedy rows as terminal lines: `prompt -> completion (reward R, L tokens[, cut at the limit])`,
    each part shortened to `width` characters."""
    def short(text: str) -> str:
        text = repr(text)[1:-1]
        return text if len(text) <= width else text[: width - 3] + "..."

    lines = []
    for row in [r for r in rows if r["decoding"] == "greedy"][:n]:
        cut = "" if row["stopped"] else ", cut at the length limit"
        lines.append(f"  {short(prompt_text(row['prompt']))} -> {short(row['completion'])} (reward {row['reward']:g}, "
                     f"{row['length']} tokens{cut})")
    return lines


def samples_markdown(rows: list[dict], n: int = 8) -> str:
    """A Markdown table of the first `n` rows (for TensorBoard's text tab)."""
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", "\\n")

    table = ["| decoding | prompt | completion | reward | length |", "|---|---|---|---|---|"]
    table += [f"| {row['decoding']} | {cell(prompt_text(row['prompt']))} | {cell(row['completion'])} | "
              f"{row['reward']:g} | {row['length']} |" for row in rows[:n]]  # fmt: skip
    return "\n".join(table)
