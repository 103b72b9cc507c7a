"""Metric sinks: one JSON line per record (the source of truth), TensorBoard scalars and, optionally, Weights &
Biases (the `wandb` extra, imported only when configured)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from distillrl.core.errors import UserError
from distillrl.core.files import read_json_lines, write_text_atomic
from distillrl.report.samples import prompt_text, samples_markdown

METRICS_NAME = "metrics.jsonl"


class MetricsLog:
    """Appends `{"step": s, **metrics}` to DIR/metrics.jsonl and mirrors scalars to TensorBoard (DIR/tb).

    On resume from step s, records after s (written by the killed run after its last checkpoint) are
    dropped, so the file reads as one uninterrupted run; the file is rewritten by a rename, so a kill during the
    rewrite loses nothing. A last line cut short by a kill is dropped too; a broken line before it is an error.
    """

    def __init__(self, run_dir: Path, resume_step: int | None = None, tensorboard: bool = True, wandb=None,
                 config: dict | None = None):  # fmt: skip
        self.path = Path(run_dir) / METRICS_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            write_text_atomic(self.path, "")
        else:
            kept = [json.dumps(record) for record in read_metrics(run_dir) if record["step"] <= resume_step]
            write_text_atomic(self.path, "".join(line + "\n" for line in kept))
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(Path(run_dir) / "tb"), purge_step=resume_step)
        self.wandb_run = start_wandb(Path(run_dir), wandb, config) if wandb is not None else None

    def log(self, step: int, metrics: dict[str, float]) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.writer is not None:
            for name, value in metrics.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(name, value, step)
        if self.wandb_run is not None:
            self.wandb_run.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=step)

    def log_samples(self, step: int, rows: list[dict]) -> None:
        """A step's samples (report/samples.py rows) as TensorBoard text and a W&B table, where those are on."""
        if not rows:
            return
        if self.writer is not None:
            self.writer.add_text("samples", samples_markdown(rows), step)
        if self.wandb_run is not None:
            columns = ["decoding", "prompt", "completion", "answer", "reward", "length", "reverse_kl"]
            data = [[row["decoding"], prompt_text(row["prompt"]), row["completion"], row["answer"], row["reward"],
                     row["length"], row["reverse_kl"]] for row in rows]  # fmt: skip
            self.wandb_run.log({"samples": wandb_module().Table(columns=columns, data=data)}, step=step)

    def records(self) -> list[dict]:
        return read_metrics(self.path.parent)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()


WANDB_ID_FILE = "wandb-id.txt"


def wandb_module():
    """The wandb library, imported on first use; a UserError naming the extra when it is missing."""
    try:
        import wandb
    except ImportError:
        raise UserError("wandb: logging to Weights & Biases needs the wandb library: pip install 'distillrl[wandb]'") from None
    return wandb


def start_wandb(run_dir: Path, settings, config: dict | None):
    """A W&B run for `settings` (a WandbConfig), files under run_dir/wandb; a resumed run continues the W&B run
    whose id run_dir/wandb-id.txt keeps."""
    wandb = wandb_module()
    id_file = run_dir / WANDB_ID_FILE
    if id_file.exists():
        run_id = id_file.read_text().strip()
    else:
        run_id = uuid.uuid4().hex[:8]
        write_text_atomic(id_file, run_id)
    return wandb.init(project=settings.project, name=settings.name or run_dir.resolve().name, id=run_id,
                      resume="allow", dir=str(run_dir), config=config, mode=settings.mode)  # fmt: skip


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The records of DIR/metrics.jsonl (none when it is missing), without a last line that a kill cut short."""
    path = Path(run_dir) / METRICS_NAME
    if not path.exists():
        return []
    return read_json_lines(path, "record", lambda record: isinstance(record.get("step"), int),
                           "metrics record (no integer `step`)")  # fmt: skip


def read_teacher_evals(run_dir: str | Path) -> dict[str, dict] | None:
    """The teachers' held-out evaluation a run stored in DIR/teacher_eval.json, {teacher name: {metric: number}}
    with `eval/accuracy_greedy` in each (None when the file is missing). A resumed run reads it instead of
    evaluating the teachers again; a damaged one is an error naming it (deleting it has them evaluated again)."""
    path = Path(run_dir) / "teacher_eval.json"
    if not path.exists():
        return None
    again = "the file was edited or damaged; delete it to have --resume evaluate the teachers again"
    try:
        evals = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        reason = error.msg if isinstance(error, json.JSONDecodeError) else type(error).__name__
        raise UserError(f"{path}: not JSON ({reason}); {again}") from None
    if not isinstance(evals, dict) or not all(
            isinstance(metrics, dict) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                              for v in metrics.values()) and "eval/accuracy_greedy" in metrics
            for metrics in evals.values()):  # fmt: skip
        raise UserError(f"{path}: not the teachers' evaluation ({{teacher: {{'eval/accuracy_greedy': number, ...}}}}); "
                        f"{again}")  # fmt: skip
    return evals
