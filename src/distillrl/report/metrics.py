"""Metric sinks: one JSON line per record (the source of truth) and TensorBoard scalars."""

from __future__ import annotations

import json
from pathlib import Path


class MetricsLog:
    """Appends `{"step": s, **metrics}` to DIR/metrics.jsonl and mirrors scalars to TensorBoard (DIR/tb).

    On resume from step s, records after s (written by the killed run after its last checkpoint) are
    dropped, so the file reads as one uninterrupted run.
    """

    def __init__(self, run_dir: Path, resume_step: int | None = None, tensorboard: bool = True):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("")
        else:
            kept = [line for line in self._lines() if json.loads(line)["step"] <= resume_step]
            self.path.write_text("".join(line + "\n" for line in kept))
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(Path(run_dir) / "tb"), purge_step=resume_step)

    def _lines(self) -> list[str]:
        return [line for line in self.path.read_text().splitlines() if line.strip()] if self.path.exists() else []

    def log(self, step: int, metrics: dict[str, float]) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.writer is not None:
            for name, value in metrics.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(name, value, step)

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self._lines()]

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
