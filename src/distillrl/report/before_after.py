"""The before/after table of a run, as `train` and `demo` print it and report.html shows it: the teacher(s), the
student at step 0 and at its last evaluation, by greedy accuracy (and per domain when the held-out set has
several), sampled accuracy, reverse KL to the teacher (nats/token) and response length (tokens)."""

from __future__ import annotations

GREEDY_PREFIX = "eval/accuracy_greedy/"


def before_after_rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    """The table's column names and its rows of formatted cells, from a run's summary: `teacher` (the first
    teacher's held-out evaluation or None), `teachers` ({name: evaluation}, one row each when there are several),
    `before` and `after` (the student's evaluation records or None; a missing one has no row)."""
    teachers = summary.get("teachers") or {}
    if len(teachers) > 1:
        rows = [(f"teacher {name}", metrics) for name, metrics in teachers.items()]
    else:
        rows = [("teacher", summary.get("teacher"))]
    rows = [(label, metrics) for label, metrics in rows + [("student before", summary.get("before")),
                                                           ("student after", summary.get("after"))] if metrics]  # fmt: skip
    domains = sorted({key[len(GREEDY_PREFIX):] for _, metrics in rows for key in metrics if key.startswith(GREEDY_PREFIX)})
    columns = ["model", "greedy", *(f"greedy {domain}" for domain in domains), "sampled", "reverse KL", "length"]
    cells = []
    for label, metrics in rows:
        kl = metrics.get("eval/reverse_kl")
        cells.append([label, f"{metrics['eval/accuracy_greedy']:.3f}",
                      *(f"{metrics[GREEDY_PREFIX + domain]:.3f}" for domain in domains),
                      f"{metrics['eval/accuracy_sampled']:.3f}", "-" if kl is None else f"{kl:.4f}",
                      f"{metrics['eval/response_length']:.1f}"])  # fmt: skip
    return columns, cells
