"""PNG plots of a run's metrics."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def save_figure(fig, path: str | Path | BinaryIO) -> Path | BinaryIO:
    """Lay out, write (PNG, creating the folder; or into an open binary file) and close a figure."""
    if not hasattr(path, "write"):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


DIVERGENCES = ("reverse_kl", "forward_kl", "jsd", "skew_kl")  # the objectives' divergences, in nats per token
SMOOTH_FROM = 20  # a training series of this many points or more is drawn faint, under its moving average


def training_curves_figure(records: list[dict], teachers: dict[str, dict] | None = None, title: str | None = None):
    """The panels of what moves in a run, each drawn only when its metrics are in `records` (metrics.jsonl's):

    - held-out accuracy (greedy, sampled, greedy per domain when there are several), one horizontal line per
      teacher in `teachers` (each one's held-out evaluation: its greedy accuracy, on its own domain when a teacher
      is named after a domain);
    - the train loss (and each term's, for a hybrid objective);
    - the divergence the objective logs, in nats per token: train/reverse_kl (OPD, G-OPD), forward_kl, jsd (GKD),
      skew_kl, a hybrid's terms, each teacher's reverse KL, and the held-out reverse KL to the teacher;
    - the mean reward per completion, when the objective is a policy gradient (it logs clip_fraction) or the
      reward moves (not for SFT, whose own completions all score 1);
    - the response length in tokens per completion: the training sequences' and the held-out sampled ones';
    - the gradient norm (L2, before clipping).

    A training series of SMOOTH_FROM points or more is drawn faint under its trailing moving average over
    w = max(2, n // 20) steps, m_i = mean(v_{i-w+1..i}). `title` (the run's name) heads the figure.
    """
    panels = [panel for panel in (_accuracy_panel(records, teachers or {}), _loss_panel(records),
                                  _divergence_panel(records), _reward_panel(records), _length_panel(records),
                                  _grad_norm_panel(records)) if panel is not None]  # fmt: skip
    columns = min(3, max(len(panels), 1))
    rows = -(-max(len(panels), 1) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.8 * columns, 3.6 * rows + (0.4 if title else 0)), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax, draw in zip(flat, panels):
        draw(ax)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    for ax in flat[len(panels):]:
        ax.remove()
    if title:
        fig.suptitle(title, fontsize=13, fontweight="bold")
    return fig


def plot_training_curves(records: list[dict], path: str | Path, teachers: dict[str, dict] | None = None,
                         title: str | None = None) -> Path:  # fmt: skip
    """training_curves_figure written to `path` (PNG), headed by `title`, by default the name of the folder that
    `path` is in (the run directory's)."""
    path = Path(path)
    return save_figure(training_curves_figure(records, teachers, title or path.resolve().parent.name), path)


def _series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    rows = [r for r in records if isinstance(r.get(key), (int, float))]
    return [r["step"] for r in rows], [r[key] for r in rows]


def _train_line(ax, records: list[dict], key: str, label: str | None = None) -> None:
    """A training series: markers while it is short, faint under its moving average once it is long."""
    steps, values = _series(records, key)
    if len(values) < SMOOTH_FROM:
        ax.plot(steps, values, ".-", label=label)
        return
    width = max(2, len(values) // 20)
    (line,) = ax.plot(steps, values, alpha=0.3)
    means = [sum(values[max(0, i - width + 1):i + 1]) / (i + 1 - max(0, i - width + 1)) for i in range(len(values))]
    ax.plot(steps, means, color=line.get_color(), label=(f"{label}, " if label else "") + f"mean of {width} steps")


def _eval_line(ax, records: list[dict], key: str, label: str, style: str = "o-") -> None:
    steps, values = _series(records, key)
    ax.plot(steps, values, style, label=label)


def _from_zero(ax) -> None:
    """The y axis from 0 to 8% above the largest value drawn (a size: how far from none)."""
    ax.set_ylim(0, ax.dataLim.y1 * 1.08 or 1.0)


def _has(records: list[dict], key: str) -> bool:
    return any(key in r for r in records)


def _keys(records: list[dict], test) -> list[str]:
    return sorted({key for r in records for key in r if test(key)})


def _accuracy_panel(records: list[dict], teachers: dict[str, dict]):
    if not _has(records, "eval/accuracy_greedy"):
        return None
    prefix = "eval/accuracy_greedy/"

    def draw(ax):
        _eval_line(ax, records, "eval/accuracy_greedy", "student (greedy)")
        _eval_line(ax, records, "eval/accuracy_sampled", "student (sampled)", "s--")
        for key in _keys(records, lambda k: k.startswith(prefix)):
            _eval_line(ax, records, key, f"student on {key[len(prefix):]} (greedy)", ".-")
        for (name, metrics), style in zip(teachers.items(), (":", "-.", "--", (0, (1, 4)))):
            if prefix + name in metrics:
                ax.axhline(metrics[prefix + name], color="k", linestyle=style, label=f"teacher {name} on {name} (greedy)")
            else:
                label = "teacher (greedy)" if len(teachers) == 1 else f"teacher {name} (greedy)"
                ax.axhline(metrics["eval/accuracy_greedy"], color="k", linestyle=style, label=label)
        ax.set(ylabel="held-out accuracy (fraction right)", title="Held-out accuracy", ylim=(-0.03, 1.06))

    return draw


def _loss_panel(records: list[dict]):
    if not _has(records, "train/loss"):
        return None

    def draw(ax):
        terms = _keys(records, lambda k: k.startswith("train/") and k.endswith("/loss") and k.count("/") == 2)
        _train_line(ax, records, "train/loss", "total" if terms else None)
        for key in terms:
            _train_line(ax, records, key, key.split("/")[1])
        ax.set(ylabel="loss (per token)", title="Train loss")

    return draw


def _divergence_panel(records: list[dict]):
    train = _keys(records, lambda k: k.startswith(("train/", "teacher/")) and k.rsplit("/", 1)[-1] in DIVERGENCES)
    if not train and not _has(records, "eval/reverse_kl"):
        return None

    def draw(ax):
        for key in train:
            _train_line(ax, records, key, key.replace("train/", "train ").replace("teacher/", "teacher "))
        if _has(records, "eval/reverse_kl"):
            _eval_line(ax, records, "eval/reverse_kl", "held-out reverse_kl (sampled)")
        ax.set(ylabel="nats / token", title="Divergence to the teacher")

    return draw


def _reward_panel(records: list[dict]):
    steps, rewards = _series(records, "train/reward")
    policy_gradient = bool(_keys(records, lambda k: k.endswith("clip_fraction")))
    if not rewards or not (policy_gradient or len(set(rewards)) > 1):
        return None

    def draw(ax):
        _train_line(ax, records, "train/reward", "rollouts")
        for key in _keys(records, lambda k: k.startswith("teacher/") and k.endswith("/reward")):
            _train_line(ax, records, key, f"rollouts of teacher {key.split('/')[1]}")
        ax.set(ylabel="mean reward per completion", title="Reward")

    return draw


def _length_panel(records: list[dict]):
    if not (_has(records, "train/response_length") or _has(records, "eval/response_length")):
        return None

    def draw(ax):
        if _has(records, "train/response_length"):
            _train_line(ax, records, "train/response_length", "training sequences")
        if _has(records, "eval/response_length"):
            _eval_line(ax, records, "eval/response_length", "held-out (sampled)")
        ax.set(ylabel="tokens per completion", title="Response length")
        _from_zero(ax)

    return draw


def _grad_norm_panel(records: list[dict]):
    if not _has(records, "train/grad_norm"):
        return None

    def draw(ax):
        _train_line(ax, records, "train/grad_norm")
        ax.set(ylabel="L2 norm (before clipping)", title="Gradient norm")
        _from_zero(ax)

    return draw
