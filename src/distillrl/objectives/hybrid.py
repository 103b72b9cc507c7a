"""`hybrid`: a weighted sum of objectives, L = sum_i w_i L_i (KDRL: GRPO + beta_KD reverse KL; L_KD + w L_task)."""

from __future__ import annotations

from torch import Tensor

from distillrl.objectives.batch import Batch


class Hybrid:
    """Sum of weighted terms; each term's metrics are reported under its name (`grpo/loss`, ...)."""

    def __init__(self, terms: list[tuple[str, float, object]]):
        self.terms = terms  # (name, weight, objective)
        self.needs = frozenset().union(*(objective.needs for _, _, objective in terms))

    def __call__(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        total, metrics = 0.0, {}
        for name, weight, objective in self.terms:
            loss, term_metrics = objective(batch)
            total = total + weight * loss
            metrics |= {f"{name}/{key}": value for key, value in term_metrics.items()}
        return total, {"loss": float(total.item()), **metrics}
