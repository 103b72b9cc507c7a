"""Action heads: what a policy's raw outputs mean, for teacher and student alike.

- `categorical` (Discrete): logits over actions.
- `squashed` (Box, SAC/TD3 teachers): [mean | log std] of a diagonal Gaussian over the pre-squash u, a = tanh(u).
- `gaussian` (Box, PPO teachers): [mean | log std] of a diagonal Gaussian over the box action itself; the
  environments clip it to the box when acting (the shared ActionMap), as SB3's `predict` does.

Actions are in the normalised box [-1, 1]^d; `envs` maps them to the env's bounds.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from distillrl.control.losses import (
    GAUSSIAN_LOSSES,
    KD_LOSSES,
    SQUASHED_TARGET_CLAMP,
    gaussian_kd_loss,
    policy_kd_loss,
    split_gaussian,
)

BOX_HEADS = ("squashed", "gaussian")
LOG_STD_RANGE = (-20.0, 2.0)  # SB3's clamp of a SAC actor's log std
TANH_EPSILON = 1e-6  # SB3's: atanh of actions at +-1 is taken at +-(1 - 1e-6), and log(1 - a^2 + 1e-6)


class CategoricalHead:
    name = "categorical"
    losses = KD_LOSSES

    def __init__(self, num_actions: int):
        self.num_actions = self.output_dim = self.target_dim = num_actions

    def act(self, outputs: Tensor, greedy: bool) -> np.ndarray:
        """argmax of each row, or one sample of softmax(logits) per row."""
        if greedy:
            return outputs.argmax(-1).numpy()
        return torch.distributions.Categorical(logits=outputs).sample().numpy()

    def log_prob(self, outputs: Tensor, actions: Tensor) -> Tensor:
        return torch.log_softmax(outputs, -1).gather(-1, actions.long()[:, None]).squeeze(-1)

    def kd_loss(self, student: Tensor, teacher: Tensor, loss: str, temperature: float) -> Tensor:
        return policy_kd_loss(student, teacher, loss, temperature)

    def random_actions(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(self.num_actions, size=n)

    def regression_target(self, teacher: Tensor) -> np.ndarray:
        """What a regression student fits: the teacher's log-probabilities, centred per state (its logits)."""
        log_probs = torch.log_softmax(teacher, -1)
        return (log_probs - log_probs.mean(-1, keepdim=True)).numpy()

    def act_from_regression(self, predicted: np.ndarray) -> np.ndarray:
        return np.asarray(predicted).reshape(len(predicted), -1).argmax(-1)

    def formula_outputs(self) -> tuple[list[str], str]:
        """Names of the regressed outputs and how the action follows from them."""
        return [f"z{k}" for k in range(self.num_actions)], "action = argmax_k z_k"


class GaussianHead:
    """A diagonal Gaussian over the pre-squash u (squashed: a = tanh(u)) or over the box action (gaussian)."""

    losses = GAUSSIAN_LOSSES

    def __init__(self, action_dim: int, squashed: bool):
        self.action_dim = self.target_dim = action_dim
        self.output_dim = 2 * action_dim
        self.squashed = squashed
        self.name = "squashed" if squashed else "gaussian"

    def act(self, outputs: Tensor, greedy: bool) -> np.ndarray:
        """The mean (deterministic, SB3's predict) or one sample, squashed by tanh for `squashed`: [n, d]."""
        mean, log_std = split_gaussian(outputs)
        u = mean if greedy else mean + torch.exp(log_std) * torch.randn_like(mean)
        return (torch.tanh(u) if self.squashed else u).float().numpy()

    def log_prob(self, outputs: Tensor, actions: Tensor) -> Tensor:
        """log pi(a|s), summed over dims; squashed: log N(atanh a; m, s) - sum_j log(1 - a_j^2 + 1e-6) (SB3's)."""
        mean, log_std = split_gaussian(outputs)
        normal = torch.distributions.Normal(mean, torch.exp(log_std))
        if not self.squashed:
            return normal.log_prob(actions).sum(-1)
        clamped = actions.clamp(-1.0 + TANH_EPSILON, 1.0 - TANH_EPSILON)
        return normal.log_prob(torch.atanh(clamped)).sum(-1) - torch.log(1.0 - clamped.pow(2) + TANH_EPSILON).sum(-1)

    def kd_loss(self, student: Tensor, teacher: Tensor, loss: str, temperature: float) -> Tensor:
        return gaussian_kd_loss(student, teacher, loss, temperature, self.squashed)

    def random_actions(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(-1.0, 1.0, size=(n, self.action_dim)).astype(np.float32)

    def regression_target(self, teacher: Tensor) -> np.ndarray:
        """The teacher's mean, clamped where it saturates the action: to +-3 before tanh, to the box unsquashed."""
        mean = split_gaussian(teacher)[0]
        limit = SQUASHED_TARGET_CLAMP if self.squashed else 1.0
        return mean.clamp(-limit, limit).numpy()

    def act_from_regression(self, predicted: np.ndarray) -> np.ndarray:
        predicted = np.asarray(predicted, dtype=np.float32).reshape(len(predicted), self.action_dim)
        return np.tanh(predicted) if self.squashed else predicted

    def formula_outputs(self) -> tuple[list[str], str]:
        names = [f"u{j}" for j in range(self.action_dim)]
        link = "a_j = tanh(u_j)" if self.squashed else "a_j = clip(u_j, -1, 1)"
        return names, f"{link}, in the box; the env's action is low + (a + 1) (high - low) / 2"


def head_for(action_space, name: str):
    """The head for an env's action space; `name` (a Box head) only matters for Box spaces."""
    if hasattr(action_space, "n"):
        return CategoricalHead(int(action_space.n))
    return GaussianHead(int(np.prod(action_space.shape)), squashed=name == "squashed")
