"""report.html: one self-contained page per run, read from the run directory's own files only.

It holds the run's config (config.yaml), the before/after table (teacher_eval.json and metrics.jsonl), the curves
(curves.png, or drawn from metrics.jsonl while the run goes on), the samples of the latest evaluation with their
rewards (samples/step_NNNNNN.jsonl) and their forking-token view: each token of a sampled completion shaded by its
reverse KL to the teacher, KL_t = sum_v pi_theta(v | x, y<t) [log pi_theta(v | x, y<t) - log pi_T(v | x, y<t)]
in nats. Images are embedded as data URIs and the styles inline: the page needs no network and no other file.
Every text from the run (prompts, completions, config) is escaped.
"""

from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path

import yaml

from distillrl.core.errors import UserError
from distillrl.core.files import write_text_atomic
from distillrl.report.before_after import before_after_rows
from distillrl.report.metrics import METRICS_NAME, read_metrics, read_teacher_evals
from distillrl.report.plots import save_figure, training_curves_figure
from distillrl.report.samples import read_samples
from distillrl.report.token_shades import kl_legend, kl_shade

PAGE_NAME = "report.html"
CONFIG_NAME = "config.yaml"
CURVES_NAME = "curves.png"
SAMPLES_DIR = "samples"
SAMPLES_FILE = re.compile(r"step_(\d+)\.jsonl")
SHOWN = 8  # samples shown per decoding


def write_run_page(run_dir: str | Path) -> Path:
    """Write RUN_DIR/report.html (atomically: a reader sees the old page or the new one) and return its path. A
    missing directory, or one without a run's config.yaml or metrics.jsonl, is a UserError."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory")
    if not (run_dir / CONFIG_NAME).is_file() and not (run_dir / METRICS_NAME).is_file():
        raise UserError(f"{run_dir}: not a distillrl run directory (no {CONFIG_NAME} or {METRICS_NAME} in it)")
    path = run_dir / PAGE_NAME
    write_text_atomic(path, run_page_html(run_dir))
    return path


def run_page_html(run_dir: Path) -> str:
    """The page's HTML."""
    records = read_metrics(run_dir)
    teachers = read_teacher_evals(run_dir) or {}
    config_text = (run_dir / CONFIG_NAME).read_text() if (run_dir / CONFIG_NAME).is_file() else ""
    config = yaml.safe_load(config_text) if config_text else None
    name = run_dir.resolve().name
    eval_step, eval_rows, rollout_step, rollout_rows = latest_samples(run_dir)
    sections = [
        f"<h1>{html.escape(name)}</h1>",
        f'<p class="facts">{html.escape(run_facts(run_dir, config if isinstance(config, dict) else {}, records))}</p>',
        "<h2>Before and after</h2>", before_after_html(records, teachers),
        "<h2>Curves</h2>", curves_html(run_dir, records, teachers, name),
        f"<h2>Samples{'' if eval_step is None else f' at step {eval_step}'}</h2>",
        samples_html(eval_rows, eval_step, rollout_rows, rollout_step),
        "<h2>Forking tokens</h2>", forking_html(eval_rows),
        "<h2>Config</h2>",
        f"<details><summary>{CONFIG_NAME}</summary><pre>{html.escape(config_text)}</pre></details>" if config_text
        else f"<p>No {CONFIG_NAME} in the run directory.</p>",
    ]  # fmt: skip
    return PAGE.format(title=html.escape(f"distillrl run: {name}"), body="\n".join(sections))


def run_facts(run_dir: Path, config: dict, records: list[dict]) -> str:
    """One line: objective, student, teacher(s), task, and how far the run is."""

    def field(section: str, key: str):
        value = config.get(section)
        return value.get(key) if isinstance(value, dict) else None

    teachers = config.get("teachers")
    teacher = (", ".join(str(t.get("path")) for t in teachers if isinstance(t, dict)) if isinstance(teachers, list)
               else field("teacher", "path"))  # fmt: skip
    last = records[-1]["step"] if records else 0
    planned = field("optim", "steps")
    progress = f"step {last}" + (f" of {planned}" if planned else "")
    progress += ", finished" if (run_dir / "final").is_dir() else ", not finished (running or stopped)"
    facts = [("objective", field("objective", "name")), ("student", field("student", "path")), ("teacher", teacher),
             ("task", field("task", "name"))]  # fmt: skip
    return " · ".join([f"{label} {value}" for label, value in facts if value] + [progress])


