"""A warning for policy-gradient runs that learn nothing: every group of a step has equal rewards.

GRPO's advantage A_i = (R_i - mean_G R) / (std_G R + eps) is 0 on every row of a group whose rewards are equal,
so a step in which every group is such has a zero clipped surrogate and a zero gradient: the loss reads 0 and
the student does not move (a KL term aside). Most often the verifier reads no answer (task.answer_format does
not match how the student writes it) or the task is too hard (all 0) or too easy (all 1) for the student.
"""

from __future__ import annotations

from distillrl.core.distributed import World
from distillrl.objectives import Objective
from distillrl.objectives.batch import Batch
from distillrl.objectives.policy_gradient import groups_with_signal


class FlatRewardsWarning:
    """The share of a step's groups whose rewards are all equal (over all ranks: the metric
    `train/flat_group_fraction`), and one line on stderr (rank 0) the first step of a run whose every group is such;
    once per run, so a run that never gets a reward signal is named without flooding its log."""

    def __init__(self, objective: Objective, console, world: World = World()):
        self.needs_rewards = "rewards" in objective.needs  # the policy-gradient objectives (grpo, rlad, in a hybrid)
        self.warned = False
        self.console, self.world = console, world

    def check(self, step: int, signals: Batch) -> dict[str, float]:
        """{"flat_group_fraction": share of the step's groups with equal rewards}, or {} without rewards."""
        if not self.needs_rewards or signals.rewards is None:
            return {}
        groups = self.world.sum(len(signals.group_index.unique()))
        with_signal = self.world.sum(groups_with_signal(signals.rewards, signals.group_index))
        fraction = 1.0 - with_signal / max(groups, 1)
        if with_signal == 0 and not self.warned:
            self.warned = True
            rows = self.world.sum(len(signals.rewards))
            mean = self.world.sum(signals.rewards.float().sum().item()) / max(rows, 1)
            if self.world.is_main:
                self.console.print(
                    f"[yellow]warning: step {step}: every group has equal rewards (mean reward {mean:.3f} over {rows} "
                    "completions), so every advantage is 0 and the policy gradient is zero; check that the verifier "
                    "reads the student's answers (task.answer_format, task.reward), or the task is too hard or too "
                    "easy for the student (warned once per run)[/]", highlight=False, soft_wrap=True)  # fmt: skip
        return {"flat_group_fraction": fraction}
