"""Warnings for runs that train on nothing, each one line with the number behind it (the flat-rewards one is in
flat_rewards.py):

- a teacher that scores 0 on the held-out prompts (its signal teaches no answer the verifier reads);
- completions that reach the length limit without stopping (`train/truncated_fraction`): a student that never ends
  its turn, or a limit too short for the task's answers.
"""

from __future__ import annotations

TRUNCATED_WARNING_SHARE = 0.5  # warn once a step has at least this share of its completions cut at the limit


def zero_teacher_lines(teacher_evals: dict[str, dict], paths: dict[str, str], num_prompts: int) -> list[str]:
    """One warning line per teacher whose held-out greedy accuracy is 0."""
    return [f"warning: teacher {paths.get(name, name)} scores 0.000 on the {num_prompts} held-out prompts (greedy): "
            "its completions never state an answer the verifier reads; check task.answer_format (or task.reward), "
            "the teacher's chat template and eval.max_new_tokens"
            for name, metrics in teacher_evals.items() if metrics.get("eval/accuracy_greedy") == 0]  # fmt: skip


class TruncationWarning:
    """The share of a step's completions that reached `max_new_tokens` (over all ranks), and one line (rank 0) the
    first step where it is at least TRUNCATED_WARNING_SHARE."""

    def __init__(self, console, world, max_new_tokens: int):
        self.console, self.world, self.max_new_tokens = console, world, max_new_tokens
        self.warned = False

    def check(self, step: int, lengths) -> dict[str, float]:
        """{"truncated_fraction": share of the completions (`lengths`, tokens) at the limit}."""
        cut = self.world.sum(int((lengths >= self.max_new_tokens).sum().item()))
        total = self.world.sum(len(lengths))
        fraction = cut / max(total, 1)
        if fraction >= TRUNCATED_WARNING_SHARE and not self.warned:
            self.warned = True
            if self.world.is_main:
                self.console.print(
                    f"[yellow]warning: step {step}: {fraction:.0%} of the completions ({cut} of {total}) reached "
                    f"rollout.max_new_tokens ({self.max_new_tokens}) without stopping; the student may never end its "
                    "turn (its end-of-turn token, rollout.stop_strings) or the limit is too short for the task "
                    "(warned once per run)[/]", highlight=False, soft_wrap=True)  # fmt: skip
        return {"truncated_fraction": fraction}