def before_after_html(records: list[dict], teachers: dict[str, dict]) -> str:
    """The CLI's before/after table: the teacher(s), the student at step 0 and at its last evaluation."""
    evals = [r for r in records if "eval/accuracy_greedy" in r]
    before = evals[0] if evals and evals[0]["step"] == 0 else None
    after = evals[-1] if evals and evals[-1] is not before else None
    if not teachers and not evals:
        return "<p>No evaluation yet.</p>"
    columns, rows = before_after_rows({"teacher": next(iter(teachers.values()), None), "teachers": teachers,
                                       "before": before, "after": after})  # fmt: skip
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    steps = ([f"student before: step {before['step']}"] if before else []) + (
        [f"student after: step {after['step']}, the last evaluation"] if after else [])  # fmt: skip
    note = ("Held-out accuracy by the task's verifier, greedy and sampled; reverse KL to the teacher in nats per token "
            "and length in tokens per completion, both on the sampled completions. " + "; ".join(steps) + ".")  # fmt: skip
    return f'<table class="numbers" id="before-after"><tr>{head}</tr>{body}</table><p class="note">{html.escape(note)}</p>'


def curves_html(run_dir: Path, records: list[dict], teachers: dict[str, dict], name: str) -> str:
    """curves.png when it is as new as metrics.jsonl; else (the run goes on, or was resumed) the curves drawn from
    metrics.jsonl here. Embedded as a data URI."""
    curves, metrics = run_dir / CURVES_NAME, run_dir / METRICS_NAME
    if curves.is_file() and (not metrics.is_file() or curves.stat().st_mtime >= metrics.stat().st_mtime):
        png = curves.read_bytes()
    elif records:
        buffer = io.BytesIO()
        save_figure(training_curves_figure(records, teachers, name), buffer)
        png = buffer.getvalue()
    else:
        return "<p>No metrics yet.</p>"
    data = base64.b64encode(png).decode("ascii")
    return f'<img id="curves" alt="training curves of {html.escape(name)}" src="data:image/png;base64,{data}">'


def latest_samples(run_dir: Path) -> tuple[int | None, list[dict], int | None, list[dict]]:
    """(step, rows) of the newest samples file that holds an evaluation's rows (greedy or sampled), and (step,
    rows) of the rollouts in the newest file; (None, []) for either when there is none. Files are read newest
    first, up to the first evaluation's."""
    folder = run_dir / SAMPLES_DIR
    files = sorted(((int(m.group(1)), p) for p in folder.glob("step_*.jsonl") if (m := SAMPLES_FILE.fullmatch(p.name))),
                   reverse=True) if folder.is_dir() else []  # fmt: skip
    rollout_step, rollout_rows = None, []
    for index, (step, path) in enumerate(files):
        rows = read_samples(path)
        if index == 0 and (rollouts := [row for row in rows if row.get("decoding") == "rollout"]):
            rollout_step, rollout_rows = step, rollouts
        if evals := [row for row in rows if row.get("decoding") in ("greedy", "sampled")]:
            return step, evals, rollout_step, rollout_rows
    return None, [], rollout_step, rollout_rows


def prompt_text(prompt) -> str:
    """A prompt as text: a string as is, chat turns as `role: content` lines."""
    if isinstance(prompt, list):
        return "\n".join(f"{turn.get('role')}: {turn.get('content')}" if isinstance(turn, dict) else str(turn)
                         for turn in prompt)  # fmt: skip
    return "" if prompt is None else str(prompt)


