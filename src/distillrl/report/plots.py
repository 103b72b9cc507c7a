"""PNG plots of a run's metrics."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save_figure(fig, path: str | Path) -> Path:
    """Lay out, write (PNG, creating the folder) and close a figure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_training_curves(records: list[dict], path: str | Path, teachers: dict[str, dict] | None = None) -> Path:
    """Held-out accuracy against step (greedy, sampled, and greedy per domain when there are several) with one
    line per teacher (from `teachers`, each one's held-out evaluation: its greedy accuracy, on its own domain
    when a teacher is named after a domain); beside it the reverse KL to the teacher, when the run has one."""
    evals = [r for r in records if "eval/accuracy_greedy" in r]
    kl_train = [r for r in records if "train/reverse_kl" in r]
    kl_evals = [r for r in evals if "eval/reverse_kl" in r]
    has_kl = bool(kl_train or kl_evals)
    fig, axes = plt.subplots(1, 2 if has_kl else 1, figsize=(11 if has_kl else 6, 4), squeeze=False)
    acc_ax = axes[0][0]
    steps = [r["step"] for r in evals]
    acc_ax.plot(steps, [r["eval/accuracy_greedy"] for r in evals], "o-", label="student (greedy)")
    acc_ax.plot(steps, [r["eval/accuracy_sampled"] for r in evals], "s--", label="student (sampled)")
    prefix = "eval/accuracy_greedy/"
    for domain in sorted({k[len(prefix):] for r in evals for k in r if k.startswith(prefix)}):
        acc_ax.plot(steps, [r.get(prefix + domain) for r in evals], ".-", alpha=0.7, label=f"student on {domain} (greedy)")
    teachers = teachers or {}
    for (name, metrics), style in zip(teachers.items(), (":", "-.", "--", (0, (1, 4)))):
        if prefix + name in metrics:
            acc_ax.axhline(metrics[prefix + name], color="k", linestyle=style, label=f"teacher {name} on {name} (greedy)")
        else:
            label = "teacher (greedy)" if len(teachers) == 1 else f"teacher {name} (greedy)"
            acc_ax.axhline(metrics["eval/accuracy_greedy"], color="k", linestyle=style, label=label)
    acc_ax.set(xlabel="step", ylabel="held-out accuracy", title="Accuracy", ylim=(0, 1))
    acc_ax.legend(fontsize=8)
    if has_kl:
        kl_ax = axes[0][1]
        if kl_train:
            kl_ax.plot([r["step"] for r in kl_train], [r["train/reverse_kl"] for r in kl_train], alpha=0.5,
                       label="train (rollouts)")  # fmt: skip
        if kl_evals:
            kl_ax.plot([r["step"] for r in kl_evals], [r["eval/reverse_kl"] for r in kl_evals], "o-", label="held-out")
        kl_ax.set(xlabel="step", ylabel="nats / token", title="Reverse KL to the teacher")
        kl_ax.legend()
    return save_figure(fig, path)
