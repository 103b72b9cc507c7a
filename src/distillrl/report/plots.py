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


def plot_training_curves(records: list[dict], path: str | Path, teacher_accuracy: float | None = None) -> Path:
    """Held-out accuracy (greedy and sampled) and reverse KL to the teacher against step, side by side."""
    evals = [r for r in records if "eval/accuracy_greedy" in r]
    train = [r for r in records if "train/reverse_kl" in r]
    fig, (acc_ax, kl_ax) = plt.subplots(1, 2, figsize=(11, 4))
    steps = [r["step"] for r in evals]
    acc_ax.plot(steps, [r["eval/accuracy_greedy"] for r in evals], "o-", label="student (greedy)")
    acc_ax.plot(steps, [r["eval/accuracy_sampled"] for r in evals], "s--", label="student (sampled)")
    if teacher_accuracy is not None:
        acc_ax.axhline(teacher_accuracy, color="k", linestyle=":", label="teacher (greedy)")
    acc_ax.set(xlabel="step", ylabel="held-out accuracy", title="Accuracy", ylim=(0, 1))
    acc_ax.legend()
    if train:
        kl_ax.plot([r["step"] for r in train], [r["train/reverse_kl"] for r in train], alpha=0.5, label="train (rollouts)")
    kl_evals = [r for r in evals if "eval/reverse_kl" in r]
    if kl_evals:
        kl_ax.plot([r["step"] for r in kl_evals], [r["eval/reverse_kl"] for r in kl_evals], "o-", label="held-out")
    kl_ax.set(xlabel="step", ylabel="nats / token", title="Reverse KL to the teacher")
    if kl_ax.lines:
        kl_ax.legend()
    return save_figure(fig, path)