def number(value, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def sample_table(rows: list[dict], caption: str) -> str:
    """Up to SHOWN rows: prompt, completion, answer, reward, length (tokens), whether it stopped before
    max_new_tokens, and its mean reverse KL to the teacher (nats/token)."""
    head = "".join(f"<th>{c}</th>" for c in ("prompt", "completion", "answer", "reward", "length", "stopped",
                                             "reverse KL"))  # fmt: skip
    body = []
    for row in rows[:SHOWN]:
        stopped = row.get("stopped")
        stop = "yes" if stopped else ('<span class="cut">cut at max_new_tokens</span>' if stopped is False else "-")
        answer = row.get("answer")
        body.append(f'<tr class="sample"><td><pre class="prompt">{html.escape(prompt_text(row.get("prompt")))}</pre></td>'
                    f'<td><pre class="completion">{html.escape(row["completion"])}</pre></td>'
                    f'<td>{"-" if answer is None else html.escape(str(answer))}</td>'
                    f'<td class="num reward">{number(row.get("reward"), 2)}</td>'
                    f'<td class="num">{html.escape(str(row.get("length", "-")))}</td><td>{stop}</td>'
                    f'<td class="num">{number(row.get("reverse_kl"), 3)}</td></tr>')  # fmt: skip
    more = f" (the first {SHOWN} of {len(rows)})" if len(rows) > SHOWN else ""
    return (f'<table class="samples"><caption>{html.escape(caption)}{more}</caption><tr>{head}</tr>'
            + "".join(body) + "</table>")  # fmt: skip


def samples_html(eval_rows: list[dict], eval_step: int | None, rollout_rows: list[dict],
                 rollout_step: int | None) -> str:  # fmt: skip
    """The latest evaluation's greedy and sampled samples, then the latest rollouts."""
    if eval_step is None and rollout_step is None:
        return f"<p>No samples yet ({SAMPLES_DIR}/step_NNNNNN.jsonl is written at each evaluation).</p>"
    parts = []
    for decoding in ("greedy", "sampled"):
        rows = [row for row in eval_rows if row.get("decoding") == decoding]
        if rows:
            parts.append(sample_table(rows, f"held-out, {decoding}, step {eval_step}"))
    if rollout_rows:
        parts.append(sample_table(rollout_rows, f"training rollouts, step {rollout_step}"))
    return "\n".join(parts)


def forking_html(eval_rows: list[dict]) -> str:
    """The sampled rows that carry per-token reverse KL: each token shaded by it (darkest = the largest shown),
    the sum and the peak token beside it."""
    rows = [row for row in eval_rows if row.get("decoding") == "sampled" and row.get("tokens")
            and row.get("token_reverse_kl") and len(row["tokens"]) == len(row["token_reverse_kl"])][:SHOWN]  # fmt: skip
    if not rows:
        return "<p>No sample with per-token reverse KL (a run with a teacher writes it on its sampled completions).</p>"
    scale = max(kl for row in rows for kl in row["token_reverse_kl"])
    lines = []
    for row in rows:
        kls = row["token_reverse_kl"]
        cells = "".join(f'<span class="tok" style="{kl_shade(kl, scale)}" title="reverse KL {kl:.3f} nats">'
                        f'{html.escape(token) or "&#9166;"}</span>' for token, kl in zip(row["tokens"], kls))  # fmt: skip
        peak = max(range(len(kls)), key=kls.__getitem__)
        note = f"reward {number(row.get('reward'), 2)}; sum {sum(kls):.2f} nats; peak {kls[peak]:.2f} at {row['tokens'][peak]!r}"
        lines.append(f'<div class="fork"><pre class="prompt">{html.escape(prompt_text(row.get("prompt")))}</pre>'
                     f'<div class="tokens">{cells}</div><div class="note">{html.escape(note)}</div></div>')  # fmt: skip
    return (f'<p>Each token of the student\'s sampled completion shaded by its reverse KL to the teacher, the penalty '
            f'on-policy distillation puts there; hover a token for its value.</p>'
            f'<div class="legend">reverse KL (nats): {kl_legend(scale)}</div>' + "".join(lines))  # fmt: skip


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em 2em; color: #222; max-width: 1700px; }}
h1 {{ margin-bottom: 0.2em; }}
h2 {{ border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }}
.facts, .note {{ color: #555; }}
.note {{ font-size: 13px; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ddd; padding: 4px 8px; vertical-align: top; text-align: left; }}
th {{ background: #f4f4f4; }}
.numbers td:not(:first-child), td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
caption {{ text-align: left; font-weight: bold; padding: 0.6em 0 0.3em; }}
.samples {{ margin-bottom: 1em; }}
pre {{ margin: 0; white-space: pre-wrap; word-break: break-word; font-size: 13px; }}
pre.prompt {{ color: #555; max-height: 9em; overflow: auto; max-width: 40em; }}
pre.completion {{ max-width: 60em; }}
.cut {{ color: #b26a00; font-weight: bold; }}
#curves {{ max-width: 100%; }}
.fork {{ margin: 0.8em 0; }}
.tokens {{ font-family: monospace; font-size: 14px; white-space: pre-wrap; margin: 0.2em 0; }}
.tok {{ padding: 1px 0; border-right: 1px solid #eee; }}
.legend {{ font-size: 13px; margin: 0.6em 0; }}
.legend .tok {{ font-family: monospace; }}
details pre {{ background: #f8f8f8; padding: 0.6em; }}
</style></head><body>
{body}
</body></html>
"""
